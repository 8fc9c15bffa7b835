"""Retrieval metrics on held-out tracks, for the trained model and two baselines.

Protocol (:func:`evaluate_experiment`):

* Queries are the **held-out tracks** of the experiment's split (``database.split`` with the experiment's
  ``data`` settings): tracks that never appeared in a training or validation batch.
* Two scopes: ``heldout`` ranks the *other* held-out tracks; ``catalogue`` ranks every other track with
  audio (training tracks included). The query itself is always excluded.
* Ground truth, computed from the DB and never from audio:
  - playlist: a candidate is relevant when it shares at least one playlist with the query (ALL playlists of
    the DB count, not only training ones; membership is what held-out tracks were hidden from);
  - artist: same artist; genre: same genre (queries without a known genre are left out).
* Metrics per scope: playlist precision@k and recall@k (k = 5, 10), mean average precision over the full
  ranking, artist precision@k and genre precision@k. A query enters a metric only when it has at least
  one relevant candidate for that ground truth (otherwise the metric is undefined, e.g. recall, or
  identical for every method); the number of such queries is reported.
* Methods: the trained model's ``features`` and ``projections`` (from ``embeddings.npz``), the same
  architecture with random weights (:func:`spotifai.embed.random_encoder`, same embedding code), and the
  per-track mean + standard deviation of log-mel bands (:func:`spotifai.embed.logmel_stats_vectors`,
  z-scored per dimension over the catalogue so that no band dominates the cosine). All methods are
  evaluated on the same tracks (those every method could embed).

Search is exact (cosine = dot product of L2-normalized rows, one matrix product per chunk of queries).
The metric functions work on plain arrays so they can be checked by hand (tests/test_evaluate.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spotifai import database

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
    order = ranking_order(cosine_scores(query_vectors, corpus_vectors), exclude)
    out: dict[str, float] = {}
    for name, rel in relevance.items():
        rel = np.asarray(rel, dtype=bool)
        if exclude is not None:
            rel = rel & ~np.asarray(exclude, dtype=bool)
        n_rel = rel.sum(axis=1)
        keep = n_rel > 0
        out[f"{name}_queries"] = int(keep.sum())
        if not keep.any():
            for k in ks:
                out[f"{name}_precision@{k}"] = float("nan")
            continue
        ranked = np.take_along_axis(rel[keep], order[keep], axis=1)
        for k in ks:
            out[f"{name}_precision@{k}"] = float(precision_at_k(ranked, k).mean())
        if name in with_recall_map:
            for k in ks:
                out[f"{name}_recall@{k}"] = float(recall_at_k(ranked, n_rel[keep], k).mean())
            out[f"{name}_map"] = float(average_precision(ranked, n_rel[keep]).mean())
    return out


# ------------------------------------------------------------------------------------------- experiments


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    config: dict,
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
) -> dict[str, np.ndarray]:
    """{random-features, random-projections, logmel-stats}: (N, d) rows for ``track_ids`` (NaN rows where a
    track failed). Cached in ``experiments/<name>/baselines.npz``, keyed by the settings that make them."""
    from spotifai.embed import embed_tracks, logmel_stats_vectors, random_encoder

    key = json.dumps(
        {"model": config["model"], "audio": audio_config.to_dict(), "seed": seed, "max_patches": max_patches_per_track},
        sort_keys=True,
    )
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = experiment_path / BASELINES_FILE
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key and np.array_equal(z["track_ids"], track_ids):
                    log.info("baselines: using the cache %s", cache)
                    return {name: z[name] for name in ("random-features", "random-projections", "logmel-stats")}
        except (OSError, KeyError, ValueError) as exc:
            log.warning("%s: ignoring the baseline cache (%s)", cache, exc)

    conn = database.connect(db_path, create=False, readonly=True)
    try:
        rows = database.tracks(conn, track_ids.tolist(), with_audio=True)
        items = [(int(r["id"]), r["audio_path"]) for r in rows]
        logmel = logmel_stats_vectors(conn, track_ids.tolist(), audio_config, num_workers=num_workers, progress=progress)
    finally:
        conn.close()
    res = embed_tracks(
        random_encoder(config["model"], seed=seed),
        items,
        audio_config,
        device=device,
        batch_size=batch_size,
        max_patches_per_track=max_patches_per_track,
        num_workers=num_workers,
        progress=progress,
    )
    pos = {int(t): i for i, t in enumerate(track_ids)}
    rf = np.full((len(track_ids), res.features.shape[1]), np.nan, dtype=np.float32)
    rp = np.full((len(track_ids), res.projections.shape[1]), np.nan, dtype=np.float32)
    rows_idx = np.array([pos[int(t)] for t in res.track_ids], dtype=np.int64)
    rf[rows_idx] = res.features
    rp[rows_idx] = res.projections
    out = {"random-features": rf, "random-projections": rp, "logmel-stats": logmel}
    fd, tmp = tempfile.mkstemp(prefix=".baselines.", suffix=".npz.tmp", dir=experiment_path)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.array(key), track_ids=track_ids, **out)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


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
) -> dict:
    """Evaluate the experiment's ``embeddings.npz`` (and the baselines) on its held-out tracks.

    Writes ``experiments/<name>/evaluation.json`` atomically and returns the same dict: experiment,
    checkpoint_id, step, ks, n_heldout, n_catalogue, n_playlists, methods = {method: {scope: {metric:
    value}}} with scopes "heldout" and "catalogue" (see the module docstring), seconds.
    """
    from spotifai.embed import database_path, default_num_workers, load_embeddings
    from spotifai.train import load_config

    t0 = time.perf_counter()
    experiment_path = Path(experiment_path)
    config = load_config(experiment_path)
    emb = load_embeddings(experiment_path)
    data = config["data"]
    db_path = database_path(experiment_path, config)
    conn = database.connect(db_path, create=False, readonly=True)
    try:
        split = database.split(
            conn,
            seed=int(data.get("seed", 0)),
            validation_fraction=float(data.get("validation_fraction", 0.1)),
            heldout_track_fraction=float(data.get("heldout_track_fraction", 0.2)),
            min_tracks=int(data.get("min_tracks", 2)),
        )
        playlists_of = database.track_playlists(conn)
        meta = {int(r["id"]): r for r in database.tracks(conn, emb.track_ids.tolist())}
        n_playlists = database.counts(conn)["playlists"]
    finally:
        conn.close()

    catalogue = np.array([t for t in emb.track_ids.tolist() if t in meta], dtype=np.int64)
    emb = emb.subset(catalogue.tolist())
    methods: dict[str, np.ndarray] = {
        "trained-projections": emb.projections,
        "trained-features": emb.features,
    }
    if baselines:
        from spotifai.audio import AudioConfig

        audio_config = AudioConfig.from_dict(data.get("audio", {}))
        base = _baseline_vectors(
            experiment_path,
            config,
            audio_config,
            db_path,
            catalogue,
            device=device,
            batch_size=batch_size,
            max_patches_per_track=max_patches_per_track,
            num_workers=default_num_workers(device) if num_workers is None else num_workers,
            seed=baseline_seed,
            progress=progress,
        )
        logmel = base.pop("logmel-stats")
        mu, sd = np.nanmean(logmel, axis=0), np.nanstd(logmel, axis=0)
        methods.update(base)
        methods["logmel-stats"] = ((logmel - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32)

    # the same tracks for every method: those every method could embed
    ok = np.ones(len(catalogue), dtype=bool)
    for vecs in methods.values():
        ok &= np.isfinite(vecs).all(axis=1)
    if not ok.all():
        log.warning("%d tracks left out: not embedded by every method", int((~ok).sum()))
    catalogue = catalogue[ok]
    methods = {name: v[ok] for name, v in methods.items()}
    heldout_set = set(split.heldout_tracks)
    q_rows = np.array([i for i, t in enumerate(catalogue.tolist()) if t in heldout_set], dtype=np.int64)
    if len(q_rows) < 2:
        raise ValueError(
            f"{experiment_path}: only {len(q_rows)} embedded held-out tracks; nothing to evaluate "
            "(embed the experiment first, or use a larger corpus / heldout_track_fraction)"
        )
    log.info("evaluating %d held-out queries against %d held-out / %d catalogue tracks",
             len(q_rows), len(q_rows), len(catalogue))

    def labels(rows: np.ndarray, key: str) -> list:
        return [meta[int(t)][key] for t in catalogue[rows]]

    all_rows = np.arange(len(catalogue))
    sets = [playlists_of.get(int(t), set()) for t in catalogue]
    results: dict[str, dict] = {name: {} for name in methods}
    for scope, c_rows in (("heldout", q_rows), ("catalogue", all_rows)):
        c_artists, c_genres = labels(c_rows, "artist"), labels(c_rows, "genre")
        c_sets = [sets[i] for i in c_rows]
        col_of = {int(r): j for j, r in enumerate(c_rows)}
        sums: dict[str, dict[str, float]] = {name: {} for name in methods}
        for start in range(0, len(q_rows), chunk):
            qr = q_rows[start : start + chunk]
            exclude = np.zeros((len(qr), len(c_rows)), dtype=bool)
            exclude[np.arange(len(qr)), [col_of[int(r)] for r in qr]] = True
            relevance = {
                "playlist": set_relevance([sets[i] for i in qr], c_sets),
                "artist": label_relevance(labels(qr, "artist"), c_artists),
                "genre": label_relevance(labels(qr, "genre"), c_genres),
            }
            for name, vecs in methods.items():
                part = retrieval_metrics(vecs[qr], vecs[c_rows], relevance, exclude=exclude, ks=ks)
                acc = sums[name]
                for key, value in part.items():  # accumulate query-weighted sums across chunks
                    if key.endswith("_queries"):
                        continue
                    n = part[key.split("_")[0] + "_queries"]
                    if n:
                        acc[key] = acc.get(key, 0.0) + value * n
                for key in (k for k in part if k.endswith("_queries")):
                    acc[key] = acc.get(key, 0) + part[key]
        for name in methods:
            acc = sums[name]
            metrics: dict[str, float] = {}
            for key, value in sorted(acc.items()):
                if key.endswith("_queries"):
                    metrics[key] = int(value)
                else:
                    n = acc.get(key.split("_")[0] + "_queries", 0)
                    metrics[key] = value / n if n else float("nan")
            metrics["candidates"] = int(len(c_rows) - 1)
            results[name][scope] = metrics

    out = {
        "experiment": experiment_path.resolve().name,
        "checkpoint_id": emb.checkpoint_id,
        "step": emb.step,
        "ks": list(ks),
        "n_heldout": int(len(q_rows)),
        "n_catalogue": int(len(catalogue)),
        "n_playlists": int(n_playlists),
        "methods": results,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out = _json_safe(out)
    _atomic_write_text(experiment_path / EVALUATION_FILE, json.dumps(out, indent=2) + "\n")
    return out


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
