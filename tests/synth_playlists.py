"""A tiny synthetic playlist corpus for the sampling and training tests (real WAV files + a music DB).

Each playlist has its own character (base pitch, tone colour, noise level, tremolo rate), so a model can learn
that tracks of one playlist belong together. Not a pytest module (no ``test_`` prefix): imported by the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from spotifai import database

SR = 16000


def _track(rng: np.random.Generator, playlist: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110.0 * 2 ** (playlist * 0.75) * rng.uniform(0.97, 1.03)
    n_harm = 1 + playlist % 4
    wave = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, n_harm + 1))
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * (1.0 + playlist) * t)
    noise = rng.standard_normal(t.size) * (0.02 + 0.05 * (playlist % 3))
    x = 0.3 * wave * tremolo / n_harm + noise
    return (x / np.abs(x).max() * 0.8).astype(np.float32)


def make_corpus(
    directory: str | Path,
    *,
    n_playlists: int = 6,
    tracks_per_playlist: int = 5,
    seconds: float = 3.0,
    seed: int = 0,
    corrupt: int = 0,
) -> Path:
    """Write ``n_playlists`` x ``tracks_per_playlist`` WAV tracks of ``seconds`` s under ``directory/audio``
    and register them in ``directory/music.db`` (returned). The first ``corrupt`` tracks of playlist 0 are
    files of garbage bytes that the DB still lists with a duration (as if they broke after ingestion)."""
    directory = Path(directory)
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    db = directory / "music.db"
    conn = database.connect(db)
    with conn:
        for p in range(n_playlists):
            ids = []
            for i in range(tracks_per_playlist):
                path = audio_dir / f"p{p:02d}_t{i:02d}.wav"
                if p == 0 and i < corrupt:
                    path.write_bytes(b"RIFF\x00\x00garbage" + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
                else:
                    sf.write(path, _track(rng, p, seconds), SR, subtype="PCM_16")
                ids.append(
                    database.upsert_track(
                        conn, uri=f"synth:{p}:{i}", title=f"Track {p}-{i}", artist=f"Artist {p}",
                        album=f"Album {p}", audio_path=str(path), duration=seconds, genre=f"genre{p % 3}",
                    )
                )
            database.upsert_playlist(conn, f"synth:{p}", f"Playlist {p}", ids)
    conn.close()
    return db
