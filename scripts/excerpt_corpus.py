"""A compact copy of a music DB for training on a remote GPU machine: the same tracks, ids and playlists, with
each track's audio replaced by a few short excerpts re-encoded as 16 kHz mono Opus.

Why: a lent GPU machine receives at most a few tens of MiB with the repository, while the real-music corpus is
about 750 MB of audio. Because the DB is copied (track and playlist ids unchanged), the project's split (a hash
of the seed and the track id) gives the same train / validation / held-out tracks on the copy, so a model trained
on the copy never saw the held-out tracks of the original and can be embedded and evaluated on the full-length
originals afterwards.

Usage::

    python scripts/excerpt_corpus.py build data/real/music.db data/real-excerpts [--segments 3] [--seconds 16]
    python scripts/excerpt_corpus.py relocate data/real-excerpts   # after moving the folder (absolute paths)

A track of at most ``segments * seconds`` seconds is kept whole; a longer one contributes ``segments`` windows of
``seconds`` seconds centred at evenly spaced fractions of its length (1/6, 1/2, 5/6 for three), concatenated.
"""

from __future__ import annotations

import argparse
import csv
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from spotifai import atomic, audio, database

BITRATE = "32k"  # libopus at 16 kHz mono: wideband, transparent enough for 64-80 mel bands up to 8 kHz


def excerpt_windows(duration: float, segments: int, seconds: float) -> list[tuple[float, float]]:
    """[(offset, length)] in seconds: the whole track when short, else ``segments`` evenly spaced windows."""
    if duration <= segments * seconds:
        return [(0.0, duration)]
    centres = [(2 * i + 1) / (2 * segments) * duration for i in range(segments)]
    return [(min(max(c - seconds / 2, 0.0), duration - seconds), seconds) for c in centres]


def encode_opus(samples: np.ndarray, out: Path) -> None:
    """Write (n,) float32 16 kHz mono samples to ``out`` as Ogg Opus through ffmpeg (atomically)."""
    tmp = out.with_name(out.name + atomic.TMP_SUFFIX)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(audio.SAMPLE_RATE), "-ac", "1", "-i", "-",
           "-c:a", "libopus", "-b:a", BITRATE, "-f", "ogg", str(tmp)]
    subprocess.run(cmd, input=samples.astype(np.float32).tobytes(), check=True)
    tmp.replace(out)


def relocate(out_dir: Path) -> int:
    """Point every track of ``out_dir/music.db`` at ``out_dir/audio/<id>.opus`` (absolute); returns the count."""
    out_dir = out_dir.resolve()
    conn = sqlite3.connect(out_dir / "music.db")
    with conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM tracks WHERE audio_path IS NOT NULL")]
        conn.executemany("UPDATE tracks SET audio_path = ? WHERE id = ?",
                         [(str(out_dir / "audio" / f"{i}.opus"), i) for i in ids])
        conn.execute("DELETE FROM library_roots")
        conn.execute("INSERT INTO library_roots(path) VALUES (?)", (str(out_dir / "audio"),))
    conn.close()
    labels = out_dir / "labels.csv"
    if labels.exists():
        with labels.open(newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
        for r in table:
            r["path"] = str(out_dir / "audio" / Path(r["path"]).name)
        _write_csv(labels, table)
    return len(ids)


def _write_csv(path: Path, table: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic.write_bytes(path, buf.getvalue().encode("utf-8"))


def build(source_db: Path, out_dir: Path, segments: int, seconds: float) -> dict:
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    src = database.connect(source_db, create=False, readonly=True)
    rows = database.tracks(src, with_audio=True)
    kept_seconds = 0.0
    durations: dict[int, float] = {}
    for row in tqdm(rows, desc="excerpts", unit="track"):
        out = out_dir / "audio" / f"{row['id']}.opus"
        windows = excerpt_windows(audio.audio_duration(row["audio_path"]), segments, seconds)
        if not out.exists():
            parts = [audio.load_audio(row["audio_path"], offset, length).numpy() for offset, length in windows]
            encode_opus(np.concatenate(parts), out)
        durations[int(row["id"])] = sum(length for _, length in windows)
        kept_seconds += durations[int(row["id"])]
    dst_path = out_dir / "music.db"
    tmp = dst_path.with_name(dst_path.name + atomic.TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    dst = sqlite3.connect(tmp)
    src.backup(dst)
    with dst:
        dst.executemany("UPDATE tracks SET duration = ? WHERE id = ?", [(d, i) for i, d in durations.items()])
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.close()
    src.close()
    tmp.replace(dst_path)
    labels = source_db.parent / "labels.csv"
    if labels.exists():  # same tracks, paths pointing at the excerpt files (made absolute by relocate)
        by_path = {str(Path(r["audio_path"]).resolve()): int(r["id"]) for r in rows}
        with labels.open(newline="", encoding="utf-8") as fh:
            table = [r for r in csv.DictReader(fh) if str(Path(r["path"]).resolve()) in by_path]
        for r in table:
            r["path"] = f"{by_path[str(Path(r['path']).resolve())]}.opus"
        _write_csv(out_dir / "labels.csv", table)
    n = relocate(out_dir)
    return {"tracks": n, "hours": round(kept_seconds / 3600, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("source_db", type=Path)
    b.add_argument("out_dir", type=Path)
    b.add_argument("--segments", type=int, default=3)
    b.add_argument("--seconds", type=float, default=16.0)
    r = sub.add_parser("relocate")
    r.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.source_db, args.out_dir, args.segments, args.seconds))
    else:
        print({"tracks": relocate(args.out_dir)})


if __name__ == "__main__":
    sys.exit(main())
