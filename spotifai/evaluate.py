"""Retrieval metrics on held-out tracks, for the trained model and two baselines.

Protocol (:func:`evaluate_experiment`):

* Queries are the **held-out tracks** of the experiment's split (``database.split`` with the experiment's
  ``data`` settings): tracks that never appeared in a training or validation batch.
* Two scopes: ``heldout`` ranks the *other* held-out tracks; ``catalogue`` ranks every other track with
  audio (training tracks included). The query itself is always excluded.
* Ground truth, computed from the DB and a labels file, never from audio:
  - playlist: a candidate is relevant when it shares at least one playlist with the query (ALL playlists of
    the DB count, not only training ones; membership is what held-out tracks were hidden from);
  - artist, album, genre: the same value in the DB (unknown values never match);
  - every column of a labels CSV (``path,album,composer,...``; by default ``labels.csv`` beside the music DB,
    as the real-music corpus writes it): the same value, keyed by the resolved audio path. A labels column
    replaces the DB's value of the same name.
* Metrics per scope: precision@k (k = 5, 10) for every ground truth, plus recall@k and mean average
  precision over the full ranking for playlist and album. A query enters a metric only when it has at least
  one relevant candidate for that ground truth (otherwise the metric is undefined, e.g. recall, or
  identical for every method); the number of such queries is reported.
* Intervals: each mean gets a 95 % percentile bootstrap interval over queries, and each trained space is
  compared with log-mel statistics and the references by the paired bootstrap interval of the difference and
  of the ratio of means (same resampled queries for both; 2,000 resamples, fixed seed).
* Methods: the trained model's ``features`` and ``projections`` (from ``embeddings.npz``), the same
  architecture with random weights (:func:`spotifai.baselines.random_encoder`, same embedding code), and the
  per-track mean + standard deviation of log-mel bands (:func:`spotifai.baselines.logmel_stats_vectors`,
  z-scored per dimension over the catalogue so that no band dominates the cosine). All methods are
  evaluated on the same tracks (those every method could embed). Optionally an off-the-shelf reference:
  musicnn's pretrained MSD model (``references=("musicnn",)``, :mod:`spotifai.reference`).

Search is exact (cosine = dot product of L2-normalized rows, one matrix product per chunk of queries).
The metric functions work on plain arrays so they can be checked by hand (tests/test_evaluate.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spotifai import atomic, database

log = logging.getLogger(__name__)

KS = (5, 10)
EVALUATION_FILE = "evaluation.json"
BASELINES_FILE = "baselines.npz"


# ---------------------------------------------------------------------------------------- metric functions


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, d) scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_scores(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Cosine similarities (Q, N) of query rows (Q, d) against corpus rows (N, d): exact search."""
    return normalize_rows(queries) @ normalize_rows(corpus).T


def ranking_order(scores: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) corpus indices by descending score (ties: lower corpus index first); ``exclude`` (Q, N) bool
    candidates are moved to the end."""
    scores = np.array(scores, dtype=np.float64 if np.asarray(scores).dtype == np.float64 else np.float32)
    if exclude is not None:
        scores[np.asarray(exclude, dtype=bool)] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Relevance (Q, N) bool reordered by descending score (ties: lower corpus index first).

    ``exclude`` (Q, N) bool: candidates removed from the ranking (e.g. the query itself); they are moved to
    the end and count as not relevant.
    """
    relevant = np.asarray(relevant, dtype=bool)
    if exclude is not None:
        relevant = relevant & ~np.asarray(exclude, dtype=bool)
    return np.take_along_axis(relevant, ranking_order(scores, exclude), axis=1)


def precision_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """(Q,) fraction of the top ``k`` that are relevant; ``ranked`` (Q, N) bool from :func:`ranked_relevance`."""
    return ranked[:, :k].sum(axis=1) / float(k)


def recall_at_k(ranked: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """(Q,) share of all relevant candidates found in the top ``k``; NaN where there is none."""
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, ranked[:, :k].sum(axis=1) / n_relevant, np.nan)


