"""Building the demo corpus: render the tracks (in worker processes), write the DB and the curated list, then
rename the finished folder into place."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from spotifai import database
from spotifai.demo_corpus.catalogue import curate, make_playlists, plan, safe_name
from spotifai.demo_corpus.synthesis import render_track

log = logging.getLogger(__name__)

VERSION = "1"
DEFAULT_TRACKS = 320

def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _is_complete(directory: Path, seed: int, n_tracks: int) -> dict | None:
    marker = directory / "corpus.json"
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != VERSION or meta.get("seed") != seed or meta.get("n_tracks") != n_tracks:
        return None
    if not (directory / "music.db").is_file() or not (directory / "curated.json").is_file():
        return None
    return meta.get("summary")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def build_demo_corpus(directory: str | Path, seed: int = 0, n_tracks: int | None = None, force: bool = False,
                      *, workers: int | None = None) -> dict:
    """Synthesize the demo corpus into ``directory`` (audio files, ``music.db``, ``curated.json``).

    ``n_tracks`` defaults to 320 (8 genres x 4 artists x 2 albums); small values (>= 16) give a small but
    valid corpus (8 genres, 2 artists each) for tests. A complete corpus with the same ``seed`` and size is
    left as it is (the stored summary is returned with ``skipped: True``) unless ``force``. ``workers``
    processes render in parallel (default: up to 2, serial for small corpora).

    Returns the summary: tracks, playlists, memberships, genres, artists, albums, formats, sample_rates,
    seconds (build time), megabytes (on disk), directory, database, curated.
    """
    n_tracks = DEFAULT_TRACKS if n_tracks is None else int(n_tracks)
    if n_tracks < 16:
        raise ValueError(f"n_tracks must be at least 16 (got {n_tracks})")
    directory = Path(directory).expanduser().resolve()
    if not force:
        done = _is_complete(directory, seed, n_tracks)
        if done is not None:
            log.info("%s: complete demo corpus (seed %d, %d tracks) already there; skipping", directory, seed, n_tracks)
            return {**done, "skipped": True}
    if directory.exists() and any(directory.iterdir()):
        ours = {"audio", "music.db", "music.db-wal", "music.db-shm", "curated.json", "corpus.json"}
        foreign = [p.name for p in directory.iterdir() if p.name not in ours]
        if foreign:
            raise FileExistsError(f"{directory}: not empty and not a demo corpus (found {foreign[:3]}); "
                                  "choose another directory")
    t0 = time.perf_counter()
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.building-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = directory.parent / f".{directory.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        summary = _build(tmp, directory, seed, n_tracks, workers)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        summary["megabytes"] = round(_dir_size(tmp) / 1e6, 1)
        marker = dict(version=VERSION, seed=seed, n_tracks=n_tracks, summary=summary)
        (tmp / "corpus.json").write_text(json.dumps(marker, indent=2))
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("demo corpus: %s", summary)
    return {**summary, "skipped": False}


def _build(tmp: Path, final: Path, seed: int, n_tracks: int, workers: int | None) -> dict:
    artists, tracks = plan(seed, n_tracks)
    jobs = []
    for t in tracks:
        art = artists[t["artist"]]
        rel = Path("audio", safe_name(t["genre"]), safe_name(art["name"]), safe_name(t["album"]),
                  f"{t['number']:02d} {safe_name(t['title'])}.{t['ext']}")
        t["rel"] = rel
        jobs.append(dict(index=t["index"], seed=seed, artist=art["traits"], seconds=t["seconds"], sr=t["sr"],
                         channels=t["channels"], ext=t["ext"], write_path=str(tmp / rel)))
    # biggest jobs first so two workers finish together
    jobs.sort(key=lambda j: -(j["sr"] * j["channels"] * (3 if j["ext"] == "mp3" else 1)))
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n_tracks > 64 else 1
    results: dict[int, dict] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="demo corpus", unit="track", disable=None)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for res in pool.imap_unordered(render_track, jobs):
                results[res["index"]] = res
                bar.update()
    else:
        for job in jobs:
            res = render_track(job)
            results[res["index"]] = res
            bar.update()
    bar.close()
    playlists = make_playlists(seed, artists, tracks)
    curated = curate(artists, tracks)
    conn = database.connect(tmp / "music.db")
    ids: dict[int, int] = {}
    try:
        with conn:
            for t in tracks:
                art = artists[t["artist"]]
                ids[t["index"]] = database.upsert_track(
                    conn, uri=f"demo:{t['index']}", title=t["title"], artist=art["name"], album=t["album"],
                    audio_path=str(final / t["rel"]), duration=round(results[t["index"]]["duration"], 3),
                    popularity=t["popularity"], genre=t["genre"])
            for p, (name, members) in enumerate(playlists):
                database.upsert_playlist(conn, f"demo:{p}", name, [ids[i] for i in members])
            database.set_meta(conn, "demo_corpus", json.dumps(dict(version=VERSION, seed=seed, n_tracks=n_tracks)))
        counts = database.counts(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    cur = [dict(symbol=s, track_id=ids[i], title=tracks[i]["title"], artist=artists[tracks[i]["artist"]]["name"],
                album=tracks[i]["album"], genre=tracks[i]["genre"]) for s, i in curated]
    (tmp / "curated.json").write_text(json.dumps(cur, indent=2))
    fmt_counts: dict[str, int] = {}
    sr_counts: dict[str, int] = {}
    for t in tracks:
        fmt_counts[t["ext"]] = fmt_counts.get(t["ext"], 0) + 1
        sr_counts[str(t["sr"])] = sr_counts.get(str(t["sr"]), 0) + 1
    return dict(
        directory=str(final), database=str(final / "music.db"), tracks=counts["tracks"],
        playlists=counts["playlists"], memberships=counts["memberships"], genres=len({t["genre"] for t in tracks}),
        artists=counts["artists"], albums=counts["albums"], formats=fmt_counts, sample_rates=sr_counts,
        curated=len(cur),
    )


def load_curated(directory: str | Path) -> list[dict]:
    """The curated tracks of a built corpus: [{symbol, track_id, title, artist, album, genre}]."""
    path = Path(directory) / "curated.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: no curated list (build the corpus with `spotifai demo-corpus`)") from exc
