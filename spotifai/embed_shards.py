"""Sharded embedding under ``torchrun``: each rank embeds every N-th track and writes a shard file.

Rank r writes its vectors to ``experiments/<name>/embeddings.part-RANK.npz`` (also periodically, so an
interrupted run keeps its progress); rank 0 folds the shard files made with the same checkpoint into
``embeddings.npz`` (rows sorted by track id, later shards winning for a repeated id) and deletes them. The
ranks only exchange small objects (counts, failures, timings) over a gloo process group.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from spotifai.embeddings_file import (
    Embeddings,
    EmbedResult,
    embeddings_path,
    load_embeddings,
    read_embeddings_file,
    save_embeddings,
    write_embeddings_file,
)

log = logging.getLogger(__name__)

PART_GLOB = "embeddings.part-*.npz"


def part_path(experiment_path: Path, rank: int) -> Path:
    """The shard file of ``rank``: ``embeddings.part-RANK.npz`` in the experiment folder."""
    return experiment_path / f"embeddings.part-{rank:05d}.npz"


def concat_rows(parts: list[Embeddings], checkpoint_id: str, step: int) -> Embeddings:
    """Rows of ``parts`` (later parts win for a repeated track id) sorted by track id."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return Embeddings(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32),
                          checkpoint_id, step)
    ids = np.concatenate([p.track_ids for p in parts])
    feats = np.concatenate([p.features for p in parts])
    projs = np.concatenate([p.projections for p in parts])
    last = {int(t): i for i, t in enumerate(ids)}
    rows = np.array([last[t] for t in sorted(last)], dtype=np.int64)
    return Embeddings(ids[rows], feats[rows], projs[rows], checkpoint_id, step)


def merge_parts(experiment_path: Path, checkpoint_id: str, step: int) -> int:
    """Fold the shard files of a sharded run (``embeddings.part-*.npz``) made with ``checkpoint_id`` into
    embeddings.npz (atomically; its rows of another checkpoint are dropped), then delete every shard file.
    Returns the number of shard rows folded in."""
    paths = sorted(experiment_path.glob(PART_GLOB))
    parts = []
    for path in paths:
        try:
            part = read_embeddings_file(path)
        except ValueError as exc:
            log.warning("%s; ignored", exc)
            continue
        if part.checkpoint_id == checkpoint_id:
            parts.append(part)
    if parts:
        base = None
        if embeddings_path(experiment_path).is_file():
            try:
                base = load_embeddings(experiment_path)
            except ValueError as exc:
                log.warning("%s; replaced by the shards", exc)
            if base is not None and base.checkpoint_id != checkpoint_id:
                base = None
        save_embeddings(experiment_path, concat_rows([base, *parts], checkpoint_id, step))
    for path in paths:
        path.unlink(missing_ok=True)
    return sum(len(p) for p in parts)


def distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call made the process group) under ``torchrun``; gloo: the ranks only
    exchange small objects and wait for each other, whatever device embeds."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), True


def gather(experiment_path: Path, res: EmbedResult, checkpoint_id: str, step: int, rank: int, world: int,
           fallback: Embeddings) -> tuple[Embeddings, EmbedResult, int]:
    """After every rank embedded its shard: write this rank's shard file, merge all of them on rank 0.

    Returns (the merged embeddings.npz, or ``fallback`` when there is none; this rank's result with the
    failures of every rank and the slowest rank's timings; tracks embedded by all ranks together).
    """
    import torch.distributed as dist

    write_embeddings_file(part_path(experiment_path, rank),
                          Embeddings(res.track_ids, res.features, res.projections, checkpoint_id, step))
    counts = [None] * world
    dist.all_gather_object(counts, (int(len(res.track_ids)), res.failures, res.seconds_decoding,
                                    res.seconds_model))
    if rank == 0:
        merge_parts(experiment_path, checkpoint_id, step)
    dist.barrier()
    final = load_embeddings(experiment_path) if embeddings_path(experiment_path).is_file() else fallback
    res = EmbedResult(res.track_ids, res.features, res.projections,
                      failures=[f for c in counts for f in c[1]],
                      seconds_decoding=max(c[2] for c in counts), seconds_model=max(c[3] for c in counts))
    return final, res, sum(c[0] for c in counts)
