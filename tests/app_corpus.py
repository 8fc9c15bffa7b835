"""A small music DB with real audio files for the web demo tests (not a test module itself).

Tracks: a few distinctive titles (for misspelled, multi-word searches), a hostile title
``<img src=x onerror=alert(1)>``, one file per supported container (wav, flac, ogg, mp3), a track
without audio, and enough "Filler Song NN" tracks by one artist to need several result pages.
Vectors: one cluster per album (a fixed direction plus a little noise), so neighbours are predictable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from spotifai import database

XSS_TITLE = "<img src=x onerror=alert(1)>"
N_FILLERS = 45
DIM = 16


@dataclass
class Corpus:
    db_path: Path
    ids: dict[str, int]  # title -> track id
    vectors: dict[int, np.ndarray] = field(default_factory=dict)  # track id -> unit vector (DIM,)
    album_of: dict[int, str] = field(default_factory=dict)
    audio_paths: dict[int, Path] = field(default_factory=dict)


def _write_audio(path: Path, freq: float, seconds: float = 1.5, sr: int = 16000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix]
    subtype = {".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}.get(path.suffix)
    sf.write(path, y, sr, format=fmt, subtype=subtype)


def build_corpus(root: Path, seed: int = 0) -> Corpus:
    """Write audio files under ``root/audio`` and the DB ``root/music.db``."""
    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    specs: list[tuple[str, str, str, str | None]] = [
        ("Midnight Harbor Lights", "The Velvet Compass", "Neon Tides", ".wav"),
        ("Harbor Morning", "Solar Drift", "Daybreak", ".flac"),
        ("Midnight Train", "Solar Drift", "Daybreak", ".ogg"),
        ("Velvet Underground Sky", "Paper Lanterns", "Neon Tides", ".mp3"),
        (XSS_TITLE, "Script & <Kiddie>", "Escapes \"quoted\"", ".wav"),
        ("Ghost Track Without Audio", "Nobody", "Silence", None),
    ]
    specs += [(f"Filler Song {i:02d}", "Test Ensemble", f"Volume {i % 3}", ".wav") for i in range(N_FILLERS)]
    albums = sorted({s[2] for s in specs})
    centres = {a: rng.normal(size=DIM) for a in albums}
    corpus = Corpus(db_path=root / "music.db", ids={})
    conn = database.connect(corpus.db_path)
    with conn:
        for i, (title, artist, album, ext) in enumerate(specs):
            audio_path = duration = None
            if ext is not None:
                path = audio_dir / f"track_{i:03d}{ext}"
                _write_audio(path, freq=220.0 + 10 * i)
                audio_path, duration = str(path), 1.5
            tid = database.upsert_track(
                conn, uri=f"test:{i}", title=title, artist=artist, album=album, audio_path=audio_path,
                duration=duration, popularity=float(len(specs) - i), genre=album,
            )
            corpus.ids[title] = tid
            corpus.album_of[tid] = album
            if audio_path is not None:
                corpus.audio_paths[tid] = Path(audio_path)
                v = centres[album] + 0.3 * rng.normal(size=DIM)
                corpus.vectors[tid] = (v / np.linalg.norm(v)).astype(np.float32)
    conn.close()
    return corpus


class BruteForceNeighbours:
    """Exact cosine neighbours over the corpus vectors (a stand-in for the ChromaDB index in API tests)."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self.ids = np.array(sorted(vectors), dtype=np.int64)
        self.matrix = np.stack([vectors[int(i)] for i in self.ids])

    def similar(self, track_id: int, k: int) -> list[tuple[int, float]]:
        where = np.flatnonzero(self.ids == track_id)
        if where.size == 0:
            raise KeyError(track_id)
        sims = self.matrix @ self.matrix[where[0]]
        order = [j for j in np.argsort(-sims, kind="stable") if self.ids[j] != track_id][:k]
        return [(int(self.ids[j]), float(sims[j])) for j in order]
