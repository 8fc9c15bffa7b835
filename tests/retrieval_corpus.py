"""A tiny corpus for the retrieval tests: a few seconds of audio per track, artists with their own sound,
playlists by genre, one corrupt file and one missing file; plus a tiny experiment folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from spotifai import database

SR = 16000
GENRES = ("drone", "pulse")
TINY_AUDIO = {"n_mels": 16, "patch_frames": 64, "max_time_padding": 0.25}
TINY_MODEL = {
    "n_mels": 16,
    "n_frames": 64,
    "model_dim": 32,
    "projection_dim": 24,
    "n_layers": 1,
    "n_heads": 2,
    "ff_dim": 64,
    "dropout": 0.0,
}


@dataclass
class Corpus:
    db: Path
    track_ids: list[int] = field(default_factory=list)  # readable tracks
    corrupt_id: int = -1
    missing_id: int = -1


def _tone(rng: np.random.Generator, base: float, pulse: bool, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6)) / h for h in (1, 2, 3))
    if pulse:
        x = x * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 4 * t)))
    return (0.3 * x / 3 + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def build_corpus(root: Path, n_tracks: int = 16, seed: int = 0) -> Corpus:
    """``n_tracks`` readable tracks (1.5 to 3.5 s) by 4 artists in 2 genres, 4 playlists, + 2 bad tracks."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(db=root / "music.db")
    conn = database.connect(corpus.db)
    with conn:
        for i in range(n_tracks):
            artist = i % 4
            genre = GENRES[artist % 2]
            seconds = float(rng.uniform(1.5, 3.5))
            path = audio / f"track{i:02d}.wav"
            sf.write(path, _tone(rng, 110.0 * (1 + artist), genre == "pulse", seconds), SR)
            tid = database.upsert_track(
                conn,
                uri=f"test:{i}",
                title=f"Song {i:02d}",
                artist=f"Artist {artist}",
                album=f"Album {artist}",
                audio_path=str(path),
                duration=seconds,
                genre=genre,
            )
            corpus.track_ids.append(tid)
        bad = audio / "corrupt.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
        corpus.corrupt_id = database.upsert_track(
            conn, uri="test:corrupt", title="Corrupt", artist="Artist 0", audio_path=str(bad), duration=2.0
        )
        corpus.missing_id = database.upsert_track(
            conn, uri="test:missing", title="Missing", audio_path=str(audio / "gone.wav"), duration=2.0
        )
        ids = corpus.track_ids
        for p in range(4):  # playlists: by genre, and two mixed ones
            members = [t for j, t in enumerate(ids) if (j % 4) % 2 == p % 2][p // 2 :: 2] + [ids[p]]
            database.upsert_playlist(conn, f"test:pl{p}", f"Playlist {p}", members)
    conn.close()
    return corpus


def tiny_config(db: Path, steps: int = 2) -> dict:
    """An experiment config (the training stage's own :func:`spotifai.experiments.default_config`) with the tiny
    model and audio settings."""
    from spotifai.experiment import default_config

    model = {k: v for k, v in TINY_MODEL.items() if k not in ("n_mels", "n_frames")}
    return default_config(
        db,
        n_mels=TINY_AUDIO["n_mels"],
        patch_frames=TINY_AUDIO["patch_frames"],
        model=model,
        optimizer={"warmup_steps": 1},
        training={"steps": steps, "patches_per_playlist": 4, "playlists_per_step": 4, "precision": "fp32"},
        data={"seed": 0, "validation_fraction": 0.0, "heldout_track_fraction": 0.25, "patch_cache": False,
              "num_workers": 0},
        progress={"val_period": 0, "val_batches": 0, "save_period": 1, "checkpoint_period": 100, "loss_window": 1},
    )


def train_tiny_experiment(experiment: Path, db: Path, *, steps: int = 1) -> Path:
    """Train (or extend to ``steps``) the tiny model with the real training loop; returns the folder.
    Each call with more steps writes a new checkpoint (a new checkpoint id)."""
    from spotifai.train import train_model

    train_model(experiment, device="cpu", mixed_precision=False, multi_processing=False,
                config=tiny_config(db, steps=steps))
    return experiment
