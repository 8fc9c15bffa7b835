"""Full-song track vectors (features and projections) from a trained checkpoint.

A track's vector is the mean of its L2-normalized patch vectors over the whole song, L2-normalized again:

    v(track) = normalize( mean_i normalize(f(patch_i)) )

with all patches of the song, or ``max_patches_per_track`` evenly spaced ones for long songs. This is done
twice, for the encoder's **features** (``model_dim``) and the projector's **projections**
(``projection_dim``). Cosine similarity of two track vectors is then their dot product.

Batching: patches of several tracks are packed into one forward pass of exactly ``batch_size`` patches
(a long track may span several passes); per-track sums are accumulated with ``index_add`` and a track is
finished when all its patches went through. Decoding runs in a ``DataLoader`` (optionally with worker
processes) so it overlaps the model. Everything runs under ``torch.inference_mode`` with the model in
eval mode (the projector has BatchNorm), on any device.

Incremental: ``experiments/<name>/embeddings.npz`` stores the track ids, the vectors and the checkpoint's
identity; a re-run embeds only the tracks missing for the same checkpoint, and everything again when the
checkpoint changed. Unreadable tracks (:class:`spotifai.audio.AudioError`) are skipped and counted with
their reasons (and tried again next run). The file is written atomically (temp file + rename), also
periodically during long runs so an interrupted run keeps its progress.

Baselines for :mod:`spotifai.evaluate` live here too because they are "embeddings" computed by the same
code: :func:`random_encoder` (same architecture, fixed seed, no training) and
:func:`logmel_stats_vectors` (per-track mean and standard deviation of log-mel bands).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spotifai import atomic, database

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "embeddings.npz"


# --------------------------------------------------------------------------------------------- storage


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
    return _read_npz(path)


def _read_npz(path: Path) -> Embeddings:
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
    return _write_npz(embeddings_path(experiment_path), emb)


def _write_npz(path: Path, emb: Embeddings) -> Path:
    return atomic.write_with(path, lambda fh: np.savez(
        fh,
        track_ids=np.asarray(emb.track_ids, dtype=np.int64),
        features=np.asarray(emb.features, dtype=np.float32),
        projections=np.asarray(emb.projections, dtype=np.float32),
        checkpoint_id=np.array(emb.checkpoint_id),
        step=np.array(emb.step, dtype=np.int64),
    ))


# --------------------------------------------------------------------------------------------- decoding


def select_patches(n_patches: int, max_patches: int | None) -> np.ndarray:
    """Indices of the patches used for a track of ``n_patches``: all, or ``max_patches`` evenly spaced ones
    (first and last included)."""
    if max_patches is None or max_patches <= 0 or n_patches <= max_patches:
        return np.arange(n_patches)
    return np.unique(np.linspace(0, n_patches - 1, max_patches).round().astype(np.int64))


@lru_cache(maxsize=4)
def _cache_reader(audio_config, cache_dir: str):
    """This process's reader of the patch cache in ``cache_dir`` (made on first use, kept for its open maps)."""
    from spotifai.sampling import CachedPatchSource

    return CachedPatchSource(audio_config, cache_dir)


def _whole_track_mel(path: str, audio_config, cache_dir: str | Path | None) -> torch.Tensor:
    """(n_mels, frames) float32 normalized log-mel of the whole track: read from the patch cache when
    ``cache_dir`` is given (computed and stored on a miss; float16 values, see :mod:`spotifai.sampling`), else
    decoded."""
    from spotifai.audio import _logmel, load_audio

    if cache_dir is None:
        with torch.inference_mode():
            return _logmel(audio_config.n_mels, "cpu")(load_audio(path))  # one filterbank per process
    mel = _cache_reader(audio_config, str(cache_dir)).mel(path)
    return torch.from_numpy(np.asarray(mel, dtype=np.float32))


