"""The ``spotifai`` command: one subcommand per stage. Argument parsing only; the work is in the modules.

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to a small runner that imports its module lazily (so ``spotifai --help`` does not import torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ------------------------------------------------------------------------------------------ subcommands


def _add_demo_corpus(sub) -> None:
    p = sub.add_parser("demo-corpus", help="synthesize the built-in demo corpus (audio files + music DB) into DIR")
    p.add_argument("directory", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracks", type=int, default=None, help="number of tracks (default: the full demo size)")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a complete corpus")

    def run(args) -> int:
        from spotifai import demo_corpus

        summary = demo_corpus.build_demo_corpus(args.directory, seed=args.seed, n_tracks=args.tracks, force=args.force)
        _print_json(summary)
        return 0

    p.set_defaults(func=run)


def _add_chain(sub) -> None:
    p = sub.add_parser("chain", help="run the notebook chain (notebooks/NN_*.ipynb) with papermill")
    p.add_argument("--force", action="store_true", help="rebuild the corpus and retrain instead of reusing them")
    p.add_argument("--output", type=Path, default=None, help="folder for the executed notebooks (default output/notebooks)")
    p.add_argument("--only", nargs="*", default=None, help="run only these notebooks, e.g. 03_loss_curves")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a notebook parameter (VALUE parsed as JSON when it parses, else a string); repeatable",
    )

    def run(args) -> int:
        from spotifai import chain

        params: dict = {"force": args.force}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--param {item!r}: expected NAME=VALUE")
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
        kwargs = {"output_dir": args.output} if args.output else {}
        runs = chain.run_chain(params, only=args.only, **kwargs)
        total = sum(r.seconds for r in runs)
        for r in runs:
            print(f"{r.name:<20} {r.seconds:7.1f} s   {r.output}")
        print(f"{'total':<20} {total:7.1f} s")
        return 0

    p.set_defaults(func=run)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="start the Song Recommender web demo (search, similar songs, playback)")
    p.add_argument("--database", type=Path, required=True, help="the music DB")
    p.add_argument("--experiment", type=Path, required=True, help="experiment folder (its index is EXP/chroma)")
    p.add_argument("--index", type=Path, default=None, help="the ChromaDB folder, if not EXP/chroma")
    p.add_argument("--chroma-host", default=None, help="use a Chroma server instead of a local index folder")
    p.add_argument("--chroma-port", type=int, default=None, help="the Chroma server's port (default 8000)")
    p.add_argument("--space", choices=["projections", "features"], default="projections")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    def run(args) -> int:
        from spotifai.app import serve

        serve(
            args.database,
            args.experiment,
            host=args.host,
            port=args.port,
            index_path=args.index,
            chroma_host=args.chroma_host,
            chroma_port=args.chroma_port if args.chroma_host else None,
            space=args.space,
        )
        return 0

    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spotifai", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, add in sorted(globals().items()):
        if name.startswith("_add_") and callable(add):
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # Bad input ends with one clear line naming the file and the problem, not a stack trace.
        logging.getLogger("spotifai").debug("failed", exc_info=True)
        print(f"spotifai {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
