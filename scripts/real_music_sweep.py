"""Train, embed and evaluate config variants on a music DB; one JSON line per variant (the method study).

Usage::

    python scripts/real_music_sweep.py --database data/real/music.db --out experiments/real \
        --variant base='{}' --variant aug='{"training": {"augment": {"gain_db": 6}}}' [--preset real] [--steps 600]

``--table`` prints the markdown table of every evaluated experiment under ``--out``; ``--compare A B`` the paired
bootstrap interval of album precision@5 between two embedded experiments on the same held-out queries (several
pairs ``A1 B1 A2 B2 ...``, each on its own split: their queries pooled into one bootstrap);
``--pooled EXP [EXP ...]`` that of each experiment against its own log-mel statistics with the held-out queries of
all of them pooled (runs on different splits, ``data.seed``).

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

import numpy as np

from spotifai import embed, embeddings_file, evaluate, train
from spotifai import experiment as experiments

METRICS = ("album_precision@5", "album_precision@10", "album_map", "composer_precision@5", "playlist_precision@5")


def run_variant(name: str, overrides: dict, args) -> dict:
    exp = Path(args.out) / name
    t0 = time.perf_counter()
    config = experiments.preset_config(args.preset, args.database, steps=args.steps, overrides=overrides)
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


def _heldout_precision(exp: Path, spaces: dict[str, Path], metric: str,
                       references: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """{name: (Q,) per-query ``metric`` of the held-out queries of ``exp``'s split} for each trained space
    ``spaces[name]`` = the experiment whose embeddings to rank (on the tracks all of them embed, catalogue scope),
    under "logmel-stats" ``exp``'s own z-scored log-mel statistics (its baselines.npz), and under each name of
    ``references`` ("musicnn") that model's vectors (cached beside the DB, see :mod:`spotifai.reference`)."""
    from spotifai import database

    config = experiments.load_config(exp)
    db_path = experiments.database_path(exp, config)
    loaded = {name: embeddings_file.load_embeddings(path) for name, path in spaces.items()}
    ids = None
    for emb in loaded.values():
        ids = emb.track_ids if ids is None else np.intersect1d(ids, emb.track_ids)
    vectors = {name: emb.subset(ids.tolist()).vectors(space.split(":")[-1])
               for (name, emb), space in zip(loaded.items(), spaces, strict=True)}
    if (exp / "baselines.npz").is_file():
        base = np.load(exp / "baselines.npz")
        if np.isin(ids, base["track_ids"]).all():
            row = {int(t): i for i, t in enumerate(base["track_ids"].tolist())}
            vectors["logmel-stats"] = evaluate.standardize_columns(base["logmel-stats"][[row[int(t)] for t in ids]])
    conn = database.connect(db_path, create=False, readonly=True)
    try:
        split = config.data.split(conn)
        rows = database.tracks(conn, ids.tolist())
    finally:
        conn.close()
    paths = {int(r["id"]): str(Path(r["audio_path"]).resolve()) for r in rows}
    for name in references:
        from spotifai.reference import musicnn_vectors

        if name != "musicnn":
            raise SystemExit(f"unknown reference {name!r}")
        by_id = {int(r["id"]): r["audio_path"] for r in rows}
        vectors[name] = np.asarray(musicnn_vectors([by_id[int(t)] for t in ids], cache=db_path.parent / "musicnn.npz")[0],
                                   dtype=np.float32)
    labels = evaluate.read_labels(db_path.parent / evaluate.LABELS_FILE)
    truth = metric.rsplit("_", 1)[0]
    values = [labels.get(paths[int(t)], {}).get(truth, "") or None for t in ids]
    heldout = set(split.heldout_tracks)
    q = np.array([i for i, t in enumerate(ids.tolist()) if t in heldout], dtype=np.int64)
    exclude = np.zeros((len(q), len(ids)), dtype=bool)
    exclude[np.arange(len(q)), q] = True
    relevance = {truth: evaluate.label_relevance([values[i] for i in q], values)}
    return {name: evaluate.per_query_metrics(v[q], v, relevance, exclude=exclude)[metric] for name, v in vectors.items()}


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    return {"n_queries": int(len(a)), "a_mean": round(float(np.nanmean(a)), 4), "b_mean": round(float(np.nanmean(b)), 4),
            **{stat: [round(x, 4) for x in evaluate.bootstrap_interval(a, baseline=b, statistic=stat)]
               for stat in ("difference", "ratio")}}


def compare(a: Path, b: Path, space: str = "projections", metric: str = "album_precision@5") -> dict:
    """Paired bootstrap of ``metric`` between two experiments' trained spaces on the same held-out queries
    (catalogue scope, the same DB, split and labels; each must be embedded): difference a - b and ratio a / b."""
    per = _heldout_precision(a, {f"a:{space}": a, f"b:{space}": b}, metric)
    return {"a": str(a), "b": str(b), "space": space, "metric": metric, **_paired(per[f"a:{space}"], per[f"b:{space}"])}


def compare_pooled(pairs: list[tuple[Path, Path]], space: str = "projections",
                   metric: str = "album_precision@5") -> dict:
    """:func:`compare` over several pairs (a_i, b_i), each pair on its own split: the held-out queries of all
    pairs pooled into one paired bootstrap of a - b and a / b."""
    parts = [_heldout_precision(a, {f"a:{space}": a, f"b:{space}": b}, metric) for a, b in pairs]
    a_all = np.concatenate([p[f"a:{space}"] for p in parts])
    b_all = np.concatenate([p[f"b:{space}"] for p in parts])
    return {"pairs": [[str(a), str(b)] for a, b in pairs], "space": space, "metric": metric,
            "per_pair_queries": [int(len(p[f"a:{space}"])) for p in parts], **_paired(a_all, b_all)}


def pooled_against_logmel(exps: list[Path], space: str = "projections", metric: str = "album_precision@5",
                          references: tuple[str, ...] = ()) -> dict:
    """Each experiment's trained space against its own log-mel statistics, the held-out queries of all of them
    pooled (experiments on different splits: a query held out by several counts once per split) into one paired
    bootstrap: difference and ratio trained / log-mel; and the same against each of ``references``
    (under "vs <name>")."""
    parts = [_heldout_precision(exp, {f"trained:{space}": exp}, metric, tuple(references)) for exp in exps]
    missing = [str(e) for e, p in zip(exps, parts, strict=True) if "logmel-stats" not in p]
    if missing:
        raise SystemExit(f"no log-mel statistics (baselines.npz; run evaluate first) in: {', '.join(missing)}")
    trained = np.concatenate([p[f"trained:{space}"] for p in parts])
    logmel = np.concatenate([p["logmel-stats"] for p in parts])
    out = {"experiments": [str(e) for e in exps], "space": space, "metric": metric,
           "per_experiment_queries": [int(len(p["logmel-stats"])) for p in parts], **_paired(trained, logmel)}
    for name in references:
        out[f"vs {name}"] = _paired(trained, np.concatenate([p[name] for p in parts]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", default=None)
    p.add_argument("--out", default="experiments/real")
    p.add_argument("--preset", default="demo", choices=sorted(experiments.PRESETS))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", action="append", default=[], choices=["musicnn"])
    p.add_argument("--scopes", nargs="+", default=["catalogue"])
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    p.add_argument("--table", action="store_true", help="print the markdown table of every evaluated experiment")
    p.add_argument("--compare", nargs="+", metavar="A B", type=Path,
                   help="paired bootstrap of album precision@5 between two embedded experiments (one JSON line); "
                        "several pairs A1 B1 A2 B2 ...: their queries pooled")
    p.add_argument("--pooled", nargs="+", type=Path, metavar="EXP",
                   help="each experiment's space against its own log-mel statistics, queries of all pooled (one JSON line)")
    p.add_argument("--space", default="projections", choices=["projections", "features"])
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.compare:
        if len(args.compare) % 2:
            p.error(f"--compare takes pairs of experiments, got {len(args.compare)} paths")
        pairs = list(zip(args.compare[::2], args.compare[1::2], strict=True))
        print(json.dumps(compare(*pairs[0], space=args.space) if len(pairs) == 1
                         else compare_pooled(pairs, space=args.space)))
    if args.pooled:
        print(json.dumps(pooled_against_logmel(args.pooled, space=args.space, references=tuple(args.reference))))
    if args.table:
        print(table(Path(args.out), args.scopes[0]))
    for item in args.variant:
        name, _, text = item.partition("=")
        print(json.dumps(run_variant(name, json.loads(text or "{}"), args)), flush=True)


if __name__ == "__main__":
    main()
