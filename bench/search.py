"""Benchmark spotifai.search on generated tracks: latency of 1,000 queries and typo recall@5.

Generates (once, cached at --db) a music DB of made-up tracks (default 500,000): pseudo-words built from
syllables, Zipf-distributed, for titles (1-4 words), artists (1-3 words, ~40,000 artists) and albums. Then runs
1,000 seeded queries: a third exact titles, a third titles with one typo (substitution, deletion, insertion or
swap of two neighbouring letters in one word; targets are tracks whose title is unique, so "the intended track"
is well defined), a third multi-keyword (a title word plus an artist word, sometimes an album word, shuffled).
Latency (wall clock, and CPU time of this process, the fairer number when other jobs share the cores: see
load_average_1min) is measured after one warm-up query (which loads the vocabulary cache; its time is reported as
``cold_first_query_ms``). Prints ONE JSON line. Targets: p95 <= 20 ms, typo recall@5 >= 0.95.

    .venv/bin/python bench/search.py [--tracks 500000] [--queries 1000] [--db PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotifai import database  # noqa: E402
from spotifai.search import search  # noqa: E402

ONSETS = "b br c ch d dr f fl g gr h j k l m n p pl r s sh st t tr v w z qu sk sl".split()
VOWELS = "a e i o u ai ea ou y ee oo".split()
CODAS = ["", "", "n", "r", "s", "l", "th", "ng", "ck", "x", "m", "t"]


def _pseudo_words(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((1, 2, 2, 3))))
        if len(word) >= 3:
            out.add(word)
    return sorted(out)


def _zipf_cum_weights(n: int, s: float = 0.9) -> list[float]:
    return list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))


def build_db(path: Path, n_tracks: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    title_pool = _pseudo_words(rng, 30000)
    name_pool = _pseudo_words(rng, 9000)
    rng.shuffle(title_pool)
    rng.shuffle(name_pool)
    tw = _zipf_cum_weights(len(title_pool), 0.8)
    nw = _zipf_cum_weights(len(name_pool), 0.6)

    def phrase(pool, weights, k):
        return " ".join(w.capitalize() for w in rng.choices(pool, cum_weights=weights, k=k))

    n_artists = max(10, n_tracks // 12)
    artists = list(dict.fromkeys(phrase(name_pool, nw, rng.choice((1, 2, 2, 3))) for _ in range(n_artists)))
    if path.exists():
        path.unlink()
    conn = database.connect(path)
    with conn:
        conn.executemany("INSERT INTO artists(id, name) VALUES (?, ?)", enumerate(artists, 1))
        albums = []
        for aid in range(1, len(artists) + 1):
            for title in {phrase(title_pool, tw, rng.choice((1, 2, 3))) for _ in range(rng.choice((1, 2, 3, 4)))}:
                albums.append((len(albums) + 1, title, aid))
        conn.executemany("INSERT INTO albums(id, title, artist_id) VALUES (?, ?, ?)", albums)
        picks = rng.choices(albums, cum_weights=_zipf_cum_weights(len(albums), 0.5), k=n_tracks)
        rows = []
        for tid, (al_id, _, ar_id) in enumerate(picks, 1):
            title = phrase(title_pool, tw, rng.choice((1, 2, 2, 3, 3, 4)))
            rows.append((tid, f"bench:{tid}", title, ar_id, al_id, rng.uniform(60, 400), round(rng.lognormvariate(0, 2), 3)))
        conn.executemany(
            "INSERT INTO tracks(id, uri, title, artist_id, album_id, duration, popularity) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        database.set_meta(conn, "bench_search_tracks", str(n_tracks))
    conn.close()


def _typo(rng: random.Random, text: str) -> str:
    words = text.split()
    idx = [i for i, w in enumerate(words) if len(w) >= 3]
    i = rng.choice(idx)
    w = words[i].lower()
    p = rng.randrange(len(w))
    kind = rng.choice(("sub", "del", "ins", "swap"))
    letters = "abcdefghijklmnopqrstuvwxyz"
    if kind == "sub":
        w = w[:p] + rng.choice(letters.replace(w[p], "")) + w[p + 1 :]
    elif kind == "del":
        w = w[:p] + w[p + 1 :]
    elif kind == "ins":
        w = w[:p] + rng.choice(letters) + w[p:]
    else:
        p = min(p, len(w) - 2)
        w = w[:p] + w[p + 1] + w[p] + w[p + 2 :] if w[p] != w[p + 1] else w[:p] + "q" + w[p + 1 :]
    words[i] = w
    return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/spotifai_bench_search.db"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    build_s = 0.0
    ok = False
    if args.db.exists():
        conn = database.connect(args.db)
        ok = database.get_meta(conn, "bench_search_tracks") == str(args.tracks)
        conn.close()
    if not ok:
        t0 = time.perf_counter()
        build_db(args.db, args.tracks, args.seed)
        build_s = time.perf_counter() - t0

    conn = database.connect(args.db, readonly=True)
    rows = conn.execute(
        "SELECT t.id, t.title, ar.name, al.title FROM tracks t JOIN artists ar ON ar.id = t.artist_id"
        " JOIN albums al ON al.id = t.album_id"
    ).fetchall()
    title_count = Counter(r[1].lower() for r in rows)
    unique = [r for r in rows if title_count[r[1].lower()] == 1]
    rng = random.Random(args.seed + 1)
    queries: list[tuple[str, str, int]] = []
    n3 = args.queries // 3
    for _ in range(n3):
        r = rng.choice(rows)
        queries.append(("exact", r[1], r[0]))
    for _ in range(n3):
        r = rng.choice(unique)
        queries.append(("typo", _typo(rng, r[1]), r[0]))
    for _ in range(args.queries - 2 * n3):
        r = rng.choice(rows)
        parts = [rng.choice(r[1].split()), rng.choice(r[2].split())]
        if rng.random() < 0.3:
            parts.append(rng.choice(r[3].split()))
        rng.shuffle(parts)
        queries.append(("multi", " ".join(p.lower() for p in parts), r[0]))

    t0 = time.perf_counter()
    search(conn, "warm up")
    cold_ms = (time.perf_counter() - t0) * 1000
    times: dict[str, list[float]] = {"exact": [], "typo": [], "multi": []}
    hits = Counter()
    cpu: list[float] = []
    for kind, q, target in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        res = search(conn, q, limit=20)
        times[kind].append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        ids = [r["id"] for r in res[:5]]
        if target in ids:
            hits[kind] += 1
    all_t = sorted(t for ts in times.values() for t in ts)

    def pct(ts, p):
        ts = sorted(ts)
        return round(ts[min(len(ts) - 1, int(p * len(ts)))], 2)

    vocab = conn.execute("SELECT count(*) FROM track_search_vocab").fetchone()[0]
    print(
        json.dumps(
            {
                "bench": "search",
                "tracks": len(rows),
                "vocabulary_words": vocab,
                "queries": len(queries),
                "p50_ms": pct(all_t, 0.5),
                "p95_ms": pct(all_t, 0.95),
                "mean_ms": round(statistics.fmean(all_t), 2),
                "cpu_p50_ms": pct(cpu, 0.5),
                "cpu_p95_ms": pct(cpu, 0.95),
                "load_average_1min": round(os.getloadavg()[0], 1),
                "p95_ms_by_kind": {k: pct(v, 0.95) for k, v in times.items()},
                "typo_recall_at_5": round(hits["typo"] / max(1, len(times["typo"])), 4),
                "exact_recall_at_5": round(hits["exact"] / max(1, len(times["exact"])), 4),
                "cold_first_query_ms": round(cold_ms, 1),
                "db_build_s": round(build_s, 1),
                "targets": {"p95_ms": 20, "typo_recall_at_5": 0.95},
            }
        )
    )


if __name__ == "__main__":
    main()
