"""Benchmark the ChromaDB track index: build time, query latency p50/p95 and recall@10 against exact search.

For each data set in ``--datasets`` and each size in ``--sizes``: N unit vectors of ``--dim`` dimensions
(default: the default config's projection_dim, 512), indexed with :class:`spotifai.index.TrackIndex`
(embedded PersistentClient in a temp folder, the project's HNSW settings unless overridden), then
``--queries`` fresh vectors from the same distribution are searched with k = 10 after a warm-up.

Data sets
---------
* ``random``: isotropic Gaussian vectors, L2-normalized. No structure at all: every point is nearly
  equidistant from every other (cosine similarities concentrate around 0 with spread 1/sqrt(dim)), so the
  "nearest" neighbours are barely nearer than the rest. The worst case for any graph index and unlike
  any learned embedding; reported as a lower bound.
* ``structured``: what learned embeddings look like: they occupy a low-dimensional manifold (intrinsic
  dimension ~10-40 for audio/image/text encoders) and cluster (genres, artists, albums). Generator: a random
  orthonormal basis B (dim x ``--intrinsic-dim``, default 32); ``--clusters`` (default 1000) centres
  c_j ~ N(0, I) in that subspace with Zipf-like cluster sizes (weights 1/(j+1)^0.5, so a few big
  "genres" and a long tail); a point = B (c_j + s * N(0, I)) + ambient noise N(0, sigma^2 I_dim) with
  ``s = --spread`` (default 1.0: clusters as wide as the spacing of their centres, so they overlap like
  genres do; 0.5 gives well separated clusters, an easier case) and sigma chosen so the noise carries
  ``--noise`` (default 10 %) of the energy, then L2-normalized.
  Queries are fresh draws from the same mixture (unseen tracks), not stored vectors (which are easier).

Measurements (per data set and size)
------------------------------------
* ``build_s`` / ``build_vectors_per_s``: :meth:`TrackIndex.build_space` (upserts of ``--batch-size``
  vectors with a ``track_id`` metadata each). ``build_overhead_vectors_per_s``: the same build of
  min(N, 20000) vectors with a trivial graph (ef_construction 8, max_neighbors 4) = the cost outside HNSW
  insertion (SQLite log + metadata + id bookkeeping), measured once per data set.
* ``query_*``: one query per call through :meth:`TrackIndex.query` (k = 10) with metadata (as
  ``recommend`` does) and with distances only (``metadata=False``, as the web app does), and all queries in
  one batched call (per-query time = total / Q). ``chroma_overhead_p50_ms``: the same single query on a
  100-vector collection (the per-call cost of chromadb's Python/Rust layers, SQLite included); the HNSW
  search itself is roughly ``query_ids_p50_ms - chroma_overhead_p50_ms``.
* ``recall@10`` = |HNSW top-10 ∩ exact top-10| / 10, averaged over queries; exact = one float32 matrix
  product over all N vectors + top-k (numpy, 1 BLAS thread), timed per query in the same run
  (``exact_p50_ms``) and batched (``exact_batched_ms_per_query``).
* ``ef_search_sweep``: the same index re-opened with other ef_search values (a search-time setting).

Sizes above what fits in ``--time-budget`` (seconds per build, estimated from the previous size's rate) are
skipped, and ``estimate_1M`` extrapolates the build time (power law through the two largest measured sizes)
and states that it is an estimate. Timings on a shared CPU are noisy: the 1-minute load average before
and after each build is reported. Prints ONE JSON line.

    .venv/bin/python bench/index.py [--sizes 20000 100000] [--datasets structured random] [--dim 512]
        [--queries 200] [--ef-search N] [--ef-construction N] [--max-neighbors N] [--ef-search-sweep ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# one BLAS thread: a matrix-vector product is memory-bound, and spinning BLAS threads on a shared CPU only
# add noise to the exact-search timing
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from chromadb.api.shared_system_client import SharedSystemClient  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotifai.index import DEFAULT_HNSW, TrackIndex  # noqa: E402

K = 10
WARMUP = 10
PREFIX = "spotifai-bench"


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class RandomVectors:
    """Isotropic Gaussian unit vectors (the worst case)."""

    def __init__(self, dim: int, seed: int) -> None:
        self.dim, self.rng = dim, np.random.default_rng(seed)

    def sample(self, n: int) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for s in range(0, n, 100_000):
            out[s : s + 100_000] = _normalize(self.rng.standard_normal((min(100_000, n - s), self.dim), dtype=np.float32))
        return out


class StructuredVectors:
    """Unit vectors from a Zipf-weighted mixture of Gaussian clusters in a random ``intrinsic_dim``-dimensional
    subspace plus isotropic ambient noise carrying ``noise`` of the energy (see the module docstring)."""

    def __init__(self, dim: int, seed: int, intrinsic_dim: int = 32, clusters: int = 1000, noise: float = 0.1,
                 spread: float = 1.0) -> None:
        self.dim, self.rng = dim, np.random.default_rng(seed)
        self.basis = np.linalg.qr(self.rng.standard_normal((dim, intrinsic_dim)))[0].astype(np.float32)
        self.centres = self.rng.standard_normal((clusters, intrinsic_dim)).astype(np.float32)
        w = 1.0 / np.sqrt(np.arange(1, clusters + 1))
        self.weights = w / w.sum()
        self.spread = spread
        signal = intrinsic_dim * (1.0 + spread**2)  # expected squared norm of the subspace part
        self.sigma = math.sqrt(noise / (1.0 - noise) * signal / dim)

    def sample(self, n: int) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        r = self.basis.shape[1]
        for s in range(0, n, 100_000):
            m = min(100_000, n - s)
            which = self.rng.choice(len(self.centres), size=m, p=self.weights)
            z = self.centres[which] + self.spread * self.rng.standard_normal((m, r), dtype=np.float32)
            x = z @ self.basis.T + self.sigma * self.rng.standard_normal((m, self.dim), dtype=np.float32)
            out[s : s + m] = _normalize(x)
        return out


DATASETS = {"random": RandomVectors, "structured": StructuredVectors}


def pct_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 3)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def build(folder: Path, vectors: np.ndarray, hnsw: dict, batch_size: int) -> tuple[TrackIndex, float]:
    ids = np.arange(len(vectors), dtype=np.int64)
    metas = [{"track_id": int(i)} for i in ids]
    index = TrackIndex(folder, collection_prefix=PREFIX, hnsw=hnsw)
    t0 = time.perf_counter()
    index.build_space("projections", ids, vectors, metas, checkpoint_id="bench", batch_size=batch_size,
                      progress=False)
    return index, time.perf_counter() - t0


def timed_queries(index: TrackIndex, queries: np.ndarray, metadata: bool) -> tuple[list[float], list[list[int]]]:
    for q in queries[:WARMUP]:
        index.query(q[None], K, metadata=metadata)
    lat, found = [], []
    for q in queries[WARMUP:]:
        t0 = time.perf_counter()
        hits = index.query(q[None], K, metadata=metadata)[0]
        lat.append(time.perf_counter() - t0)
        found.append([h["track_id"] for h in hits])
    return lat, found


def recall(exact: list[set[int]], found: list[list[int]]) -> tuple[float, float]:
    r = [len(e & set(f)) / K for e, f in zip(exact, found, strict=True)]
    return round(float(np.mean(r)), 4), round(float(np.min(r)), 2)


def chroma_overhead(dim: int, queries: np.ndarray) -> dict:
    """Single-query latency on a 100-vector collection: chromadb's fixed per-call cost."""
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        index, _ = build(Path(tmp) / "chroma", _normalize(rng.standard_normal((100, dim))), dict(DEFAULT_HNSW), 100)
        meta, _ = timed_queries(index, queries, metadata=True)
        ids, _ = timed_queries(index, queries, metadata=False)
        SharedSystemClient.clear_system_cache()
    return {"chroma_overhead_p50_ms": pct_ms(ids, 50), "chroma_overhead_with_metadata_p50_ms": pct_ms(meta, 50)}