def average_precision(ranked: np.ndarray, n_relevant: np.ndarray | None = None) -> np.ndarray:
    """(Q,) average precision over the full ranking: mean over relevant candidates of the precision at their
    rank. ``n_relevant`` defaults to the relevant candidates in ``ranked``. NaN where there is none."""
    ranked = np.asarray(ranked, dtype=bool)
    if n_relevant is None:
        n_relevant = ranked.sum(axis=1)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    hits = np.cumsum(ranked, axis=1)
    precision = hits / np.arange(1, ranked.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, (precision * ranked).sum(axis=1) / n_relevant, np.nan)


def label_relevance(query_labels: Sequence, corpus_labels: Sequence) -> np.ndarray:
    """(Q, N) bool: same label, where the query's label is known (None / "" never match)."""
    codes: dict = {}

    def encode(labels):
        return np.array([-1 if (v is None or v == "") else codes.setdefault(v, len(codes)) for v in labels])

    q, c = encode(query_labels), encode(corpus_labels)
    return (q[:, None] == c[None, :]) & (q[:, None] >= 0)


def set_relevance(query_sets: Sequence[set], corpus_sets: Sequence[set]) -> np.ndarray:
    """(Q, N) bool: the query's set and the candidate's set intersect (e.g. shared playlists)."""
    members: dict = {}
    for j, s in enumerate(corpus_sets):
        for item in s:
            members.setdefault(item, []).append(j)
    members_arr = {k: np.asarray(v) for k, v in members.items()}
    out = np.zeros((len(query_sets), len(corpus_sets)), dtype=bool)
    for i, s in enumerate(query_sets):
        for item in s:
            idx = members_arr.get(item)
            if idx is not None:
                out[i, idx] = True
    return out


def per_query_metrics(
    query_vectors: np.ndarray,
    corpus_vectors: np.ndarray,
    relevance: dict[str, np.ndarray],
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = KS,
    with_recall_map: Sequence[str] = ("playlist",),
) -> dict[str, np.ndarray]:
    """Per-query metrics of exact cosine search of queries (Q, d) in a corpus (N, d): {metric: (Q,) float64}.

    Metric names as in :func:`retrieval_metrics`; a query without any relevant candidate for a ground truth
    gets NaN for that ground truth's metrics (it is undefined, not zero).
    """
    order = ranking_order(cosine_scores(query_vectors, corpus_vectors), exclude)
    out: dict[str, np.ndarray] = {}
    for name, rel in relevance.items():
        rel = np.asarray(rel, dtype=bool)
        if exclude is not None:
            rel = rel & ~np.asarray(exclude, dtype=bool)
        n_rel = rel.sum(axis=1)
        defined = n_rel > 0
        ranked = np.take_along_axis(rel, order, axis=1)

        values = {f"{name}_precision@{k}": precision_at_k(ranked, k) for k in ks}
        if name in with_recall_map:
            values.update({f"{name}_recall@{k}": recall_at_k(ranked, n_rel, k) for k in ks})
            values[f"{name}_map"] = average_precision(ranked, n_rel)
        out.update({key: np.where(defined, v, np.nan) for key, v in values.items()})
    return out


