"""Train, embed and evaluate config variants on a music DB; one JSON line per variant (the method study).

Usage::

    python scripts/real_music_sweep.py --database data/real/music.db --out experiments/real \
        --variant base='{}' --variant aug='{"training": {"augment": {"gain_db": 6}}}' [--preset real] [--steps 600]

Each variant is a nested config override (JSON) of the preset, trained in ``OUT/<name>`` (resumed if it exists),
embedded with its selected checkpoint and evaluated on the held-out tracks (catalogue and held-out scopes,
labels.csv beside the DB). The line gives album / composer / playlist precision@5 and @10 and album mAP of the
trained projections and features and of log-mel statistics, with 95 % bootstrap intervals, and the ratio of
projections to log-mel on album precision@5 with its paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from spotifai import embed, evaluate, train

METRICS = ("album_precision@5", "album_precision@10", "album_map", "composer_precision@5", "playlist_precision@5")


def run_variant(name: str, overrides: dict, args) -> dict:
    exp = Path(args.out) / name
    t0 = time.perf_counter()
    config = train.preset_config(args.preset, args.database, steps=args.steps, overrides=overrides)
    summary = train.train_model(exp, config=config, device=args.device)
    t_train = time.perf_counter() - t0
    emb = embed.embed_experiment(exp, device=args.device, progress=False)
    res = evaluate.evaluate_experiment(exp, device=args.device, progress=False, references=args.reference)
    line = {"variant": name, "overrides": overrides, "preset": args.preset, "steps": summary["steps"],
            "embedded_step": emb["step"], "train_seconds": round(t_train, 1),
            "patches_per_second": summary["patches_per_second"], "n_queries": res["n_heldout"],
            "n_catalogue": res["n_catalogue"]}
    for scope in args.scopes:
        for method, values in res["methods"].items():
            if method.startswith("random"):
                continue
            for metric in METRICS:
                if metric in values[scope]:
                    lo, hi = res["intervals"][method][scope][metric]
                    line[f"{scope}/{method}/{metric}"] = [round(values[scope][metric], 4), round(lo, 4), round(hi, 4)]
        for comparison, scopes in res["comparisons"].items():
            stats = scopes[scope].get("album_precision@5")
            if stats:
                line[f"{scope}/{comparison}/album_precision@5/ratio"] = [round(v, 3) for v in stats["ratio"]]
                line[f"{scope}/{comparison}/album_precision@5/difference"] = [round(v, 4) for v in stats["difference"]]
    return line


def table(out: Path, scope: str = "catalogue") -> str:
    """A markdown table of every evaluated experiment under ``out`` (its evaluation.json): album precision@5
    and mAP of the trained spaces with 95 % intervals, the baselines, and the projections/log-mel ratio."""

    def cell(res: dict, method: str, metric: str) -> str:
        if method not in res["methods"]:
            return "—"
        value = res["methods"][method][scope][metric]
        lo, hi = res["intervals"][method][scope][metric]
        return f"{value:.3f} [{lo:.2f}, {hi:.2f}]"

    rows = ["| experiment | checkpoint step | projections album P@5 | features album P@5 | projections album mAP "
            "| log-mel album P@5 | musicnn album P@5 | projections / log-mel (P@5) |",
            "|:--|--:|--:|--:|--:|--:|--:|--:|"]
    for path in sorted(out.glob("*/evaluation.json")):
        res = json.loads(path.read_text())
        ratio = res["comparisons"]["trained-projections vs logmel-stats"][scope]["album_precision@5"]["ratio"]
        rows.append(f"| {path.parent.name} | {res['step']} | {cell(res, 'trained-projections', 'album_precision@5')} "
                    f"| {cell(res, 'trained-features', 'album_precision@5')} "
                    f"| {cell(res, 'trained-projections', 'album_map')} | {cell(res, 'logmel-stats', 'album_precision@5')} "
                    f"| {cell(res, 'musicnn-msd', 'album_precision@5')} | {ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}] |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="real")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", action="append", default=[], choices=["musicnn"])
    p.add_argument("--scopes", nargs="+", default=["catalogue"])
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    p.add_argument("--table", action="store_true", help="print the markdown table of every evaluated experiment")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.table:
        print(table(Path(args.out), args.scopes[0]))
    for item in args.variant:
        name, _, text = item.partition("=")
        print(json.dumps(run_variant(name, json.loads(text or "{}"), args)), flush=True)


if __name__ == "__main__":
    main()