def build_overhead(vectors: np.ndarray, batch_size: int) -> float:
    """Vectors/s of a build with a trivial HNSW graph: everything but the graph insertion."""
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        trivial = {**DEFAULT_HNSW, "ef_construction": 8, "max_neighbors": 4}
        _, seconds = build(Path(tmp) / "chroma", vectors, trivial, batch_size)
        SharedSystemClient.clear_system_cache()
    return round(len(vectors) / seconds, 1)


def run_size(vectors: np.ndarray, queries: np.ndarray, hnsw: dict, batch_size: int, sweep: list[int]) -> dict:
    n = len(vectors)
    out: dict = {"n": n, "load_before": load1()}
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        folder = Path(tmp) / "chroma"
        index, build_s = build(folder, vectors, hnsw, batch_size)
        out.update(build_s=round(build_s, 1), build_vectors_per_s=round(n / build_s, 1), load_after_build=load1())
        lat_meta, _ = timed_queries(index, queries, metadata=True)
        lat_ids, found = timed_queries(index, queries, metadata=False)
        t0 = time.perf_counter()
        batched = index.query(queries[WARMUP:], K, metadata=False)
        batched_ms = (time.perf_counter() - t0) * 1000 / len(batched)
        runs = [(hnsw["ef_search"], lat_ids, found)]
        for ef in sweep:
            # ef_search is persisted at once but used by clients opened afterwards: reopen
            index.collection("projections").modify(configuration={"hnsw": {"ef_search": ef}})
            SharedSystemClient.clear_system_cache()
            index = TrackIndex(folder, collection_prefix=PREFIX, hnsw={**hnsw, "ef_search": ef})
            lat, f = timed_queries(index, queries, metadata=False)
            runs.append((ef, lat, f))
        SharedSystemClient.clear_system_cache()

    exact_lat, exact = [], []
    for q in queries[WARMUP:]:
        t0 = time.perf_counter()
        sims = vectors @ q
        top = np.argpartition(-sims, K)[:K]
        top = top[np.argsort(-sims[top])]
        exact_lat.append(time.perf_counter() - t0)
        exact.append(set(top.tolist()))
    t0 = time.perf_counter()
    for s in range(0, len(queries) - WARMUP, 64):
        sims = queries[WARMUP + s : WARMUP + s + 64] @ vectors.T
        np.argpartition(-sims, K, axis=1)[:, :K]
    exact_batched = (time.perf_counter() - t0) * 1000 / (len(queries) - WARMUP)

    rec, rec_min = recall(exact, found)
    batched_rec, _ = recall(exact, [[h["track_id"] for h in hits] for hits in batched])
    out.update({
        "recall@10": rec,
        "recall@10_min": rec_min,
        "query_p50_ms": pct_ms(lat_meta, 50),
        "query_p95_ms": pct_ms(lat_meta, 95),
        "query_ids_p50_ms": pct_ms(lat_ids, 50),
        "query_ids_p95_ms": pct_ms(lat_ids, 95),
        "query_batched_ms_per_query": round(batched_ms, 3),
        "query_batched_recall@10": batched_rec,
        "exact_p50_ms": pct_ms(exact_lat, 50),
        "exact_p95_ms": pct_ms(exact_lat, 95),
        "exact_batched_ms_per_query": round(exact_batched, 3),
        "ef_search_sweep": [
            {"ef_search": ef, "recall@10": recall(exact, f)[0], "query_ids_p50_ms": pct_ms(lat, 50),
             "query_ids_p95_ms": pct_ms(lat, 95)}
            for ef, lat, f in runs[1:]
        ],
        "load_after": load1(),
    })
    return out


