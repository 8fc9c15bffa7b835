"""The ``spotifai`` command: one subcommand per stage. Argument parsing only; the work is in the modules.

Conventions shared by the subcommands: ``--database`` is the music DB (``--db`` is kept as an alias),
``--index`` an embedded ChromaDB folder and ``--chroma-host``/``--chroma-port`` a Chroma server (``--path``,
``--host`` and ``--port`` are kept as aliases where they meant that), ``--device`` is cpu, cuda or cuda:N
(checked by :mod:`spotifai.devices`), and options that take files accept several values (``--m3u a.m3u b.m3u``,
shell globs). Subcommands are listed in pipeline order (:data:`PIPELINE`).

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to a small runner that imports its module lazily (so ``spotifai --help`` does not import torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from spotifai.experiment import PRESETS

DESCRIPTION = (
    "spotifai: learn what music sounds like from how people group it. Pipeline: build or ingest a music DB, "
    "train an encoder on its playlists, embed every track, index the vectors, then find similar tracks "
    "(for stored tracks or any audio file), evaluate, serve the web demo, or run the notebook chain."
)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _device(name: str) -> str:
    from spotifai.devices import check_device

    return check_device(name)


def _database_arg(p, required: bool, help: str) -> None:
    p.add_argument("--database", "--db", dest="database", type=Path, required=required, help=help)


# ------------------------------------------------------------------------------------------ subcommands


def _existing(experiment: Path) -> Path:
    """An experiment folder that must exist already (a typo must not create one)."""
    if not Path(experiment).is_dir():
        raise FileNotFoundError(f"{experiment}: no such experiment folder")
    return Path(experiment)


def _add_similar(sub) -> None:
    p = sub.add_parser("similar", help="the K tracks most similar to any audio files (runs the model: cold start)")
    p.add_argument("experiment", type=Path, help="experiment folder (its model and index)")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="audio files (need not be in the DB)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--space", choices=["projections", "features"], default="projections")
    p.add_argument("--model", type=Path, default=None, help="a model file from `spotifai export` instead of "
                   "the experiment's checkpoint")
    p.add_argument("--checkpoint", default="auto", help="auto, latest, best, a step or a .pt (as embed)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _index_client_args(p)

    def run(args) -> int:
        from spotifai import api
        from spotifai.printable import printable

        if args.k < 1:
            raise ValueError(f"-k {args.k}: must be at least 1")
        experiment = _existing(args.experiment)
        model = api.load(args.model or experiment, experiment=experiment, checkpoint=args.checkpoint,
                         device=_device(args.device), space=args.space, index_path=args.index,
                         chroma_host=args.chroma_host, chroma_port=args.chroma_port)
        model.index  # noqa: B018 - a missing index is an error before any file is decoded
        vectors = model.embed_files(args.files, progress=sys.stderr.isatty() and len(args.files) > 1)
        answers = []
        for path, vec in zip(vectors.paths, vectors.vectors(args.space), strict=True):
            answers.append({"file": path, "results": model.similar(vec, k=args.k, space=args.space)})
        if args.json:
            _print_json({"answers": answers, "failures": vectors.failures})
        else:
            for i, answer in enumerate(answers):
                print(("\n" if i else "") + f"similar to {printable(answer['file'])}:")
                for hit in answer["results"]:
                    who = " · ".join(printable(hit[key]) for key in ("artist", "album") if hit.get(key))
                    print(f"{hit['rank']:>3}. {hit['similarity']:.3f}  {printable(hit['title'])}"
                          + (f" — {who}" if who else "") + f"  (track {hit['track_id']})")
            for failure in vectors.failures:
                print(f"spotifai similar: error: {printable(failure['path'])}: {printable(failure['reason'])}",
                      file=sys.stderr)
        return 1 if vectors.failures else 0

    p.set_defaults(func=run)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write the trained encoder to one model file (weights + model and audio "
                       "config; loadable with torch.load(weights_only=True) and spotifai.load)")
    p.add_argument("experiment", type=Path)
    p.add_argument("out", type=Path, help="the model file to write, e.g. model.pt")
    p.add_argument("--checkpoint", default="auto", help="auto (best when kept, else latest), latest, best, a step")

    def run(args) -> int:
        from spotifai.export import export_model

        checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
        _print_json(export_model(_existing(args.experiment), args.out, checkpoint))
        return 0

    p.set_defaults(func=run)


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
    p.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="also answer requests for this host name (default: localhost, 127.0.0.1, [::1] and --host); "
        "repeatable; '*' answers any (then a DNS-rebinding page can read the API)",
    )
    p.add_argument("--no-uploads", dest="uploads", action="store_false",
                   help="do not load the model: no 'similar to my file' uploads")
    p.add_argument("--max-upload-mb", type=int, default=32, help="largest accepted upload in MB (default 32)")

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
            allowed_hosts=args.allowed_host,
            uploads=args.uploads,
            max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        )
        return 0

    p.set_defaults(func=run)


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="full-song track vectors (features, projections) -> EXPERIMENT/embeddings.npz")
    p.add_argument("experiment", type=Path)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=64, help="patches per forward pass")
    p.add_argument("--max-patches", type=int, default=64, help="evenly spaced patches per long track (0 = all)")
    p.add_argument("--workers", type=int, default=None, help="decoding worker processes (default: spare cores)")
    p.add_argument("--checkpoint", default="auto",
                   help="auto (best-validation checkpoint when kept, else latest), latest, best, a step or a .pt")
    p.add_argument("--force", action="store_true", help="re-embed every track")

    def run(args) -> int:
        from spotifai import embed

        summary = embed.embed_experiment(
            _existing(args.experiment), device=_device(args.device), batch_size=args.batch_size,
            max_patches_per_track=args.max_patches or None, force=args.force, checkpoint=args.checkpoint,
            num_workers=args.workers,
        )
        summary["failures"] = summary["failures"][:20]  # the log has them all
        _print_json(summary)
        return 0

    p.set_defaults(func=run)


def _index_client_args(p) -> None:
    p.add_argument("--index", "--path", dest="index", type=Path, default=None,
                   help="embedded ChromaDB folder (default EXPERIMENT/chroma)")
    p.add_argument("--chroma-host", "--host", dest="chroma_host", default=None,
                   help="a Chroma server (`chroma run`) instead of a local folder")
    p.add_argument("--chroma-port", "--port", dest="chroma_port", type=int, default=None,
                   help="the Chroma server's port (default 8000)")


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build / update the ChromaDB collections from EXPERIMENT/embeddings.npz")
    p.add_argument("experiment", type=Path)
    _index_client_args(p)
    p.add_argument("--rebuild", action="store_true", help="drop and recreate the collections")
    p.add_argument("--ef-search", type=int, default=None)
    p.add_argument("--ef-construction", type=int, default=None)
    p.add_argument("--max-neighbors", type=int, default=None)

    def run(args) -> int:
        from spotifai import index

        _existing(args.experiment)
        hnsw = {k: v for k, v in (("ef_search", args.ef_search), ("ef_construction", args.ef_construction),
                                  ("max_neighbors", args.max_neighbors)) if v is not None}
        _print_json(index.build_index(args.experiment, path=args.index, host=args.chroma_host, port=args.chroma_port,
                                      rebuild=args.rebuild, hnsw=hnsw or None))
        return 0

    p.set_defaults(func=run)


def _add_recommend(sub) -> None:
    p = sub.add_parser("recommend", help="the K tracks most similar to TRACK_ID (from the index, no model)")
    p.add_argument("experiment", type=Path)
    p.add_argument("track_id", type=int)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--space", choices=["projections", "features"], default="projections")
    _index_client_args(p)

    def run(args) -> int:
        from spotifai import index

        try:
            recs = index.recommend(args.experiment, args.track_id, k=args.k, space=args.space,
                                   path=args.index, host=args.chroma_host, port=args.chroma_port)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from exc
        _print_json(recs)
        return 0

    p.set_defaults(func=run)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="retrieval metrics on held-out tracks -> EXPERIMENT/evaluation.json")
    p.add_argument("experiment", type=Path)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=64, help="patches per forward pass (random-weights baseline)")
    p.add_argument("--max-patches", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-baselines", action="store_true", help="evaluate the trained model only")
    p.add_argument("--no-random-baseline", action="store_true",
                   help="leave out the random-weights encoder (a second embedding pass; slow for big models on CPU)")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels CSV (path,album,composer,...); default: labels.csv beside the music DB if present")
    p.add_argument("--reference", action="append", default=[], choices=["musicnn"],
                   help="also score an off-the-shelf model (musicnn: needs scripts/install_musicnn.sh)")

    def run(args) -> int:
        from spotifai import evaluate

        results = evaluate.evaluate_experiment(
            _existing(args.experiment), baselines=not args.no_baselines, device=_device(args.device), batch_size=args.batch_size,
            max_patches_per_track=args.max_patches or None, num_workers=args.workers, labels=args.labels,
            references=args.reference, random_baseline=not args.no_random_baseline,
        )
        table = evaluate.evaluation_table(results)
        cols = [c for c in table.columns if c in ("method", "scope") or c.endswith(("@5", "@10", "_map"))]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for line in evaluate.comparison_lines(results):
            print(line)
        print(f"written: {Path(args.experiment) / evaluate.EVALUATION_FILE}")
        return 0

    p.set_defaults(func=run)


def _add_ingest(sub) -> None:
    p = sub.add_parser(
        "ingest", help="add a music folder, M3U/CSV playlists or Million Playlist Dataset slices to the music DB"
    )
    _database_arg(p, True, "music database (created if missing)")
    several = {"type": Path, "nargs": "+", "action": "extend", "default": []}
    p.add_argument("--folder", **several, metavar="DIR", help="music folders (several values, repeatable)")
    p.add_argument("--m3u", **several, metavar="FILE", help="M3U/M3U8 playlists (several values, e.g. a glob)")
    p.add_argument("--csv", **several, metavar="FILE",
                   help="CSV playlists: playlist,path or playlist,artist,title (several values)")
    p.add_argument("--mpd", **several, metavar="PATH", help="mpd.slice.*.json files or folders (several values)")
    p.add_argument("--mpd-audio-map", type=Path, default=None, help="CSV/JSON mapping track_uri -> audio path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")

    def run(args) -> int:
        from spotifai import database, ingest

        if not (args.folder or args.m3u or args.csv or args.mpd or args.mpd_audio_map):
            raise ValueError("nothing to ingest: give --folder, --m3u, --csv, --mpd or --mpd-audio-map")
        conn = database.connect(args.database)
        try:
            summary = ingest.ingest(
                conn, folders=args.folder, m3u=args.m3u, csv_files=args.csv, mpd=args.mpd,
                mpd_audio_map=args.mpd_audio_map, progress=sys.stderr.isatty(),
            )
            totals = database.counts(conn)
        finally:
            conn.close()
        if args.json:
            _print_json({"summary": summary.to_dict(), "database": totals})
        else:
            print(summary.to_text())
            print("database: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        return 1 if summary.sources_failed else 0

    p.set_defaults(func=run)


def _add_real_corpus(sub) -> None:
    p = sub.add_parser(
        "real-corpus", help="build the real-music development corpus from Debian game soundtracks into DIR"
        " (packages installed by scripts/real_corpus.sh)",
    )
    p.add_argument("directory", type=Path, nargs="?", default=Path("data/real"))
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a complete corpus")
    p.add_argument("--min-seconds", type=float, default=30.0, help="shortest track kept (default 30)")

    def run(args) -> int:
        from spotifai import real_corpus

        summary = real_corpus.build_real_corpus(args.directory, force=args.force, min_seconds=args.min_seconds)
        _print_json(summary)
        return 0

    p.set_defaults(func=run)


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="search tracks by title, artist and album (typo tolerant)")
    _database_arg(p, True, "music database")
    p.add_argument("query", help="words to look for, e.g. \"shoes arctic\"")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)

    def run(args) -> int:
        from spotifai import database
        from spotifai.search import search

        conn = database.connect(args.database, readonly=True)
        try:
            _print_json(search(conn, args.query, limit=args.limit, offset=args.offset))
        finally:
            conn.close()
        return 0

    p.set_defaults(func=run)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train (or resume) EXPERIMENT; with --database and no config.json yet, create it first",
        description="Multi-process / multi-GPU: torchrun --nproc_per_node=N -m spotifai.train EXPERIMENT [...]",
    )
    p.add_argument("experiment", type=Path, help="experiment folder, e.g. experiments/demo")
    p.add_argument("--database", type=Path, default=None, help="music DB for a new experiment")
    p.add_argument("--preset", choices=list(PRESETS), default="full",
                   help="new experiment's config: full (GPU size, default), cpu (real music on a CPU, ~30 min on "
                        "2 cores), demo (the synthetic demo's small model), tiny (smoke tests)")
    p.add_argument("--demo", dest="preset", action="store_const", const="demo", help="the same as --preset demo")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_false", help="train in fp32")
    p.add_argument("--no-multi-processing", dest="multi_processing", action="store_false",
                   help="make batches in the training process (no loader workers)")
    p.add_argument("--steps", type=int, default=None, help="set training.steps (e.g. extend a finished run)")

    def run(args) -> int:
        from spotifai import train

        summary = train.train_command(
            args.experiment, database=args.database, preset=args.preset, device=_device(args.device),
            mixed_precision=args.mixed_precision, multi_processing=args.multi_processing, steps=args.steps,
        )
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 prints
            _print_json(summary)
        return 0

    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ main


#: Subcommands in the order a user runs them (``spotifai --help`` lists them so).
PIPELINE = ("demo-corpus", "real-corpus", "ingest", "search", "train", "embed", "index", "recommend", "similar",
            "export", "evaluate", "serve", "chain")


def build_parser() -> argparse.ArgumentParser:
    from spotifai import __version__

    parser = argparse.ArgumentParser(prog="spotifai", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"spotifai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in PIPELINE:
        globals()["_add_" + name.replace("-", "_")](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from spotifai.printable import configure_logging, error_line

    args = build_parser().parse_args(argv)
    # What is printed from input (file names, playlist lines, config values) is escaped and cut: spotifai.printable
    level = logging.DEBUG if args.verbose else logging.INFO
    if "RANK" in os.environ:  # under torchrun: rank 0 logs, the other ranks only warn
        rank = int(os.environ["RANK"])
        configure_logging(level if rank == 0 else logging.WARNING, f"%(levelname)s [rank {rank}] %(name)s: %(message)s")
    else:
        configure_logging(level, "%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # Bad input ends with one clear line naming the file and the problem, not a stack trace.
        logging.getLogger("spotifai").debug("failed", exc_info=True)
        print(error_line(f"spotifai {args.command}", exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