def metric_ground_truth(metric: str) -> str:
    """The ground truth a metric name belongs to: ``"album_precision@5"`` -> ``"album"``."""
    return metric.rsplit("_", 1)[0]


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the queries where each metric is defined, plus ``<ground truth>_queries`` counts."""
    out: dict[str, float] = {}
    for key, values in per_query.items():
        defined = np.isfinite(values)
        out[key] = float(values[defined].mean()) if defined.any() else float("nan")
        out[f"{metric_ground_truth(key)}_queries"] = int(defined.sum())
    return out


def retrieval_metrics(
    query_vectors: np.ndarray,
    corpus_vectors: np.ndarray,
    relevance: dict[str, np.ndarray],
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = KS,
    with_recall_map: Sequence[str] = ("playlist",),
) -> dict[str, float]:
    """Mean metrics of exact cosine search of queries (Q, d) in a corpus (N, d).

    ``relevance``: {name: (Q, N) bool} ground truths (e.g. playlist, artist, genre). For each name:
    ``<name>_precision@k`` for k in ``ks``, plus ``<name>_recall@k`` and ``<name>_map`` for names in
    ``with_recall_map``, and ``<name>_queries`` (queries with at least one relevant candidate; only those
    are averaged). ``exclude`` (Q, N) bool removes candidates (the query itself).
    """
    per_query = per_query_metrics(
        query_vectors, corpus_vectors, relevance, exclude=exclude, ks=ks, with_recall_map=with_recall_map
    )
    return mean_metrics(per_query)


def bootstrap_interval(
    values: np.ndarray, *, baseline: np.ndarray | None = None, statistic: str = "mean",
    n_resamples: int = 2000, level: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """A percentile bootstrap interval over queries: ``(estimate, low, high)``.

    ``values`` (Q,) per-query metric (NaN = undefined, left out). With ``baseline`` (Q,) of the same queries
    (paired: one resample draws the same queries for both), ``statistic`` "difference" is mean(values) -
    mean(baseline) and "ratio" is mean(values) / mean(baseline); otherwise the mean of ``values``. Queries
    are resampled with replacement ``n_resamples`` times with a fixed ``seed``, so the interval is repeatable.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.float64)
        keep &= np.isfinite(baseline)
        baseline = baseline[keep]
    values = values[keep]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")

    def stat(idx) -> np.ndarray:
        a = values[idx].mean(axis=-1)
        if statistic == "mean":
            return a
        b = baseline[idx].mean(axis=-1)
        if statistic == "difference":
            return a - b
        with np.errstate(divide="ignore", invalid="ignore"):
            return a / b

    if statistic not in ("mean", "difference", "ratio") or (statistic != "mean" and baseline is None):
        raise ValueError(f"statistic {statistic!r} needs one of mean / difference / ratio (the last two with a baseline)")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, 2_000_000 // values.size)  # bounded memory for large query sets
    draws = np.concatenate([
        stat(rng.integers(0, values.size, size=(min(per_chunk, n_resamples - start), values.size)))
        for start in range(0, n_resamples, per_chunk)
    ])
    alpha = (1.0 - level) / 2
    low, high = np.nanquantile(draws, [alpha, 1.0 - alpha])
    return float(stat(np.arange(values.size))), float(low), float(high)


# ------------------------------------------------------------------------------------------- experiments


LABELLED_METRICS = ("album_precision@5", "composer_precision@5")
PLAYLIST_METRICS = ("playlist_precision@10", "artist_precision@10", "genre_precision@10")