class _TrackPatches(torch.utils.data.Dataset):
    """Item i = (track_id, patches (n, n_mels, patch_frames) or None, error reason or None).

    With ``cache_dir`` the log-mel comes from the training patch cache (no decoding for cached tracks)."""

    def __init__(self, items: Sequence[tuple[int, str]], audio_config, max_patches: int | None,
                 cache_dir: str | Path | None = None):
        self.items = list(items)
        self.audio_config = audio_config
        self.max_patches = max_patches
        self.cache_dir = cache_dir

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from spotifai.audio import AudioError, to_patches, track_patches

        track_id, path = self.items[i]
        try:
            if not path:
                raise AudioError(path, "no audio file recorded for this track")
            if self.cache_dir is None:
                patches = track_patches(path, self.audio_config)
            else:
                cfg = self.audio_config
                mel = _whole_track_mel(path, cfg, self.cache_dir)
                patches = to_patches(mel, cfg.patch_frames, cfg.max_time_padding)
                if patches.shape[0] == 0:
                    raise AudioError(path, f"too short: {mel.shape[-1]} frames for a {cfg.patch_frames}-frame patch")
            keep = select_patches(int(patches.shape[0]), self.max_patches)
            if len(keep) < patches.shape[0]:
                patches = patches[torch.from_numpy(keep)]
            return track_id, patches.contiguous(), None
        except AudioError as exc:
            return track_id, None, str(exc.reason)
        except (OSError, RuntimeError) as exc:  # a decoder error the audio module did not wrap
            return track_id, None, f"{type(exc).__name__}: {exc}"


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def _decoded(
    items, audio_config, max_patches, num_workers, cache_dir=None
) -> Iterator[tuple[int, torch.Tensor | None, str | None]]:
    dataset = _TrackPatches(items, audio_config, max_patches, cache_dir)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )
    yield from loader


# ---------------------------------------------------------------------------------------------- embedding


@dataclass
class EmbedResult:
    """Output of :func:`embed_tracks`: rows in input order of the tracks that worked."""

    track_ids: np.ndarray
    features: np.ndarray
    projections: np.ndarray
    failures: list[dict] = field(default_factory=list)
    seconds_decoding: float = 0.0
    seconds_model: float = 0.0


def embed_tracks(
    encoder: torch.nn.Module,
    items: Sequence[tuple[int, str]],
    audio_config,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    max_patches_per_track: int | None = 64,
    num_workers: int = 0,
    progress: bool = True,
    on_chunk=None,
    chunk_tracks: int = 1000,
    cache_dir: str | Path | None = None,
) -> EmbedResult:
    """Full-song vectors of ``items`` = [(track_id, audio_path)] with ``encoder`` (an AudioEncoder).

    ``batch_size``: patches per forward pass (patches of several tracks are packed together).
    ``on_chunk(partial EmbedResult)`` is called every ``chunk_tracks`` finished tracks (used to save
    progress). Returns features (N, model_dim) and projections (N, projection_dim), float32, L2-normalized
    rows, for the N tracks that could be read; the others are in ``failures`` as dicts (track_id, path,
    reason). ``seconds_decoding`` is the time the main process waited for decoded tracks. ``cache_dir``: read
    each track's log-mel from this patch cache (see :mod:`spotifai.sampling`) instead of decoding it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    paths = {int(t): p for t, p in items}

    done_ids: list[int] = []
    done_f: list[np.ndarray] = []
    done_p: list[np.ndarray] = []
    failures: list[dict] = []
    # Pending patches not yet through the model: list of (track_id, tensor (n, n_mels, frames)).
    queue: list[tuple[int, torch.Tensor]] = []
    queued = 0
    remaining: dict[int, int] = {}  # track id -> patches not yet through the model
    sums: dict[int, list[torch.Tensor]] = {}  # track id -> [feature sum, projection sum]
    order: list[int] = []  # tracks waiting to be finished, in input order
    t_decode = t_model = 0.0
    since_chunk = 0

    def forward(n: int) -> None:
        nonlocal queued, t_model
        t0 = time.perf_counter()
        parts: list[torch.Tensor] = []
        owners: list[int] = []
        counts: list[int] = []
        while n > 0 and queue:
            tid, patches = queue[0]
            take = min(n, patches.shape[0])
            parts.append(patches[:take])
            owners.append(tid)
            counts.append(take)
            if take == patches.shape[0]:
                queue.pop(0)
            else:
                queue[0] = (tid, patches[take:])
            n -= take
        x = torch.cat(parts).to(device, non_blocking=True)
        queued -= x.shape[0]
        feats, projs = encoder(x, output="both")
        feats = F.normalize(feats.float(), dim=-1)
        projs = F.normalize(projs.float(), dim=-1)
        seg = torch.repeat_interleave(torch.arange(len(owners), device=device), torch.tensor(counts, device=device))
        f_sum = torch.zeros(len(owners), feats.shape[1], device=device).index_add_(0, seg, feats)
        p_sum = torch.zeros(len(owners), projs.shape[1], device=device).index_add_(0, seg, projs)
        for j, tid in enumerate(owners):
            acc = sums.get(tid)
            if acc is None:
                sums[tid] = [f_sum[j], p_sum[j]]
            else:
                acc[0] = acc[0] + f_sum[j]
                acc[1] = acc[1] + p_sum[j]
            remaining[tid] -= counts[j]
        t_model += time.perf_counter() - t0

    def finish_ready() -> None:
        nonlocal since_chunk
        ready = [t for t in order if remaining[t] == 0]
        if not ready:
            return
        f = torch.stack([sums[t][0] for t in ready])
        p = torch.stack([sums[t][1] for t in ready])
        # mean of unit vectors, then unit length: the division by the count cancels in the normalization
        done_f.append(F.normalize(f, dim=-1).cpu().numpy())
        done_p.append(F.normalize(p, dim=-1).cpu().numpy())
        done_ids.extend(ready)
        for t in ready:
            del sums[t], remaining[t]
        ready_set = set(ready)
        order[:] = [t for t in order if t not in ready_set]
        since_chunk += len(ready)
        if on_chunk is not None and since_chunk >= chunk_tracks:
            since_chunk = 0
            on_chunk(_result())

    def _result() -> EmbedResult:
        dim_f = done_f[0].shape[1] if done_f else 0
        dim_p = done_p[0].shape[1] if done_p else 0
        return EmbedResult(
            track_ids=np.asarray(done_ids, dtype=np.int64),
            features=np.concatenate(done_f).astype(np.float32) if done_f else np.zeros((0, dim_f), np.float32),
            projections=np.concatenate(done_p).astype(np.float32) if done_p else np.zeros((0, dim_p), np.float32),
            failures=list(failures),
            seconds_decoding=t_decode,
            seconds_model=t_model,
        )

    bar = tqdm(total=len(items), desc="embedding", unit="track", disable=not progress)
    with torch.inference_mode():
        it = _decoded(items, audio_config, max_patches_per_track, num_workers, cache_dir)
        while True:
            t0 = time.perf_counter()
            try:
                tid, patches, reason = next(it)
            except StopIteration:
                break
            t_decode += time.perf_counter() - t0
            bar.update(1)
            tid = int(tid)
            if patches is None or patches.shape[0] == 0:
                reason = reason or "no patches"
                log.warning("skipping track %d (%s): %s", tid, paths.get(tid), reason)
                failures.append({"track_id": tid, "path": paths.get(tid), "reason": reason})
                continue
            queue.append((tid, patches))
            queued += patches.shape[0]
            remaining[tid] = int(patches.shape[0])
            order.append(tid)
            while queued >= batch_size:
                forward(batch_size)
                finish_ready()
        while queued > 0:
            forward(min(batch_size, queued))
        finish_ready()
    bar.close()
    result = _result()
    # keep input order (tracks finish in input order already; this makes it explicit)
    rank = {int(t): i for i, (t, _) in enumerate(items)}
    perm = np.argsort([rank[int(t)] for t in result.track_ids], kind="stable")
    result.track_ids, result.features, result.projections = (
        result.track_ids[perm],
        result.features[perm],
        result.projections[perm],
    )
    return result


def random_encoder(model_config: dict, seed: int = 0) -> torch.nn.Module:
    """The baseline encoder: the experiment's architecture with random weights (``seed``), eval mode."""
    from spotifai.model import AudioEncoder, EncoderConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioEncoder(EncoderConfig.from_dict(dict(model_config)))
    return model.eval()


