"""Full-song track vectors (features and projections) from a trained checkpoint.

A track's vector pools its patch vectors over the whole song, then is L2-normalized; how is the checkpoint's
``model.pooling`` (:data:`POOLINGS`):

    "mean":  v(track) = normalize( mean_i normalize(f(patch_i)) )
    "max":   v(track) = normalize( max_i f(patch_i) )      (per dimension)

with all patches of the song, or ``max_patches_per_track`` evenly spaced ones for long songs. ``f`` is the
encoder in eval mode, whose outputs are standardized per dimension (:mod:`spotifai.model`), so "max" asks, per
dimension, how strongly the song's most characteristic moment has it. This is done twice, for the encoder's
**features** (``model_dim``) and the projector's **projections** (``projection_dim``). Cosine similarity of two
track vectors is then their dot product. (Which pooling each preset uses, and why: README, "Real music".)

Batching: patches of several tracks are packed into one forward pass of exactly ``batch_size`` patches
(a long track may span several passes); per-track pools are accumulated (:func:`pool_rows`) and a track is
finished when all its patches went through. Decoding runs in a ``DataLoader`` (optionally with worker
processes) so it overlaps the model. Everything runs under ``torch.inference_mode`` with the model in
eval mode (the projector has BatchNorm), on any device.

Incremental: ``experiments/<name>/embeddings.npz`` stores the track ids, the vectors and the checkpoint's
identity; a re-run embeds only the tracks missing for the same checkpoint, and everything again when the
checkpoint changed. Unreadable tracks (:class:`spotifai.audio.AudioError`) are skipped and counted with
their reasons (and tried again next run). The file is written atomically (temp file + rename), also
periodically during long runs so an interrupted run keeps its progress.

Sharding across processes under ``torchrun`` lives in :mod:`spotifai.embed_shards`; the baselines of
:mod:`spotifai.evaluate` (a random encoder, log-mel statistics) in :mod:`spotifai.baselines`.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spotifai import database
from spotifai.embeddings_file import (
    Embeddings,
    EmbedResult,
    embeddings_path,
    load_embeddings,
    save_embeddings,
    write_embeddings_file,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- decoding


def select_patches(n_patches: int, max_patches: int | None) -> np.ndarray:
    """Indices of the patches used for a track of ``n_patches``: all, or ``max_patches`` evenly spaced ones
    (first and last included)."""
    if max_patches is None or max_patches <= 0 or n_patches <= max_patches:
        return np.arange(n_patches)
    return np.unique(np.linspace(0, n_patches - 1, max_patches).round().astype(np.int64))


POOLINGS = ("mean", "max")


def pool_rows(x: torch.Tensor, owner: torch.Tensor, n_owners: int, pooling: str) -> torch.Tensor:
    """Partial pools of the rows of ``x`` (n, d) by ``owner`` (n,) int64 in [0, n_owners): (n_owners, d) float32.

    "mean": the sum of each owner's L2-normalized rows; "max": each owner's elementwise maximum. Partial pools
    of one track from several forward passes combine with :func:`merge_pools`; :func:`finish_pool` gives the
    track's unit vector."""
    x = x.float()
    if pooling == "mean":
        return x.new_zeros(n_owners, x.shape[1]).index_add_(0, owner, F.normalize(x, dim=-1))
    if pooling == "max":
        index = owner[:, None].expand_as(x)
        return x.new_full((n_owners, x.shape[1]), -math.inf).scatter_reduce_(0, index, x, "amax")
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def merge_pools(a: torch.Tensor, b: torch.Tensor, pooling: str) -> torch.Tensor:
    """Two partial pools (:func:`pool_rows`) of the same tracks -> one."""
    return torch.maximum(a, b) if pooling == "max" else a + b


def finish_pool(pooled: torch.Tensor) -> torch.Tensor:
    """Partial pools (k, d) of complete tracks -> their unit vectors (for "mean" the division by the count
    cancels in the normalization)."""
    return F.normalize(pooled, dim=-1)


@lru_cache(maxsize=4)
def _cache_reader(audio_config, cache_dir: str):
    """This process's reader of the patch cache in ``cache_dir`` (made on first use, kept for its open maps)."""
    from spotifai.sampling import CachedPatchSource

    return CachedPatchSource(audio_config, cache_dir)