def headline_metrics(results: dict) -> tuple[list[str], str]:
    """(metrics, scope) that answer the experiment's question, for figures and summaries.

    With a labels file (real music: one playlist per album) the question is "same album / composer" among the
    whole catalogue; without one (the demo) "same playlist / artist / genre" among the held-out tracks, even
    though the DB's own album column makes album metrics exist there too."""
    if results.get("labels"):
        some = next(iter(results["methods"].values()))["catalogue"]
        return [m for m in LABELLED_METRICS if m in some], "catalogue"
    return list(PLAYLIST_METRICS), "heldout"


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def _baseline_vectors(
    experiment_path: Path,
    config,
    audio_config,
    db_path: Path,
    track_ids: np.ndarray,
    *,
    device: str,
    batch_size: int,
    max_patches_per_track: int | None,
    num_workers: int,
    seed: int,
    progress: bool,
    random: bool = True,
) -> dict[str, np.ndarray]:
    """{random-features, random-projections, logmel-stats}: (N, d) rows for ``track_ids`` (NaN rows where a
    track failed; without ``random``: logmel-stats only). Cached in ``experiments/<name>/baselines.npz``, keyed by
    the settings that make them (a cache with the random rows also serves a call without them)."""
    from spotifai.baselines import logmel_stats_vectors, random_encoder
    from spotifai.embed import embed_tracks
    from spotifai.experiment import cache_path

    cache_dir = cache_path(experiment_path, config)

    key = json.dumps(
        {"model": config.model.to_dict(), "audio": audio_config.to_dict(), "seed": seed, "max_patches": max_patches_per_track},
        sort_keys=True,
    )
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = experiment_path / BASELINES_FILE
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                names = ("random-features", "random-projections", "logmel-stats") if random else ("logmel-stats",)
                if str(z["key"]) == key and np.array_equal(z["track_ids"], track_ids) and set(names) <= set(z.files):
                    log.info("baselines: using the cache %s", cache)
                    return {name: z[name] for name in names}
        except (OSError, KeyError, ValueError) as exc:
            log.warning("%s: ignoring the baseline cache (%s)", cache, exc)

    conn = database.connect(db_path, create=False, readonly=True)
    try:
        rows = database.tracks(conn, track_ids.tolist(), with_audio=True)
        items = [(int(r["id"]), r["audio_path"]) for r in rows]
        logmel = logmel_stats_vectors(conn, track_ids.tolist(), audio_config, num_workers=num_workers,
                                      progress=progress, cache_dir=cache_dir)
    finally:
        conn.close()
    if not random:
        if not cache.is_file():  # never replace a cache that holds the random rows too
            atomic.write_with(cache, lambda fh: np.savez(fh, key=np.array(key), track_ids=track_ids,
                                                         **{"logmel-stats": logmel}))
        return {"logmel-stats": logmel}
    res = embed_tracks(
        random_encoder(config.model.to_dict(), seed=seed),
        items,
        audio_config,
        device=device,
        batch_size=batch_size,
        max_patches_per_track=max_patches_per_track,
        num_workers=num_workers,
        progress=progress,
        cache_dir=cache_dir,
    )
    pos = {int(t): i for i, t in enumerate(track_ids)}
    rf = np.full((len(track_ids), res.features.shape[1]), np.nan, dtype=np.float32)
    rp = np.full((len(track_ids), res.projections.shape[1]), np.nan, dtype=np.float32)
    rows_idx = np.array([pos[int(t)] for t in res.track_ids], dtype=np.int64)
    rf[rows_idx] = res.features
    rp[rows_idx] = res.projections
    out = {"random-features": rf, "random-projections": rp, "logmel-stats": logmel}
    atomic.write_with(cache, lambda fh: np.savez(fh, key=np.array(key), track_ids=track_ids, **out))
    return out


LABELS_FILE = "labels.csv"
"""A labels file beside the music DB (``<db folder>/labels.csv``) is used by default (see :func:`read_labels`)."""
TRAINED = ("trained-projections", "trained-features")
REFERENCES = ("musicnn",)


