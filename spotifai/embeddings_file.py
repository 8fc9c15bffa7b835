"""Track vectors as data: :class:`Embeddings` (the rows of ``experiments/<name>/embeddings.npz``) and
:class:`EmbedResult` (what one embedding pass returns), and reading and writing the file atomically.

Only numpy: whatever reads stored vectors (the index, the evaluation, the API) does not import torch through
here. Computing the vectors is :mod:`spotifai.embed`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spotifai import atomic

EMBEDDINGS_FILE = "embeddings.npz"


@dataclass
class Embeddings:
    """Track vectors of one experiment.

    ``track_ids`` int64 (N,); ``features`` float32 (N, model_dim); ``projections`` float32
    (N, projection_dim), rows L2-normalized; ``checkpoint_id`` the identity of the checkpoint that made them.
    """

    track_ids: np.ndarray
    features: np.ndarray
    projections: np.ndarray
    checkpoint_id: str
    step: int = -1

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    def vectors(self, space: str) -> np.ndarray:
        """The (N, dim) matrix of ``space`` ("features" or "projections")."""
        if space not in ("features", "projections"):
            raise ValueError(f"unknown embedding space {space!r} (expected 'features' or 'projections')")
        return self.features if space == "features" else self.projections

    def subset(self, track_ids: Sequence[int]) -> Embeddings:
        """The rows of ``track_ids`` (in that order; ids not embedded are left out)."""
        pos = {int(t): i for i, t in enumerate(self.track_ids)}
        rows = np.array([pos[int(t)] for t in track_ids if int(t) in pos], dtype=np.int64)
        return Embeddings(
            self.track_ids[rows], self.features[rows], self.projections[rows], self.checkpoint_id, self.step
        )


def embeddings_path(experiment_path: str | Path) -> Path:
    return Path(experiment_path) / EMBEDDINGS_FILE


def load_embeddings(experiment_path: str | Path) -> Embeddings:
    """Read ``experiments/<name>/embeddings.npz``; FileNotFoundError naming the file when missing."""
    path = embeddings_path(experiment_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no embeddings (run `spotifai embed {Path(experiment_path)}` first)")
    return read_embeddings_file(path)


def read_embeddings_file(path: Path) -> Embeddings:
    """The :class:`Embeddings` stored in the .npz ``path``; ValueError naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Embeddings(
                track_ids=z["track_ids"].astype(np.int64),
                features=z["features"].astype(np.float32),
                projections=z["projections"].astype(np.float32),
                checkpoint_id=str(z["checkpoint_id"]),
                step=int(z["step"]) if "step" in z else -1,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid embeddings file ({exc})") from exc


def save_embeddings(experiment_path: str | Path, emb: Embeddings) -> Path:
    """Write ``emb`` to ``experiments/<name>/embeddings.npz`` atomically."""
    return write_embeddings_file(embeddings_path(experiment_path), emb)


def write_embeddings_file(path: Path, emb: Embeddings) -> Path:
    """Write ``emb`` to the .npz ``path`` atomically (int64 ids, float32 vectors); returns ``path``."""
    return atomic.write_with(path, lambda fh: np.savez(
        fh,
        track_ids=np.asarray(emb.track_ids, dtype=np.int64),
        features=np.asarray(emb.features, dtype=np.float32),
        projections=np.asarray(emb.projections, dtype=np.float32),
        checkpoint_id=np.array(emb.checkpoint_id),
        step=np.array(emb.step, dtype=np.int64),
    ))


@dataclass
class EmbedResult:
    """Output of :func:`spotifai.embed.embed_tracks`: rows in input order of the tracks that worked."""

    track_ids: np.ndarray
    features: np.ndarray
    projections: np.ndarray
    failures: list[dict] = field(default_factory=list)
    seconds_decoding: float = 0.0
    seconds_model: float = 0.0