def whole_track_mel(path: str, audio_config, cache_dir: str | Path | None) -> torch.Tensor:
    """(n_mels, frames) float32 normalized log-mel of the whole track: read from the patch cache when
    ``cache_dir`` is given (computed and stored on a miss; float16 values, see :mod:`spotifai.sampling`), else
    decoded."""
    from spotifai.audio import _logmel, load_audio

    if cache_dir is None:
        with torch.inference_mode():
            return _logmel(audio_config.n_mels, "cpu")(load_audio(path))  # one filterbank per process
    mel = _cache_reader(audio_config, str(cache_dir)).mel(path)
    return torch.from_numpy(np.asarray(mel, dtype=np.float32))


class TrackDataset(torch.utils.data.Dataset):
    """Per-track work over ``items`` = [(track_id, audio path)] for a DataLoader: item i = (track_id, tensor or
    None, error reason or None). Subclasses define :meth:`compute` (path -> tensor); an unreadable or missing
    file becomes its reason, so one bad track never stops a batch job."""

    def __init__(self, items: Sequence[tuple[int, str]], audio_config, cache_dir: str | Path | None = None):
        self.items = list(items)
        self.audio_config = audio_config
        self.cache_dir = cache_dir

    def __len__(self) -> int:
        return len(self.items)

    def compute(self, path: str) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int):
        from spotifai.audio import AudioError

        track_id, path = self.items[i]
        try:
            if not path:
                raise AudioError(path, "no audio file recorded for this track")
            return track_id, self.compute(path), None
        except AudioError as exc:
            return track_id, None, str(exc.reason)
        except (OSError, RuntimeError) as exc:  # a decoder error the audio module did not wrap
            return track_id, None, f"{type(exc).__name__}: {exc}"


class TrackPatches(TrackDataset):
    """Item i = (track_id, patches (n, n_mels, patch_frames) or None, error reason or None).

    With ``cache_dir`` the log-mel comes from the training patch cache (no decoding for cached tracks)."""

    def __init__(self, items: Sequence[tuple[int, str]], audio_config, max_patches: int | None,
                 cache_dir: str | Path | None = None):
        super().__init__(items, audio_config, cache_dir)
        self.max_patches = max_patches

    def compute(self, path: str) -> torch.Tensor:
        from spotifai.audio import AudioError, to_patches, track_patches

        if self.cache_dir is None:
            patches = track_patches(path, self.audio_config)
        else:
            cfg = self.audio_config
            mel = whole_track_mel(path, cfg, self.cache_dir)
            patches = to_patches(mel, cfg.patch_frames, cfg.max_time_padding)
            if patches.shape[0] == 0:
                raise AudioError(path, f"too short: {mel.shape[-1]} frames for a {cfg.patch_frames}-frame patch")
        keep = select_patches(int(patches.shape[0]), self.max_patches)
        if len(keep) < patches.shape[0]:
            patches = patches[torch.from_numpy(keep)]
        return patches.contiguous()


def worker_init(_worker_id: int) -> None:
    """DataLoader worker setup: one torch thread per decoding worker."""
    torch.set_num_threads(1)


def _decoded(
    items, audio_config, max_patches, num_workers, cache_dir=None
) -> Iterator[tuple[int, torch.Tensor | None, str | None]]:
    dataset = TrackPatches(items, audio_config, max_patches, cache_dir)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )
    yield from loader


# ---------------------------------------------------------------------------------------------- embedding


