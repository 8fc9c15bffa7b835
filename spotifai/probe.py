"""Retrieval on the validation tracks during training: the question evaluation asks, asked of the weights as
they train.

The validation loss measures how invariant the projections of unseen tracks are within their playlists. On real
music it is lowest early while the album precision of held-out songs keeps rising to the last step (README,
"Real music"), so it is a poor guide for choosing a checkpoint. The probe instead ranks songs: every probe track
becomes a song vector the way ``spotifai embed`` makes one (the encoder in eval mode, the model's pooling of its
patch projections) from ``patches_per_track`` evenly spaced patches; each validation track is a query against
all probe tracks (the validation tracks and a fixed sample of the training tracks, itself left out), and a
candidate is relevant when it shares a playlist with the query. The score is the mean over queries of the
average precision (playlist mAP, in [0, 1], higher is better; queries without any relevant candidate are left
out). mAP uses the whole ranking, so it is less noisy than precision@k with a few dozen queries.

The probe's patches are read once (from the patch cache when there is one) and kept in memory: at most
:data:`MAX_QUERIES` validation and :data:`MAX_TRAIN_TRACKS` training tracks, a seeded sample when there are more,
so its cost per validation is bounded on any library size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spotifai.experiment import PROBE_SPLIT

__all__ = ["MAX_QUERIES", "MAX_TRAIN_TRACKS", "PROBE_SPLIT", "RetrievalProbe", "build_probe"]

log = logging.getLogger(__name__)

MAX_QUERIES = 256
"""Validation tracks ranked at each probe (a seeded sample when there are more)."""
MAX_TRAIN_TRACKS = 512
"""Training tracks among the candidates (a seeded sample when there are more)."""


@dataclass
class RetrievalProbe:
    """The probe's fixed data: ``patch_sets`` [(track id, patches (n, n_mels, patch_frames) float32)] of the
    candidates, ``queries`` (Q,) int64 positions of the validation tracks among them, ``relevance`` (Q, N) bool
    (shares a playlist, the query itself excluded) and ``exclude`` (Q, N) bool (the query itself)."""

    patch_sets: list[tuple[int, torch.Tensor]]
    queries: np.ndarray
    relevance: np.ndarray
    exclude: np.ndarray

    def score(self, encoder: torch.nn.Module, device: str | torch.device, batch_size: int = 64) -> float:
        """Playlist mAP of the validation tracks with ``encoder`` (restored to its training mode afterwards);
        NaN when no query has a relevant candidate."""
        from spotifai.embed import embed_patch_sets
        from spotifai.evaluate import per_query_metrics

        was_training = encoder.training
        try:
            res = embed_patch_sets(encoder, self.patch_sets, device=device, batch_size=batch_size)
        finally:
            encoder.train(was_training)
        vectors = res.projections
        ap = per_query_metrics(vectors[self.queries], vectors, {"playlist": self.relevance}, exclude=self.exclude,
                               ks=(5,), with_recall_map=("playlist",))["playlist_map"]
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def _sample(ids: Sequence[int], limit: int, rng: np.random.Generator) -> list[int]:
    ids = sorted(set(ids))
    if len(ids) <= limit:
        return ids
    return sorted(rng.choice(ids, size=limit, replace=False).tolist())


def build_probe(plan, audio_config, patches_per_track: int, *, seed: int,
                cache_dir: str | Path | None = None) -> RetrievalProbe | None:
    """The probe of a :class:`spotifai.sampling.Plan`'s validation tracks (None when it has fewer than two
    readable validation tracks). Tracks that cannot be read are left out (logged once, here)."""
    from spotifai.embed import TrackPatches
    from spotifai.evaluate import set_relevance

    if patches_per_track < 1:
        raise ValueError(f"patches_per_track must be >= 1, got {patches_per_track}")
    playlists_of: dict[int, set[int]] = {}
    for playlists in (plan.train, plan.validation):
        for pid, tids in playlists.items():
            for t in tids:
                playlists_of.setdefault(int(t), set()).add(int(pid))
    rng = np.random.default_rng([seed, 0x9E0BE])
    val = _sample([t for tids in plan.validation.values() for t in tids], MAX_QUERIES, rng)
    train = _sample([t for tids in plan.train.values() for t in tids if t not in set(val)], MAX_TRAIN_TRACKS, rng)
    items = [(t, plan.tracks[t][0]) for t in val + train]
    dataset = TrackPatches(items, audio_config, patches_per_track, cache_dir)
    patch_sets, failed = [], 0
    for i in range(len(dataset)):
        tid, patches, _reason = dataset[i]
        if patches is None or patches.shape[0] == 0:
            failed += 1
            continue
        patch_sets.append((int(tid), patches))
    if failed:
        log.warning("retrieval probe: %d of %d tracks could not be read and are left out", failed, len(items))
    ids = [t for t, _ in patch_sets]
    val_set = set(val)
    queries = np.array([i for i, t in enumerate(ids) if t in val_set], dtype=np.int64)
    if len(queries) < 2:
        return None
    sets = [playlists_of.get(t, set()) for t in ids]
    relevance = set_relevance([sets[q] for q in queries], sets)
    exclude = np.zeros_like(relevance)
    exclude[np.arange(len(queries)), queries] = True
    relevance &= ~exclude
    return RetrievalProbe(patch_sets, queries, relevance, exclude)