def estimate_1m(results: list[dict]) -> dict | None:
    """Power-law extrapolation of the build time (and query p50) to 1M from the two largest sizes."""
    if not results or results[-1]["n"] >= 1_000_000:
        return None
    target = 1_000_000
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        exp_b = math.log(b["build_s"] / a["build_s"]) / math.log(b["n"] / a["n"])
        exp_q = math.log(b["query_ids_p50_ms"] / a["query_ids_p50_ms"]) / math.log(b["n"] / a["n"])
    else:
        b, exp_b, exp_q = results[-1], 1.0, 0.0
    return {
        "ESTIMATE_NOT_MEASURED": True,
        "method": f"power law through n={[r['n'] for r in results[-2:]]}",
        "build_s": round(b["build_s"] * (target / b["n"]) ** exp_b),
        "build_exponent": round(exp_b, 3),
        "query_ids_p50_ms": round(b["query_ids_p50_ms"] * (target / b["n"]) ** exp_q, 2),
        "query_exponent": round(exp_q, 3),
        "recall_note": "not extrapolated: at fixed ef_search, recall@10 falls slowly as N grows",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--datasets", nargs="+", default=["structured", "random"], choices=sorted(DATASETS))
    ap.add_argument("--dim", type=int, default=None, help="default: the default config's projection_dim")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef-search", type=int, default=DEFAULT_HNSW["ef_search"])
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_HNSW["ef_construction"])
    ap.add_argument("--max-neighbors", type=int, default=DEFAULT_HNSW["max_neighbors"])
    ap.add_argument("--ef-search-sweep", type=int, nargs="*", default=[],
                    help="also measure these ef_search values on the same index")
    ap.add_argument("--batch-size", type=int, default=5000, help="vectors per upsert")
    ap.add_argument("--intrinsic-dim", type=int, default=32)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=1.0, help="within-cluster std / std of the cluster centres")
    ap.add_argument("--noise", type=float, default=0.1, help="share of the energy in isotropic ambient noise")
    ap.add_argument("--no-overhead", action="store_true", help="skip the trivial-graph build overhead run")
    ap.add_argument("--time-budget", type=float, default=900.0, help="skip sizes estimated to build longer (s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.dim is None:
        from spotifai.experiment import default_config

        args.dim = int(default_config("unused.db")["model"]["projection_dim"])
    hnsw = {**DEFAULT_HNSW, "ef_search": args.ef_search, "ef_construction": args.ef_construction,
            "max_neighbors": args.max_neighbors}
    sweep = [e for e in args.ef_search_sweep if e != args.ef_search]

    t_start = time.perf_counter()
    out: dict = {"bench": "index", "dim": args.dim, "k": K, "queries": args.queries, "hnsw": hnsw,
                 "upsert_batch_size": args.batch_size, "client": "chromadb.PersistentClient",
                 "cpu_count": os.cpu_count(), "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    probe = RandomVectors(args.dim, args.seed + 99).sample(args.queries + WARMUP)
    out.update(chroma_overhead(args.dim, probe))
    datasets = {}
    for name in args.datasets:
        if name == "structured":
            gen = StructuredVectors(args.dim, args.seed, args.intrinsic_dim, args.clusters, args.noise, args.spread)
            params = {"intrinsic_dim": args.intrinsic_dim, "clusters": args.clusters, "noise": args.noise,
                      "spread": gen.spread}
        else:
            gen, params = RandomVectors(args.dim, args.seed), {}
        queries = gen.sample(args.queries + WARMUP)
        sizes = sorted(args.sizes)
        pool = gen.sample(sizes[-1])  # smaller sizes are prefixes of the largest
        entry: dict = {"params": params, "results": [], "skipped": []}
        if not args.no_overhead:
            entry["build_overhead_vectors_per_s"] = build_overhead(pool[: min(sizes[-1], 20_000)], args.batch_size)
        rate = None
        for n in sizes:
            if rate is not None and n / rate > args.time_budget:
                entry["skipped"].append({"n": n, "estimated_build_s": round(n / rate)})
                continue
            r = run_size(pool[:n], queries, hnsw, args.batch_size, sweep)
            rate = r["build_vectors_per_s"]
            entry["results"].append(r)
        entry["estimate_1M"] = estimate_1m(entry["results"])
        datasets[name] = entry
    out["datasets"] = datasets
    out["targets_at_1M"] = {"recall@10": 0.95, "query_p50_ms": 5.0}
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["total_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