class _PatchPacker:
    """Packs the patches of consecutive tracks into forward passes and pools each track's patch vectors.

    ``add`` queues a decoded track; ``forward(n)`` runs the next ``n`` queued patches (of one or several
    tracks) through ``encoder``; ``finish_ready`` turns every track whose patches all went through into its
    two L2-normalized vectors (in input order) and calls ``on_chunk`` every ``chunk_tracks`` finished tracks.
    """

    def __init__(self, encoder: torch.nn.Module, device: torch.device, on_chunk, chunk_tracks: int,
                 pooling: str = "mean"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.device = device
        self.on_chunk = on_chunk
        self.chunk_tracks = chunk_tracks
        self.done_ids: list[int] = []
        self.done_f: list[np.ndarray] = []
        self.done_p: list[np.ndarray] = []
        self.failures: list[dict] = []
        # Pending patches not yet through the model: list of (track_id, tensor (n, n_mels, frames)).
        self.queue: list[tuple[int, torch.Tensor]] = []
        self.queued = 0
        self.remaining: dict[int, int] = {}  # track id -> patches not yet through the model
        self.sums: dict[int, list[torch.Tensor]] = {}  # track id -> [feature pool, projection pool] (pool_rows)
        self.order: list[int] = []  # tracks waiting to be finished, in input order
        self.t_decode = self.t_model = 0.0
        self.since_chunk = 0

    def add(self, tid: int, patches: torch.Tensor) -> None:
        """Queue the (n, n_mels, patch_frames) patches of track ``tid``."""
        self.queue.append((tid, patches))
        self.queued += patches.shape[0]
        self.remaining[tid] = int(patches.shape[0])
        self.order.append(tid)

    def _take(self, n: int) -> tuple[list[torch.Tensor], list[int], list[int]]:
        """Pop the next ``n`` queued patches: (patch tensors, their track ids, patches per track)."""
        parts: list[torch.Tensor] = []
        owners: list[int] = []
        counts: list[int] = []
        while n > 0 and self.queue:
            tid, patches = self.queue[0]
            take = min(n, patches.shape[0])
            parts.append(patches[:take])
            owners.append(tid)
            counts.append(take)
            if take == patches.shape[0]:
                self.queue.pop(0)
            else:
                self.queue[0] = (tid, patches[take:])
            n -= take
        return parts, owners, counts

    def forward(self, n: int) -> None:
        """Run the next ``n`` queued patches through the encoder and pool their vectors into their tracks."""
        t0 = time.perf_counter()
        device = self.device
        parts, owners, counts = self._take(n)
        x = torch.cat(parts).to(device, non_blocking=True)
        self.queued -= x.shape[0]
        feats, projs = self.encoder(x, output="both")
        seg = torch.repeat_interleave(torch.arange(len(owners), device=device), torch.tensor(counts, device=device))
        f_pool = pool_rows(feats, seg, len(owners), self.pooling)
        p_pool = pool_rows(projs, seg, len(owners), self.pooling)
        for j, tid in enumerate(owners):
            acc = self.sums.get(tid)
            if acc is None:
                self.sums[tid] = [f_pool[j], p_pool[j]]
            else:
                acc[0] = merge_pools(acc[0], f_pool[j], self.pooling)
                acc[1] = merge_pools(acc[1], p_pool[j], self.pooling)
            self.remaining[tid] -= counts[j]
        self.t_model += time.perf_counter() - t0

    def finish_ready(self) -> None:
        """Finish the pools of every track whose patches all went through; maybe call ``on_chunk``."""
        ready = [t for t in self.order if self.remaining[t] == 0]
        if not ready:
            return
        f = torch.stack([self.sums[t][0] for t in ready])
        p = torch.stack([self.sums[t][1] for t in ready])
        self.done_f.append(finish_pool(f).cpu().numpy())
        self.done_p.append(finish_pool(p).cpu().numpy())
        self.done_ids.extend(ready)
        for t in ready:
            del self.sums[t], self.remaining[t]
        ready_set = set(ready)
        self.order[:] = [t for t in self.order if t not in ready_set]
        self.since_chunk += len(ready)
        if self.on_chunk is not None and self.since_chunk >= self.chunk_tracks:
            self.since_chunk = 0
            self.on_chunk(self.result())

    def result(self) -> EmbedResult:
        """The tracks finished so far (in the order they finished) and the failures so far."""
        done_f, done_p = self.done_f, self.done_p
        dim_f = done_f[0].shape[1] if done_f else 0
        dim_p = done_p[0].shape[1] if done_p else 0
        return EmbedResult(
            track_ids=np.asarray(self.done_ids, dtype=np.int64),
            features=np.concatenate(done_f).astype(np.float32) if done_f else np.zeros((0, dim_f), np.float32),
            projections=np.concatenate(done_p).astype(np.float32) if done_p else np.zeros((0, dim_p), np.float32),
            failures=list(self.failures),
            seconds_decoding=self.t_decode,
            seconds_model=self.t_model,
        )


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
    pooling: str | None = None,
) -> EmbedResult:
    """Full-song vectors of ``items`` = [(track_id, audio_path)] with ``encoder`` (an AudioEncoder).

    ``batch_size``: patches per forward pass (patches of several tracks are packed together).
    ``on_chunk(partial EmbedResult)`` is called every ``chunk_tracks`` finished tracks (used to save
    progress). Returns features (N, model_dim) and projections (N, projection_dim), float32, L2-normalized
    rows, for the N tracks that could be read; the others are in ``failures`` as dicts (track_id, path,
    reason). ``seconds_decoding`` is the time the main process waited for decoded tracks. ``cache_dir``: read
    each track's log-mel from this patch cache (see :mod:`spotifai.sampling`) instead of decoding it.
    ``pooling``: "mean" or "max" (module docstring); None = the encoder's ``config.pooling``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    paths = {int(t): p for t, p in items}
    if pooling is None:
        pooling = encoder.config.pooling
    packer = _PatchPacker(encoder, device, on_chunk, chunk_tracks, pooling)

    bar = tqdm(total=len(items), desc="embedding", unit="track", disable=not progress)
    with torch.inference_mode():
        it = _decoded(items, audio_config, max_patches_per_track, num_workers, cache_dir)
        while True:
            t0 = time.perf_counter()
            try:
                tid, patches, reason = next(it)
            except StopIteration:
                break
            packer.t_decode += time.perf_counter() - t0
            bar.update(1)
            tid = int(tid)
            if patches is None or patches.shape[0] == 0:
                reason = reason or "no patches"
                log.warning("skipping track %d (%s): %s", tid, paths.get(tid), reason)
                packer.failures.append({"track_id": tid, "path": paths.get(tid), "reason": reason})
                continue
            packer.add(tid, patches)
            while packer.queued >= batch_size:
                packer.forward(batch_size)
                packer.finish_ready()
        while packer.queued > 0:
            packer.forward(min(batch_size, packer.queued))
        packer.finish_ready()
    bar.close()
    result = packer.result()
    # keep input order (tracks finish in input order already; this makes it explicit)
    rank = {int(t): i for i, (t, _) in enumerate(items)}
    perm = np.argsort([rank[int(t)] for t in result.track_ids], kind="stable")
    result.track_ids, result.features, result.projections = (
        result.track_ids[perm],
        result.features[perm],
        result.projections[perm],
    )
    return result


def embed_patch_sets(encoder: torch.nn.Module, patch_sets: Sequence[tuple[int, torch.Tensor]], *,
                     device: str | torch.device = "cpu", batch_size: int = 64) -> EmbedResult:
    """The songs of ``patch_sets`` = [(track id, patches (n, n_mels, patch_frames) float32)], each pooled as
    :func:`embed_tracks` pools a track (the same packer, the encoder's pooling), ``batch_size`` patches per
    forward pass: an :class:`EmbedResult` in input order. The encoder is left in eval mode on ``device``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    packer = _PatchPacker(encoder, device, None, max(1, len(patch_sets)), encoder.config.pooling)
    with torch.inference_mode():
        for tid, patches in patch_sets:
            packer.add(int(tid), patches)
            while packer.queued >= batch_size:
                packer.forward(batch_size)
        while packer.queued > 0:
            packer.forward(min(batch_size, packer.queued))
        packer.finish_ready()
    return packer.result()


def embed_patches(encoder: torch.nn.Module, patches: torch.Tensor, *, device: str | torch.device = "cpu",
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One song's (features (model_dim,), projections (projection_dim,)) float32 unit vectors from its patches
    (n, n_mels, patch_frames): :func:`embed_patch_sets` of one song."""
    res = embed_patch_sets(encoder, [(0, patches)], device=device, batch_size=batch_size)
    return res.features[0], res.projections[0]


# ------------------------------------------------------------------------------------------ experiments


def audio_items(conn: sqlite3.Connection, track_ids: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """[(track_id, audio_path)] of tracks with audio (all of them, or those of ``track_ids``)."""
    rows = database.tracks(conn, track_ids, with_audio=True)
    return [(int(r["id"]), r["audio_path"]) for r in rows]


def default_num_workers(device: str | torch.device) -> int:
    """Decoding workers: one per spare core, at most 4 (0 when the machine has a single core)."""
    cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


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
    from spotifai import embed_shards

    experiment_path = Path(experiment_path)
    t_start = time.perf_counter()
    rank, world, owns_group = embed_shards.distributed()
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
    from spotifai import embed_shards
    from spotifai.experiment import cache_path, database_path, load_config

    config = load_config(experiment_path)
    encoder, info = checkpoints.load_encoder(experiment_path, checkpoints.resolve(experiment_path, checkpoint),
                                             device=device)
    encoder.eval()
    checkpoint_id = str(info["checkpoint_id"])
    step = int(info.get("step", -1))
    if rank == 0:  # shards of an interrupted sharded run: progress to keep
        embed_shards.merge_parts(experiment_path, checkpoint_id, step)
    if world > 1:
        dist.barrier()
    conn = database.connect(database_path(experiment_path, config), create=False, readonly=True)
    try:
        items = audio_items(conn)
    finally:
        conn.close()
    old = _previous_embeddings(experiment_path, checkpoint_id, step, {t for t, _ in items}, force)
    have = set(old.track_ids.tolist()) if old is not None else set()
    todo = [(t, p) for t, p in items if t not in have]
    log.info("%d tracks with audio: %d already embedded, %d to embed", len(items), len(have), len(todo))
    if world > 1:
        todo = todo[rank::world]
        log.info("rank %d of %d: %d tracks", rank, world, len(todo))

    def as_embeddings(res: EmbedResult) -> Embeddings:
        return Embeddings(res.track_ids, res.features, res.projections, checkpoint_id, step)

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
        on_chunk=(lambda partial: save_embeddings(experiment_path, _merged(old, as_embeddings(partial))))
        if world == 1 else (lambda partial: write_embeddings_file(embed_shards.part_path(experiment_path, rank),
                                                                  as_embeddings(partial))),
        chunk_tracks=save_every,
        cache_dir=cache_path(experiment_path, config) if use_cache else None,
    )
    if world > 1:
        final, res, embedded = embed_shards.gather(experiment_path, res, checkpoint_id, step, rank, world,
                                                   fallback=_merged(old, as_embeddings(res)))
    else:
        final = _merged(old, as_embeddings(res))
        save_embeddings(experiment_path, final)
        embedded = int(len(res.track_ids))
    _log_failures(res.failures)
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


def _previous_embeddings(experiment_path: Path, checkpoint_id: str, step: int, wanted: set[int],
                         force: bool) -> Embeddings | None:
    """The rows of embeddings.npz still valid for this run: made with ``checkpoint_id``, of a track in
    ``wanted`` (relabelled with ``step``); None when there are none to keep (``force``, no file, unreadable
    file, other checkpoint)."""
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
    return old


def _merged(old: Embeddings | None, new: Embeddings) -> Embeddings:
    """``old``'s rows and ``new``'s together, sorted by track id (stable: ``old`` first for equal ids), with
    ``new``'s checkpoint id and step; ``old`` itself when ``new`` is empty."""
    if old is None or len(old) == 0:
        return new
    if len(new.track_ids) == 0:
        return old
    ids = np.concatenate([old.track_ids, new.track_ids])
    order = np.argsort(ids, kind="stable")
    return Embeddings(
        ids[order],
        np.concatenate([old.features, new.features])[order],
        np.concatenate([old.projections, new.projections])[order],
        new.checkpoint_id,
        new.step,
    )


def _log_failures(failures: list[dict]) -> None:
    """One warning with the number of tracks that could not be embedded, per reason."""
    if failures:
        reasons: dict[str, int] = {}
        for f in failures:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        log.warning("%d tracks could not be embedded: %s", len(failures), reasons)


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