def read_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """Evaluation labels from a CSV file with a ``path`` column and one column per label (album, composer, ...):
    {resolved audio path: {label: value}}. Empty cells mean "unknown". ValueError naming the file (and line)
    when the file has no ``path`` column or a row has the wrong number of cells."""
    import csv

    path = Path(path)
    out: dict[str, dict[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "path" not in header:
            raise ValueError(f"{path}: line 1: a labels file needs a 'path' column (got {header!r})")
        col = header.index("path")
        names = [h for h in header if h != "path"]
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}: line {line}: {len(row)} cells, the header has {len(header)}")
            values = dict(zip(header, row, strict=True))
            key = str(Path(row[col]).expanduser().resolve())
            out[key] = {n: values[n].strip() for n in names}
    return out


def _ground_truths(meta: dict[int, dict], track_ids: np.ndarray, labels: dict[str, dict[str, str]]) -> dict[str, list]:
    """{name: [label per track]} from the DB (artist, album, genre) and the labels file (which wins on a name
    clash). Ground truths without any known value are left out."""
    truths: dict[str, list] = {name: [meta[int(t)][name] for t in track_ids] for name in ("artist", "album", "genre")}
    if labels:
        resolved = [str(Path(meta[int(t)]["audio_path"] or "").resolve()) for t in track_ids]
        names = sorted({n for row in labels.values() for n in row})
        for name in names:
            truths[name] = [labels.get(p, {}).get(name) or None for p in resolved]
    return {name: values for name, values in truths.items() if any(v not in (None, "") for v in values)}


def _reference_vectors(name: str, db_path: Path, meta: dict[int, dict], track_ids: np.ndarray) -> np.ndarray:
    """(N, d) vectors of an off-the-shelf reference model for ``track_ids`` (NaN rows where it failed)."""
    if name != "musicnn":
        raise ValueError(f"unknown reference {name!r} (choose from {', '.join(REFERENCES)})")
    from spotifai.reference import musicnn_vectors

    paths = [meta[int(t)]["audio_path"] for t in track_ids]
    vectors, _info = musicnn_vectors(paths, cache=db_path.parent / "musicnn.npz")
    return np.asarray(vectors, dtype=np.float32)


def _per_query_results(
    methods: dict[str, np.ndarray], q_rows: np.ndarray, scopes: dict[str, np.ndarray],
    sets: list[set], truths: dict[str, list], ks: Sequence[int], chunk: int,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{method: {scope: {metric: (Q,) per-query values}}} of every method in every scope (chunks of queries)."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {name: {} for name in methods}
    for scope, c_rows in scopes.items():
        c_sets = [sets[i] for i in c_rows]
        c_truths = {name: [values[i] for i in c_rows] for name, values in truths.items()}
        col_of = {int(r): j for j, r in enumerate(c_rows)}
        parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in methods}
        for start in range(0, len(q_rows), chunk):
            qr = q_rows[start : start + chunk]
            exclude = np.zeros((len(qr), len(c_rows)), dtype=bool)
            exclude[np.arange(len(qr)), [col_of[int(r)] for r in qr]] = True
            relevance = {"playlist": set_relevance([sets[i] for i in qr], c_sets)}
            for name, values in truths.items():
                relevance[name] = label_relevance([values[i] for i in qr], c_truths[name])
            for name, vecs in methods.items():
                parts[name].append(per_query_metrics(
                    vecs[qr], vecs[c_rows], relevance, exclude=exclude, ks=ks,
                    with_recall_map=("playlist", "album"),
                ))
        for name in methods:
            out[name][scope] = {key: np.concatenate([p[key] for p in parts[name]]) for key in parts[name][0]}
    return out


def _intervals(per_query: dict, baselines: Sequence[str]) -> tuple[dict, dict]:
    """Bootstrap intervals of every mean, and of the difference and ratio of each trained method against each
    baseline (paired over the same queries): ({method: {scope: {metric: [low, high]}}},
    {"<trained> vs <baseline>": {scope: {metric: {"difference": [d, low, high], "ratio": [r, low, high]}}}})."""
    intervals = {
        method: {scope: {key: list(bootstrap_interval(v)[1:]) for key, v in metrics.items()}
                 for scope, metrics in scopes.items()}
        for method, scopes in per_query.items()
    }
    comparisons: dict[str, dict] = {}
    for trained in (m for m in TRAINED if m in per_query):
        for base in (b for b in baselines if b in per_query):
            comparisons[f"{trained} vs {base}"] = {
                scope: {
                    key: {stat: list(bootstrap_interval(v, baseline=per_query[base][scope][key], statistic=stat))
                          for stat in ("difference", "ratio")}
                    for key, v in metrics.items()
                }
                for scope, metrics in per_query[trained].items()
            }
    return intervals, comparisons


def evaluate_experiment(
    experiment_path: str | Path,
    *,
    ks: Sequence[int] = KS,
    baselines: bool = True,
    device: str = "cpu",
    batch_size: int = 64,
    max_patches_per_track: int | None = 64,
    num_workers: int | None = None,
    baseline_seed: int = 0,
    chunk: int = 256,
    progress: bool = True,
    labels: str | Path | None = None,
    references: Sequence[str] = (),
    random_baseline: bool = True,
) -> dict:
    """Evaluate the experiment's ``embeddings.npz`` (and the baselines) on its held-out tracks.

    ``labels``: a labels CSV (:func:`read_labels`; default: ``labels.csv`` beside the music DB when it exists)
    whose columns become ground truths next to playlist, artist, album and genre. ``references``: off-the-shelf
    models to score too ("musicnn": its MSD model, see :mod:`spotifai.reference`). ``random_baseline=False``
    leaves out the random-weights encoder (a second embedding pass of the whole catalogue, slow for large models
    on a CPU); the log-mel statistics are still computed when ``baselines``.

    Writes ``experiments/<name>/evaluation.json`` atomically and returns the same dict: experiment,
    checkpoint_id, step, ks, n_heldout, n_catalogue, n_playlists, labels (the file used or None), methods =
    {method: {scope: {metric: mean}}} with scopes "heldout" and "catalogue" (see the module docstring),
    intervals = 95 % bootstrap intervals of those means, comparisons = paired bootstrap intervals of the
    difference and ratio of each trained space against log-mel statistics and the references, seconds.
    """
    from spotifai.embeddings_file import load_embeddings
    from spotifai.experiment import database_path, load_config

    t0 = time.perf_counter()
    experiment_path = Path(experiment_path)
    config = load_config(experiment_path)
    emb = load_embeddings(experiment_path)
    db_path = database_path(experiment_path, config)
    split, playlists_of, meta, n_playlists = _read_music_db(db_path, config, emb.track_ids.tolist())
    if labels is None and (db_path.parent / LABELS_FILE).is_file():
        labels = db_path.parent / LABELS_FILE

    catalogue = np.array([t for t in emb.track_ids.tolist() if t in meta], dtype=np.int64)
    emb = emb.subset(catalogue.tolist())
    methods: dict[str, np.ndarray] = {"trained-projections": emb.projections, "trained-features": emb.features}
    if baselines:
        methods.update(_baselines(experiment_path, config, db_path, catalogue, device=device, batch_size=batch_size,
                                  max_patches_per_track=max_patches_per_track, num_workers=num_workers,
                                  seed=baseline_seed, progress=progress, random=random_baseline))
    for name in references:
        methods[f"{name}-msd" if name == "musicnn" else name] = _reference_vectors(name, db_path, meta, catalogue)

    catalogue, methods = _embedded_by_all(catalogue, methods)
    q_rows = _heldout_rows(experiment_path, catalogue, split)
    log.info("evaluating %d held-out queries against %d held-out / %d catalogue tracks",
             len(q_rows), len(q_rows), len(catalogue))
    truths = _ground_truths(meta, catalogue, read_labels(labels) if labels else {})
    sets = [playlists_of.get(int(t), set()) for t in catalogue]
    results, intervals, comparisons = _score(methods, q_rows, len(catalogue), sets, truths, ks, chunk)
    out = {
        "experiment": experiment_path.resolve().name,
        "checkpoint_id": emb.checkpoint_id,
        "step": emb.step,
        "ks": list(ks),
        "n_heldout": int(len(q_rows)),
        "n_catalogue": int(len(catalogue)),
        "n_playlists": int(n_playlists),
        "labels": None if labels is None else str(labels),
        "methods": results,
        "intervals": intervals,
        "comparisons": comparisons,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out = _json_safe(out)
    atomic.write_text(experiment_path / EVALUATION_FILE, json.dumps(out, indent=2) + "\n")
    return out


def _read_music_db(db_path: Path, config, track_ids: list[int]) -> tuple:
    """(the experiment's split, {track id: its playlists}, {track id: its DB row} of ``track_ids``, number of
    playlists), read from the music DB at ``db_path`` (read-only)."""
    conn = database.connect(db_path, create=False, readonly=True)
    try:
        split = config.data.split(conn)
        playlists_of = database.track_playlists(conn)
        meta = {int(r["id"]): r for r in database.tracks(conn, track_ids)}
        n_playlists = database.counts(conn)["playlists"]
    finally:
        conn.close()
    return split, playlists_of, meta, n_playlists


def _embedded_by_all(catalogue: np.ndarray, methods: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The tracks of ``catalogue`` (N,) whose rows are finite in every method's (N, dim) vectors, and those
    rows: every method is evaluated on the same tracks."""
    ok = np.ones(len(catalogue), dtype=bool)
    for vecs in methods.values():
        ok &= np.isfinite(vecs).all(axis=1)
    if not ok.all():
        log.warning("%d tracks left out: not embedded by every method", int((~ok).sum()))
    return catalogue[ok], {name: v[ok] for name, v in methods.items()}


def _heldout_rows(experiment_path: Path, catalogue: np.ndarray, split) -> np.ndarray:
    """int64 positions in ``catalogue`` of the split's held-out tracks (the queries); ValueError when fewer
    than two."""
    heldout_set = set(split.heldout_tracks)
    q_rows = np.array([i for i, t in enumerate(catalogue.tolist()) if t in heldout_set], dtype=np.int64)
    if len(q_rows) < 2:
        raise ValueError(
            f"{experiment_path}: only {len(q_rows)} embedded held-out tracks; nothing to evaluate "
            "(embed the experiment first, or use a larger corpus / heldout_track_fraction)"
        )
    return q_rows


def _score(methods: dict[str, np.ndarray], q_rows: np.ndarray, n_catalogue: int, sets: list, truths: dict,
           ks: Sequence[int], chunk: int) -> tuple[dict, dict, dict]:
    """(methods = {method: {scope: {metric: mean, candidates}}}, intervals, comparisons) of the queries
    ``q_rows`` in the scopes "heldout" (the queries only) and "catalogue" (all ``n_catalogue`` rows)."""
    scopes = {"heldout": q_rows, "catalogue": np.arange(n_catalogue)}
    per_query = _per_query_results(methods, q_rows, scopes, sets, truths, ks, chunk)
    results = {
        method: {scope: {**mean_metrics(metrics), "candidates": int(len(scopes[scope]) - 1)}
                 for scope, metrics in by_scope.items()}
        for method, by_scope in per_query.items()
    }
    intervals, comparisons = _intervals(per_query, [m for m in methods if m == "logmel-stats" or m.endswith("-msd")])
    return results, intervals, comparisons


def _baselines(
    experiment_path: Path, config, db_path: Path, catalogue: np.ndarray, *, device: str, batch_size: int,
    max_patches_per_track: int | None, num_workers: int | None, seed: int, progress: bool, random: bool = True,
) -> dict[str, np.ndarray]:
    """The random-weights encoder's features and projections (when ``random``) and the z-scored log-mel
    statistics."""
    from spotifai.embed import default_num_workers

    base = _baseline_vectors(
        experiment_path, config, config.data.audio, db_path, catalogue,
        device=device, batch_size=batch_size, max_patches_per_track=max_patches_per_track,
        num_workers=default_num_workers(device) if num_workers is None else num_workers, seed=seed,
        progress=progress, random=random,
    )
    base["logmel-stats"] = standardize_columns(base.pop("logmel-stats"))
    return base


def standardize_columns(x: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d) float32 z-scores of each column over the N rows (NaN rows ignored; constant columns only
    centred): how the log-mel statistics are scored, so no dimension's scale dominates their cosine."""
    mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    return ((x - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32)


def load_evaluation(experiment_path: str | Path) -> dict:
    """Read ``experiments/<name>/evaluation.json``."""
    path = Path(experiment_path) / EVALUATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no evaluation (run `spotifai evaluate {Path(experiment_path)}` first)")
    return json.loads(path.read_text(encoding="utf-8"))


def evaluation_table(results: dict):
    """A pandas DataFrame of :func:`evaluate_experiment`'s results: one row per (method, scope), one column
    per metric (playlist_precision@5, ..., playlist_map, artist_precision@k, genre_precision@k, counts)."""
    import pandas as pd

    rows = []
    for method, scopes in results["methods"].items():
        for scope, metrics in scopes.items():
            rows.append({"method": method, "scope": scope, **metrics})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = ["method", "scope"]
    metric_cols = [c for c in df.columns if c not in first and not c.endswith("_queries") and c != "candidates"]
    count_cols = [c for c in df.columns if c.endswith("_queries") or c == "candidates"]
    return df[first + sorted(metric_cols) + count_cols].reset_index(drop=True)


def comparison_lines(results: dict, scope: str = "catalogue", metrics: Sequence[str] | None = None) -> list[str]:
    """One line per (comparison, metric): the ratio and difference of means with their bootstrap intervals,
    e.g. ``trained-projections vs logmel-stats  album_precision@5  ratio 2.10 [1.71, 2.58]  diff +0.21 [...]``.
    ``metrics`` default: every precision@5 and the maps."""
    lines = []
    for name, scopes in results.get("comparisons", {}).items():
        for metric, stats in scopes.get(scope, {}).items():
            if metrics is None and not metric.endswith(("precision@5", "_map")):
                continue
            if metrics is not None and metric not in metrics:
                continue
            r, d = stats["ratio"], stats["difference"]
            if None in r or None in d:
                continue
            lines.append(f"{scope:<9} {name:<40} {metric:<24} ratio {r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"
                         f"  difference {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    return lines
