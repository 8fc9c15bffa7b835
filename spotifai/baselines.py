"""Baseline track vectors for :mod:`spotifai.evaluate`, computed by the same code as the trained ones.

- :func:`random_encoder`: the experiment's architecture with random weights (fixed seed, no training); its
  vectors come from :func:`spotifai.embed.embed_tracks` like a trained encoder's.
- :func:`logmel_stats_vectors`: per-track mean and standard deviation of each log-mel band over the whole
  song, float32 (N, 2 * n_mels), read through the same decoding (or patch cache) as embedding.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spotifai import database
from spotifai.embed import TrackDataset, audio_items, whole_track_mel, worker_init

log = logging.getLogger(__name__)


def random_encoder(model_config: dict, seed: int = 0) -> torch.nn.Module:
    """The baseline encoder: the experiment's architecture with random weights (``seed``), eval mode."""
    from spotifai.model import AudioEncoder, EncoderConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioEncoder(EncoderConfig.from_dict(dict(model_config)))
    return model.eval()


class _TrackLogMelStats(TrackDataset):
    """Item i = (track_id, [band means, band standard deviations] (2 * n_mels,) or None, error reason or None)."""

    def compute(self, path: str) -> torch.Tensor:
        from spotifai.audio import AudioError

        mel = whole_track_mel(path, self.audio_config, self.cache_dir)
        if mel.shape[-1] < 2:
            raise AudioError(path, "too short for log-mel statistics")
        return torch.cat([mel.mean(dim=-1), mel.std(dim=-1)]).float()


def logmel_stats_vectors(
    db: sqlite3.Connection | str | Path,
    track_ids: Sequence[int],
    audio_config,
    *,
    num_workers: int = 0,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Baseline track vectors: per-track mean and standard deviation of each log-mel band over the whole song.

    ``db``: an open music DB connection or its path. Returns float32 (N, 2 * n_mels) in the order of
    ``track_ids`` (means first, then standard deviations), not normalized; rows of tracks that cannot be
    read (or are unknown / without audio) are NaN and logged. ``cache_dir``: read the log-mel from this patch
    cache instead of decoding.
    """
    conn = db if isinstance(db, sqlite3.Connection) else database.connect(db, create=False, readonly=True)
    try:
        paths = {t: p for t, p in audio_items(conn, track_ids)}
    finally:
        if conn is not db:
            conn.close()
    n_mels = int(audio_config.n_mels)
    out = np.full((len(track_ids), 2 * n_mels), np.nan, dtype=np.float32)
    items = [(int(t), paths.get(int(t), "")) for t in track_ids]
    loader = torch.utils.data.DataLoader(
        _TrackLogMelStats(items, audio_config, cache_dir),
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers > 0 else None,
    )
    failed = 0
    for row, (tid, vec, reason) in enumerate(
        tqdm(loader, total=len(items), desc="log-mel stats", unit="track", disable=not progress)
    ):
        if vec is None:
            failed += 1
            log.warning("log-mel baseline: skipping track %s: %s", tid, reason)
        else:
            out[row] = vec.numpy()
    if failed:
        log.warning("log-mel baseline: %d of %d tracks unreadable", failed, len(items))
    return out