# ------------------------------------------------------------------------------------------ experiments


def audio_items(conn: sqlite3.Connection, track_ids: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """[(track_id, audio_path)] of tracks with audio (all of them, or those of ``track_ids``)."""
    rows = database.tracks(conn, track_ids, with_audio=True)
    return [(int(r["id"]), r["audio_path"]) for r in rows]


def default_num_workers(device: str | torch.device) -> int:
    """Decoding workers: one per spare core, at most 4 (0 when the machine has a single core)."""
    cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


PART_GLOB = "embeddings.part-*.npz"


def _part_path(experiment_path: Path, rank: int) -> Path:
    return experiment_path / f"embeddings.part-{rank:05d}.npz"


def _concat(parts: list[Embeddings], checkpoint_id: str, step: int) -> Embeddings:
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


def _merge_parts(experiment_path: Path, checkpoint_id: str, step: int) -> int:
    """Fold the shard files of a sharded run (``embeddings.part-*.npz``) made with ``checkpoint_id`` into
    embeddings.npz (atomically; its rows of another checkpoint are dropped), then delete every shard file.
    Returns the number of shard rows folded in."""
    paths = sorted(experiment_path.glob(PART_GLOB))
    parts = []
    for path in paths:
        try:
            part = _read_npz(path)
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
        save_embeddings(experiment_path, _concat([base, *parts], checkpoint_id, step))
    for path in paths:
        path.unlink(missing_ok=True)
    return sum(len(p) for p in parts)


def _distributed() -> tuple[int, int, bool]:
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


def embed_experiment(
    experiment_path: str | Path,
    device: str = "cpu",
    batch_size: int = 64,
    max_patches_per_track: int | None = 64,
    force: bool = False,
    *,
    checkpoint: str = "auto",
    num_workers: int | None = None,
    progress: bool = True,
    save_every: int = 1000,
    use_cache: bool = True,
) -> dict:
    """Embed every track with audio of the experiment's DB into ``experiments/<name>/embeddings.npz``.

    ``checkpoint``: "auto" (the default) = "best" when training kept a best-validation checkpoint
    (``progress.keep_best``, ``checkpoints/best.pt``), else "latest"; or a step, a name or a .pt path.
    ``use_cache``: read log-mels from the experiment's patch cache (data.patch_cache; filled by training, so
    only tracks training never saw are decoded) instead of decoding every file.
    Incremental (see module docstring); ``force`` re-embeds everything. Returns a summary: embedded (this
    run), skipped (already done with this checkpoint), failed (count) and failures (track_id, path, reason),
    total (rows in the file), checkpoint_id, step, seconds, seconds_decoding, seconds_model, path.

    Under ``torchrun --nproc_per_node=N -m spotifai.embed EXPERIMENT`` (WORLD_SIZE > 1) the tracks to embed
    are sharded across the ranks (rank r takes every N-th one, on ``cuda:LOCAL_RANK`` when ``device`` is
    "cuda"); each rank writes its vectors to ``embeddings.part-RANK.npz`` (also periodically, so an interrupted
    run keeps its progress: the next run folds the shard files in first) and rank 0 merges them into the same
    embeddings.npz a single process writes. Every rank returns the summary of the whole run.
    """
    experiment_path = Path(experiment_path)
    t_start = time.perf_counter()
    rank, world, owns_group = _distributed()
    try:
        if world > 1 and device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return _embed_experiment(experiment_path, device, batch_size, max_patches_per_track, force, checkpoint,
                                 num_workers, progress and rank == 0, save_every, use_cache, t_start, rank, world)
    finally:
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _embed_experiment(experiment_path: Path, device: str, batch_size: int, max_patches_per_track: int | None,
                      force: bool, checkpoint: str, num_workers: int | None, progress: bool, save_every: int,
                      use_cache: bool, t_start: float, rank: int, world: int) -> dict:
    import torch.distributed as dist

    from spotifai import checkpoint as checkpoints
    from spotifai.experiment import cache_path, database_path, load_config

    config = load_config(experiment_path)
    encoder, info = checkpoints.load_encoder(experiment_path, checkpoints.resolve(experiment_path, checkpoint),
                                             device=device)
    encoder.eval()
    checkpoint_id = str(info["checkpoint_id"])
    step = int(info.get("step", -1))
    if rank == 0:  # shards of an interrupted sharded run: progress to keep
        _merge_parts(experiment_path, checkpoint_id, step)
    if world > 1:
        dist.barrier()
    conn = database.connect(database_path(experiment_path, config), create=False, readonly=True)
    try:
        items = audio_items(conn)
    finally:
        conn.close()
    wanted = {t for t, _ in items}

    old: Embeddings | None = None
    if not force and embeddings_path(experiment_path).is_file():
        try:
            old = load_embeddings(experiment_path)
        except ValueError as exc:
            log.warning("%s; re-embedding everything", exc)
        if old is not None and old.checkpoint_id != checkpoint_id:
            log.info("checkpoint changed (%s -> %s): re-embedding every track", old.checkpoint_id, checkpoint_id)
            old = None
    if old is not None:
        keep = np.isin(old.track_ids, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
        old = Embeddings(old.track_ids[keep], old.features[keep], old.projections[keep], old.checkpoint_id, step)
    have = set(old.track_ids.tolist()) if old is not None else set()
    todo = [(t, p) for t, p in items if t not in have]
    log.info("%d tracks with audio: %d already embedded, %d to embed", len(items), len(have), len(todo))
    if world > 1:
        todo = todo[rank::world]
        log.info("rank %d of %d: %d tracks", rank, world, len(todo))

    def merged(res: EmbedResult) -> Embeddings:
        if old is None or len(old) == 0:
            return Embeddings(res.track_ids, res.features, res.projections, checkpoint_id, step)
        if len(res.track_ids) == 0:
            return old
        ids = np.concatenate([old.track_ids, res.track_ids])
        order = np.argsort(ids, kind="stable")
        return Embeddings(
            ids[order],
            np.concatenate([old.features, res.features])[order],
            np.concatenate([old.projections, res.projections])[order],
            checkpoint_id,
            step,
        )

    if num_workers is None:
        num_workers = default_num_workers(device)
    res = embed_tracks(
        encoder,
        todo,
        info["audio"],
        device=device,
        batch_size=batch_size,
        max_patches_per_track=max_patches_per_track,
        num_workers=min(num_workers, max(0, len(todo) - 1)),
        progress=progress,
        on_chunk=(lambda partial: save_embeddings(experiment_path, merged(partial))) if world == 1 else (
            lambda partial: _write_npz(_part_path(experiment_path, rank), Embeddings(
                partial.track_ids, partial.features, partial.projections, checkpoint_id, step))),
        chunk_tracks=save_every,
        cache_dir=cache_path(experiment_path, config) if use_cache else None,
    )
    if world > 1:
        _write_npz(_part_path(experiment_path, rank),
                   Embeddings(res.track_ids, res.features, res.projections, checkpoint_id, step))
        counts = [None] * world
        dist.all_gather_object(counts, (int(len(res.track_ids)), res.failures, res.seconds_decoding,
                                        res.seconds_model))
        if rank == 0:
            _merge_parts(experiment_path, checkpoint_id, step)
        dist.barrier()
        final = load_embeddings(experiment_path) if embeddings_path(experiment_path).is_file() else merged(res)
        res = EmbedResult(res.track_ids, res.features, res.projections,
                          failures=[f for c in counts for f in c[1]],
                          seconds_decoding=max(c[2] for c in counts), seconds_model=max(c[3] for c in counts))
        embedded = sum(c[0] for c in counts)
    else:
        final = merged(res)
        save_embeddings(experiment_path, final)
        embedded = int(len(res.track_ids))
    if res.failures:
        reasons: dict[str, int] = {}
        for f in res.failures:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        log.warning("%d tracks could not be embedded: %s", len(res.failures), reasons)
    return {
        "embedded": embedded,
        "skipped": len(have),
        "failed": len(res.failures),
        "failures": res.failures,
        "total": len(final),
        "checkpoint_id": checkpoint_id,
        "step": step,
        "seconds": round(time.perf_counter() - t_start, 3),
        "seconds_decoding": round(res.seconds_decoding, 3),
        "seconds_model": round(res.seconds_model, 3),
        "path": str(embeddings_path(experiment_path)),
    }


# ------------------------------------------------------------------------------------------- baselines


class _TrackLogMelStats(torch.utils.data.Dataset):
    """Item i = (track_id, [band means, band standard deviations] (2 * n_mels,) or None, error reason or None)."""

    def __init__(self, items: Sequence[tuple[int, str]], audio_config, cache_dir: str | Path | None = None):
        self.items = list(items)
        self.audio_config = audio_config
        self.cache_dir = cache_dir

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from spotifai.audio import AudioError

        track_id, path = self.items[i]
        try:
            if not path:
                raise AudioError(path, "no audio file recorded for this track")
            mel = _whole_track_mel(path, self.audio_config, self.cache_dir)
            if mel.shape[-1] < 2:
                raise AudioError(path, "too short for log-mel statistics")
            return track_id, torch.cat([mel.mean(dim=-1), mel.std(dim=-1)]).float(), None
        except AudioError as exc:
            return track_id, None, str(exc.reason)
        except (OSError, RuntimeError) as exc:
            return track_id, None, f"{type(exc).__name__}: {exc}"


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
        worker_init_fn=_worker_init if num_workers > 0 else None,
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


def main(argv: list[str] | None = None) -> int:
    """``python -m spotifai.embed EXPERIMENT`` (also under ``torchrun --nproc_per_node=N``: sharded)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m spotifai.embed", description="Embed an experiment's tracks.")
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK under torchrun) or cuda:N")
    parser.add_argument("--batch-size", type=int, default=64, help="patches per forward pass")
    parser.add_argument("--max-patches", type=int, default=64, help="evenly spaced patches per long track (0 = all)")
    parser.add_argument("--workers", type=int, default=None, help="decoding worker processes per rank")
    parser.add_argument("--checkpoint", default="auto", help="auto, latest, best, a step or a .pt")
    parser.add_argument("--force", action="store_true", help="re-embed every track")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(levelname)s [rank {rank}] %(name)s: %(message)s")
    summary = embed_experiment(args.experiment, device=args.device, batch_size=args.batch_size,
                               max_patches_per_track=args.max_patches or None, force=args.force,
                               checkpoint=args.checkpoint, num_workers=args.workers, progress=sys.stderr.isatty())
    if rank == 0:
        summary["failures"] = summary["failures"][:20]
        print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
