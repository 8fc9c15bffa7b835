"""Benchmark the web demo over loopback: p50/p95 latency of the search and recommend endpoints.

Generates (once, cached under --work) a music DB of made-up tracks (default 100,000; the generator of
``bench/search.py``) and a ChromaDB index of random unit vectors for every track (``--dim``, default 256, with
their metadata), both through the project's own modules. Then starts ``spotifai serve`` in a subprocess on a
free port, records how long it takes to answer (``startup_s``: process start to the first 200 of
``/api/health``; ``index_ready_s``: until the index is open), and times sequential requests from one
keep-alive httpx client: ``/api/search`` with titles, misspelled titles and multi-keyword queries, and
``/api/tracks/{id}/similar?k=10`` for random tracks (after a warm-up of each). Prints ONE JSON line.
Target: p95 <= 30 ms for both endpoints.

    .venv/bin/python bench/app.py [--tracks 100000] [--requests 500] [--dim 256] [--work DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from spotifai import database, index  # noqa: E402
from spotifai.app.screenshot import free_port, stop_process  # noqa: E402

TARGET_P95_MS = 30.0


def _search_bench_module():
    """bench/search.py's DB generator and typo maker (one generator for both benchmarks)."""
    spec = importlib.util.spec_from_file_location("spotifai_bench_search", ROOT / "bench" / "search.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def prepare(work: Path, n_tracks: int, dim: int, seed: int) -> tuple[Path, Path, dict]:
    """The DB and experiment (with its index) for ``n_tracks``; rebuilt only when missing or different."""
    gen = _search_bench_module()
    db_path = work / "music.db"
    experiment = work / "experiments" / "bench-app"
    timings: dict[str, float] = {}
    key = f"{n_tracks}:{seed}"
    fresh_db = True
    if db_path.exists():
        conn = database.connect(db_path)
        fresh_db = database.get_meta(conn, "bench_app") != key
        conn.close()
    if fresh_db:
        t0 = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        gen.build_db(db_path, n_tracks, seed)
        conn = database.connect(db_path)
        with conn:
            database.set_meta(conn, "bench_app", key)
        conn.close()
        timings["db_build_s"] = round(time.perf_counter() - t0, 1)

    experiment.mkdir(parents=True, exist_ok=True)
    ix = index.open_index(experiment)
    info = ix.info()["projections"]
    checkpoint = f"bench-random-{key}:{dim}"
    if fresh_db or not info.get("complete") or info.get("checkpoint_id") != checkpoint:
        t0 = time.perf_counter()
        conn = database.connect(db_path, readonly=True)
        rows = database.tracks(conn)
        conn.close()
        ids = np.array([r["id"] for r in rows], dtype=np.int64)
        rng = np.random.default_rng(seed)
        vectors = rng.normal(size=(len(ids), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = [index.track_metadata(r) for r in rows]
        ix.build_space("projections", ids, vectors, metas, checkpoint_id=checkpoint, progress=True)
        timings["index_build_s"] = round(time.perf_counter() - t0, 1)
    return db_path, experiment, timings


def _queries(db_path: Path, n: int, seed: int) -> list[str]:
    gen = _search_bench_module()
    conn = database.connect(db_path, readonly=True)
    rows = conn.execute(
        "SELECT t.title, ar.name FROM tracks t LEFT JOIN artists ar ON ar.id = t.artist_id ORDER BY t.id"
    ).fetchall()
    conn.close()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        title, artist = rng.choice(rows)
        if i % 3 == 0:
            out.append(title.lower())
        elif i % 3 == 1:
            out.append(gen._typo(rng, title))
        else:
            out.append(f"{rng.choice(title.split())} {rng.choice((artist or title).split())}".lower())
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/spotifai_bench_app"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    db_path, experiment, timings = prepare(args.work, args.tracks, args.dim, args.seed)
    queries = _queries(db_path, args.requests + args.warmup, args.seed + 1)
    conn = database.connect(db_path, readonly=True)
    all_ids = database.track_ids_with_audio(conn) or [r[0] for r in conn.execute("SELECT id FROM tracks")]
    conn.close()
    rng = random.Random(args.seed + 2)
    track_ids = [rng.choice(all_ids) for _ in range(args.requests + args.warmup)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = args.work / "server.log"
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spotifai.cli", "serve", "--database", str(db_path),
             "--experiment", str(experiment), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        try:
            startup_s = index_ready_s = None
            with httpx.Client(base_url=url, timeout=30) as client:
                while time.perf_counter() - t0 < 120:
                    if proc.poll() is not None:
                        raise SystemExit(f"server exited:\n{log_path.read_text()}")
                    try:
                        health = client.get("/api/health").json()
                    except httpx.TransportError:
                        time.sleep(0.02)
                        continue
                    startup_s = startup_s or time.perf_counter() - t0
                    if health["index"] != "loading":
                        index_ready_s = time.perf_counter() - t0
                        break
                    time.sleep(0.02)
                if index_ready_s is None or health["index"] != "ready":
                    raise SystemExit(f"index not ready: {health}\n{log_path.read_text()}")

                def timed(path: str, params: dict) -> float:
                    start = time.perf_counter()
                    res = client.get(path, params=params)
                    elapsed = (time.perf_counter() - start) * 1000
                    if res.status_code != 200:
                        raise SystemExit(f"{path} {params}: {res.status_code} {res.text}")
                    return elapsed

                first_search_ms = timed("/api/search", {"q": queries[0], "limit": 20})
                search_ms, recommend_ms = [], []
                empty = 0
                for i, (q, tid) in enumerate(zip(queries, track_ids, strict=True)):
                    s = timed("/api/search", {"q": q, "limit": 20})
                    r = timed(f"/api/tracks/{tid}/similar", {"k": 10})
                    if i >= args.warmup:
                        search_ms.append(s)
                        recommend_ms.append(r)
                n_similar = len(client.get(f"/api/tracks/{track_ids[0]}/similar", params={"k": 10}).json()["results"])
                empty = sum(1 for q in queries[:50] if not client.get("/api/search", params={"q": q}).json()["results"])
        finally:
            stop_process(proc)

    result = {
        "bench": "app",
        "tracks": len(all_ids),
        "dim": args.dim,
        "requests_per_endpoint": len(search_ms),
        "search_p50_ms": _pct(search_ms, 0.5),
        "search_p95_ms": _pct(search_ms, 0.95),
        "search_mean_ms": round(statistics.fmean(search_ms), 2),
        "recommend_p50_ms": _pct(recommend_ms, 0.5),
        "recommend_p95_ms": _pct(recommend_ms, 0.95),
        "recommend_mean_ms": round(statistics.fmean(recommend_ms), 2),
        "first_search_ms": round(first_search_ms, 1),
        "startup_s": round(startup_s, 2),
        "index_ready_s": round(index_ready_s, 2),
        "similar_results": n_similar,
        "empty_searches_of_50": empty,
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": _pct(search_ms, 0.95) <= TARGET_P95_MS and _pct(recommend_ms, 0.95) <= TARGET_P95_MS,
        **timings,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
