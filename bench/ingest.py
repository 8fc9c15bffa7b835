"""Benchmark MPD ingestion: generate Million-Playlist-Dataset-format slices locally and ingest them.

Slices have the MPD schema (``{"info", "playlists": [{"pid", "name", "num_tracks", ..., "tracks": [{"pos",
"artist_name", "track_uri", "artist_uri", "track_name", "album_uri", "duration_ms", "album_name"}]}]}``), 1,000
playlists each, 5-127 tracks per playlist (about 66 on average, as in the MPD), made-up names, tracks drawn from a
Zipf-distributed pool (4 tracks per playlist). Each slice is written to a temp folder, ingested (one transaction)
and deleted; only ingestion is timed (JSON parsing included, generation excluded), plus the final popularity
update. Prints ONE JSON line: playlists/s, memberships/s (wall clock; also per CPU second of this process, which
is the fairer number when other jobs share the cores: see load_average_1min), DB size. Target: >= 200,000
memberships/s.

    .venv/bin/python bench/ingest.py [--playlists 100000] [--keep PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotifai import database  # noqa: E402
from spotifai.ingest import Ingester  # noqa: E402

ONSETS = "b br c ch d dr f fl g gr h j k l m n p pl r s sh st t tr v w z".split()
VOWELS = "a e i o u ai ea ou y".split()
CODAS = ["", "", "n", "r", "s", "l", "th", "ng", "ck", "x"]
SLICE = 1000


def _words(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((1, 2, 3)))))
    return sorted(out)


def _track_pool(rng: random.Random, n_tracks: int) -> list[str]:
    """JSON fragments (without "pos") of ``n_tracks`` made-up tracks."""
    words = _words(rng, 20000)

    def name(k):
        return " ".join(w.capitalize() for w in rng.choices(words, k=k))

    artists = [(name(rng.choice((1, 2))), f"spotify:artist:{i:022d}") for i in range(max(1, n_tracks // 10))]
    albums = [(name(rng.choice((1, 2, 3))), f"spotify:album:{i:022d}", rng.choice(artists)) for i in range(max(1, n_tracks // 4))]
    pool = []
    for i in range(n_tracks):
        album, album_uri, (artist, artist_uri) = rng.choice(albums)
        pool.append(
            json.dumps(
                {
                    "artist_name": artist, "track_uri": f"spotify:track:{i:022d}", "artist_uri": artist_uri,
                    "track_name": name(rng.choice((1, 2, 3, 4))), "album_uri": album_uri,
                    "duration_ms": rng.randint(90_000, 400_000), "album_name": album,
                }
            )[1:-1]
        )
    return pool


def _write_slice(path: Path, rng: random.Random, first_pid: int, pool: list[str], cum: list[float]) -> int:
    parts = []
    n_members = 0
    for pid in range(first_pid, first_pid + SLICE):
        n = rng.randint(5, 127)
        n_members += n
        tracks = ",".join(f'{{"pos":{pos},{frag}}}' for pos, frag in enumerate(rng.choices(pool, cum_weights=cum, k=n)))
        parts.append(
            f'{{"name":"Playlist {pid}","collaborative":"false","pid":{pid},"modified_at":1500000000,'
            f'"num_tracks":{n},"num_albums":{n},"num_followers":1,"num_edits":1,"duration_ms":{n * 200000},'
            f'"num_artists":{n},"tracks":[{tracks}]}}'
        )
    info = f'"info":{{"generated_on":"bench","slice":"{first_pid}-{first_pid + SLICE - 1}","version":"v1"}}'
    path.write_text(f'{{{info},"playlists":[{",".join(parts)}]}}')
    return n_members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--playlists", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the DB at this path (default: deleted)")
    parser.add_argument("--no-bulk", dest="bulk", action="store_false",
                        help="ingest file by file without Ingester.bulk_load() (secondary indexes kept up to date)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="spotifai_bench_ingest_"))
    db_path = args.keep or work / "mpd.db"
    if db_path.exists():
        db_path.unlink()
    try:
        pool = _track_pool(rng, max(1000, args.playlists * 4))
        cum = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(pool))))
        conn = database.connect(db_path)
        ing = Ingester(conn)
        seconds = cpu = 0.0
        generated = 0
        n_slices = -(-args.playlists // SLICE)
        # As Ingester.mpd_files() does for a big batch (about 290 bytes per entry here, so the file-size estimate
        # would pick it too): bulk_load() around the files. Entering it (dropping indexes) and leaving it
        # (re-creating them, popularity) are timed.
        bulk = ing.bulk_load() if args.bulk else contextlib.nullcontext()
        t0, c0 = time.perf_counter(), time.process_time()
        with bulk:
            for k in range(n_slices):
                path = work / f"mpd.slice.{k * SLICE}-{k * SLICE + SLICE - 1}.json"
                seconds += time.perf_counter() - t0  # slice generation is not timed
                cpu += time.process_time() - c0
                generated += _write_slice(path, rng, k * SLICE, pool, cum)
                t0, c0 = time.perf_counter(), time.process_time()
                ing.mpd_file(path)
                path.unlink()
        summary = ing.finish()
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = database.counts(conn)
        conn.close()
        size = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))
        assert summary.sources_failed == 0 and counts["memberships"] == generated, (summary.to_text(), counts)
        print(
            json.dumps(
                {
                    "bench": "ingest_mpd",
                    "playlists": counts["playlists"],
                    "memberships": counts["memberships"],
                    "tracks": counts["tracks"],
                    "seconds": round(seconds, 2),
                    "playlists_per_s": round(counts["playlists"] / seconds),
                    "memberships_per_s": round(counts["memberships"] / seconds),
                    "cpu_seconds": round(cpu, 2),
                    "memberships_per_cpu_s": round(counts["memberships"] / cpu),
                    "load_average_1min": round(os.getloadavg()[0], 1),
                    "db_bytes": size,
                    "db_mb": round(size / 2**20, 1),
                    "bulk_load": args.bulk,
                    "target_memberships_per_s": 200_000,
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
