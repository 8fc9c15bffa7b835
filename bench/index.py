"""Benchmark the ChromaDB track index: build time, query latency p50/p95 and recall@10 against exact search.

For each size in ``--sizes`` (default 100000 and 1000000): N random unit vectors of ``--dim`` dimensions
(default: the default config's projection_dim), indexed with :class:`spotifai.index.TrackIndex` (embedded
PersistentClient in a temp folder, the project's HNSW settings unless overridden), then ``--queries`` fresh
random unit vectors are searched one at a time (k = 10, metadata included, as the web demo does) after a
warm-up. Exact search = one matrix product over all N vectors + top-k (numpy, float32), timed per query in
the same run; recall@10 = |HNSW top-10 ∩ exact top-10| / 10, averaged.

Random high-dimensional vectors have no cluster structure: the hardest case for HNSW, so recall here is a
lower bound for real embeddings. Timings on a shared CPU are noisy (``load_avg`` is reported). Prints ONE JSON
line with one entry per size.

    .venv/bin/python bench/index.py [--sizes 100000 1000000] [--dim 512] [--queries 200]
        [--ef-search 200] [--ef-construction 200] [--max-neighbors 32] [--time-budget 900]
        [--ef-search-sweep 400 800]

After the build, the queries are repeated for each ``--ef-search-sweep`` value (ef_search is a search-time
setting chromadb lets one change on an existing collection; it applies to clients opened afterwards,
so the bench reopens the index): recall vs latency on the same index.

``--time-budget`` (seconds) skips a size whose estimated build time (from the previous size's rate) would
exceed it; the skipped sizes are listed in the output.
"""

from __future__ import annotations

import argparse
import json
import logging
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


def unit_vectors(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 3)


def run_size(n: int, dim: int, n_queries: int, hnsw: dict, seed: int, batch_size: int,
             ef_searches: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    vectors = unit_vectors(rng, n, dim)
    queries = unit_vectors(rng, n_queries + 10, dim)
    ids = np.arange(n, dtype=np.int64)
    metas = [{"track_id": int(i)} for i in ids]
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        index = TrackIndex(Path(tmp) / "chroma", collection_prefix="spotifai-bench", hnsw=hnsw)
        t0 = time.perf_counter()
        index.build_space("projections", ids, vectors, metas, checkpoint_id="bench", batch_size=batch_size,
                          progress=False)
        build_s = time.perf_counter() - t0

        col = index.collection("projections")
        sweeps = []
        for ef in ef_searches:
            if ef != hnsw["ef_search"]:
                # persisted at once, used by clients opened afterwards: reopen (drop chromadb's client cache)
                col.modify(configuration={"hnsw": {"ef_search": ef}})
                SharedSystemClient.clear_system_cache()
                index = TrackIndex(Path(tmp) / "chroma", collection_prefix="spotifai-bench", hnsw={**hnsw, "ef_search": ef})
                col = index.collection("projections")
            for q in queries[:10]:  # warm-up: load the index, caches
                index.query(q[None], 10)
            lat, found = [], []
            for q in queries[10:]:
                t0 = time.perf_counter()
                hits = index.query(q[None], 10)[0]
                lat.append(time.perf_counter() - t0)
                found.append([h["track_id"] for h in hits])
            sweeps.append((ef, lat, found))

    exact_lat, exact_top = [], []
    for q in queries[10:]:
        t0 = time.perf_counter()
        sims = vectors @ q
        top = np.argpartition(-sims, 10)[:10]
        top = top[np.argsort(-sims[top])]
        exact_lat.append(time.perf_counter() - t0)
        exact_top.append(set(top.tolist()))
    per_ef = []
    for ef, lat, found in sweeps:
        recalls = [len(e & set(g)) / 10 for e, g in zip(exact_top, found, strict=True)]
        per_ef.append({
            "ef_search": ef,
            "query_p50_ms": percentile_ms(lat, 50),
            "query_p95_ms": percentile_ms(lat, 95),
            "recall@10": round(float(np.mean(recalls)), 4),
            "recall@10_min": round(float(np.min(recalls)), 2),
        })
    main_ef = per_ef[0]
    return {
        "n": n,
        "build_s": round(build_s, 1),
        "build_vectors_per_s": round(n / build_s, 1),
        **{k: v for k, v in main_ef.items() if k != "ef_search"},
        "ef_search_sweep": per_ef[1:],
        "exact_p50_ms": percentile_ms(exact_lat, 50),
        "exact_p95_ms": percentile_ms(exact_lat, 95),
    }


def main() -> None:
    from spotifai.train import default_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=int(default_config("unused.db")["model"]["projection_dim"]))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef-search", type=int, default=DEFAULT_HNSW["ef_search"])
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_HNSW["ef_construction"])
    ap.add_argument("--max-neighbors", type=int, default=DEFAULT_HNSW["max_neighbors"])
    ap.add_argument("--ef-search-sweep", type=int, nargs="*", default=[400, 800],
                    help="also measure these ef_search values on the same index (changed in place)")
    ap.add_argument("--batch-size", type=int, default=5000, help="vectors per upsert")
    ap.add_argument("--time-budget", type=float, default=900.0, help="skip sizes estimated to build longer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hnsw = {"space": "cosine", "ef_search": args.ef_search, "ef_construction": args.ef_construction,
            "max_neighbors": args.max_neighbors}

    results, skipped = [], []
    rate = None
    for n in sorted(args.sizes):
        if rate is not None and n / rate > args.time_budget:
            skipped.append({"n": n, "estimated_build_s": round(n / rate)})
            continue
        sweep = [args.ef_search] + [e for e in args.ef_search_sweep if e != args.ef_search]
        r = run_size(n, args.dim, args.queries, hnsw, args.seed, args.batch_size, sweep)
        rate = r["build_vectors_per_s"]
        results.append(r)
    print(
        json.dumps(
            {
                "bench": "index",
                "dim": args.dim,
                "queries": args.queries,
                "hnsw": hnsw,
                "client": "chromadb.PersistentClient",
                "results": results,
                "skipped": skipped,
                "targets_at_1M": {"recall@10": 0.95, "query_p50_ms": 5.0},
                "load_avg": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
