"""Playlist-grouped batches of log-mel patches for training and validation, with an optional patch cache.

One training step sees ``P`` playlists (``training.playlists_per_step``) x ``K`` patches (``training.patches_per_playlist``):

* the ``K`` patches of a playlist come from distinct tracks of that playlist where it has at least ``K``
  usable tracks (every track once, then the rest drawn with replacement, when it is shorter), each at a random
  offset (a whole number of mel frames, so a cached and a decoded patch start at the same frame);
* the first ``K/2`` patches of a playlist form view ``a``, the last ``K/2`` view ``b``; the group id of a row
  is the playlist's position in the batch (``0..P-1``), so row ``i`` of ``mel_a`` and row ``i`` of ``mel_b``
  are two different tracks of the same playlist: a positive pair for the multi-positive Barlow Twins loss.
* with ``same_track_views`` (config ``training.track_weight`` > 0) a playlist gives ``K/2`` distinct tracks
  instead, each cut twice at independent random offsets: row ``i`` of ``mel_a`` and row ``i`` of ``mel_b`` are
  two patches of the *same* track (``tracks_a == tracks_b``), so the trainer can add a per-track Barlow Twins
  term (see :func:`spotifai.loss.playlist_and_track_loss`), while every pair of rows of one playlist is
  still a playlist positive.

A batch is a dict ``{"mel_a": (P*K/2, n_mels, patch_frames) float32, "mel_b": same, "groups": (P*K/2,)
int64, "tracks_a"/"tracks_b": (P*K/2,) int64 track ids of the rows, "playlists": (P,) int64 playlist id of
each group, "step": int, "skipped_tracks": [(track id, reason)], "skipped_playlists": [playlist id]}``; the
two ``skipped_*`` lists carry the items found unusable while making that batch (the trainer totals them).
With ``dtype=torch.float16`` (what the trainer asks for when the patch cache is on) the mels are float16: the
cache's own values, so casting them to float32 gives exactly the float32 batch, at half the bytes to copy
and send. Made in a DataLoader worker, the mels are allocated in shared memory, so that sending them to the
main process moves a handle, not the data.

Determinism. The batch of step ``s`` is a function of ``(seed, split, s, rank)`` only, not of the number of
loader workers nor of what ran before, so a resumed run sees the batches an uninterrupted one would have
seen. The playlists of a step are a permutation drawn from ``(seed, split, s)`` that every rank shares; rank
``r`` takes the slice ``[r*P, (r+1)*P)`` of it, so ranks of one step see different playlists whenever the
split has at least ``P * world_size`` of them.

Splits come from :func:`spotifai.database.split` with the experiment's ``data`` section (held-out tracks
never reach a batch). The database is read once, in the main process, into a :class:`Plan` of plain data that
the loader workers receive; workers never open the database.

Patch cache (``data.patch_cache``): the log-mel of a whole track is computed once and stored as a float16
``.npy`` file (memory-mapped on read) under ``data.cache_dir``, keyed by the audio settings and the audio
file's absolute path, size and modification time; a random patch is then a slice of it, so after the first
pass no audio is decoded. Files are written to a temporary name and renamed, so a killed run never leaves a
half-written entry. A track that fails to decode gets a small ``.bad`` marker with the reason, so it is not
decoded again either. Several experiments may share one cache folder. Training fills the cache before its first
step, in parallel processes (:func:`spotifai.cache_fill.fill_cache`); a source still computes a missing
entry itself when it meets one.

Tracks that cannot be decoded (:class:`spotifai.audio.AudioError`) or are shorter than a patch are skipped and
counted; a playlist left with fewer than two usable tracks is skipped and counted. Neither stops training.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from spotifai import atomic, audio, database

log = logging.getLogger(__name__)

_CACHE_VERSION = "1"
_SPLIT_CODES = {"train": 1, "validation": 2}
_MIN_USABLE_TRACKS = 2


# ------------------------------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """Everything the loader workers need, as plain picklable data.

    ``train`` / ``validation``: {playlist id: [track ids]} (held-out and too-short tracks removed, playlists
    with fewer than ``min_tracks`` tracks left out); ``tracks``: {track id: (audio path, duration in s)};
    ``heldout_tracks``: ids never sampled; ``short_tracks``: {track id: reason} left out because they are
    shorter than a patch; ``dropped_playlists``: playlist ids left out for having too few usable tracks.
    """

    train: dict[int, list[int]]
    validation: dict[int, list[int]]
    tracks: dict[int, tuple[str, float]]
    heldout_tracks: list[int] = field(default_factory=list)
    short_tracks: dict[int, str] = field(default_factory=dict)
    dropped_playlists: list[int] = field(default_factory=list)


def min_track_seconds(config: audio.AudioConfig) -> float:
    """The shortest track (seconds) that still yields one patch (a patch may be padded by
    ``max_time_padding`` of its length)."""
    return config.patch_seconds * (1.0 - config.max_time_padding)


def build_plan(
    database_path: str | Path,
    audio_config: audio.AudioConfig,
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    heldout_track_fraction: float = 0.2,
    min_tracks: int = 2,
    validation_by: str = "playlists",
) -> Plan:
    """Read the playlist split from the music DB at ``database_path`` into a :class:`Plan`.

    The split is :func:`spotifai.database.split` with the given arguments, so every stage that calls it with
    the experiment's ``data`` section agrees on the held-out tracks. Tracks shorter than one patch are removed
    (and reported in ``short_tracks``); playlists then left with fewer than ``max(2, min_tracks)`` tracks are
    dropped (``dropped_playlists``).
    """
    conn = database.connect(database_path, create=False, readonly=True)
    try:
        sp = database.split(
            conn,
            seed=seed,
            validation_fraction=validation_fraction,
            heldout_track_fraction=heldout_track_fraction,
            min_tracks=min_tracks,
            validation_by=validation_by,
        )
        needed = sorted({t for members in (*sp.train.values(), *sp.validation.values()) for t in members})
        rows = database.tracks(conn, needed, with_audio=True)
    finally:
        conn.close()
    shortest = min_track_seconds(audio_config)
    tracks: dict[int, tuple[str, float]] = {}
    short: dict[int, str] = {}
    for row in rows:
        duration = float(row["duration"] or 0.0)
        if duration < shortest:
            short[row["id"]] = f"{row['audio_path']}: {duration:.2f} s is shorter than one patch ({shortest:.2f} s)"
        else:
            tracks[row["id"]] = (str(row["audio_path"]), duration)
    need = max(_MIN_USABLE_TRACKS, min_tracks)
    dropped: list[int] = []

    def usable(playlists: dict[int, list[int]]) -> dict[int, list[int]]:
        out = {}
        for pid, members in playlists.items():
            kept = [t for t in members if t in tracks]
            if len(kept) >= need:
                out[pid] = kept
            else:
                dropped.append(pid)
        return out

    plan = Plan(
        train=usable(sp.train),
        validation=usable(sp.validation),
        tracks=tracks,
        heldout_tracks=list(sp.heldout_tracks),
        short_tracks=short,
        dropped_playlists=dropped,
    )
    log.info(
        "%s: %d train / %d validation playlists, %d tracks, %d held out, %d too short, %d playlists dropped",
        database_path, len(plan.train), len(plan.validation), len(tracks), len(plan.heldout_tracks),
        len(short), len(dropped),
    )
    return plan


# ------------------------------------------------------------------------------------------ patch sources


def _frames_for(duration: float) -> int:
    """Number of mel frames of a ``duration``-second signal (see :func:`spotifai.audio.n_frames`)."""
    return audio.n_frames(int(round(duration * audio.SAMPLE_RATE)))


def _pad_patch(mel: torch.Tensor, config: audio.AudioConfig, source: str) -> torch.Tensor:
    """The first patch of a mel (n_mels, frames) shorter than a patch, padded like :func:`audio.to_patches`."""
    patches = audio.to_patches(mel, config.patch_frames, config.max_time_padding)
    if patches.shape[0] == 0:
        raise audio.AudioError(source, f"{mel.shape[-1]} mel frames are too few for a {config.patch_frames}-frame patch")
    return patches[0]


class PatchSource:
    """Patches of tracks: ``patch(path, duration, rng) -> (n_mels, patch_frames)`` float32 at a random frame
    offset, or ``patch_at(path, frame)`` at a given one. Decodes a window of the file per patch
    (:func:`spotifai.audio.read_patch`). Raises :class:`spotifai.audio.AudioError` for unusable files."""

    def __init__(self, config: audio.AudioConfig):
        self.config = config

    def n_frames(self, path: str, duration: float) -> int:
        """Mel frames of the track, estimated from its DB duration with 2 frames of margin at the end (the
        same for the cached and the decoding source, so both pick the same offsets)."""
        return max(1, _frames_for(duration) - 2)

    def patch_at(self, path: str, frame: int) -> torch.Tensor:
        offset = frame * audio.HOP_LENGTH / audio.SAMPLE_RATE
        return audio.read_patch(path, offset, self.config).float()

    def patch(self, path: str, duration: float, rng: np.random.Generator) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.patch_array(path, duration, rng), dtype=np.float32))

    def patch_array(self, path: str, duration: float, rng: np.random.Generator) -> np.ndarray:
        """A random patch as an (n_mels, patch_frames) array, possibly a float16 view into the cache (the
        batch copies it once, into its float32 output)."""
        frames = self.n_frames(path, duration)
        start = int(rng.integers(0, max(0, frames - self.config.patch_frames) + 1))
        return self._array_at(path, start)

    def _array_at(self, path: str, frame: int) -> np.ndarray:
        return self.patch_at(path, frame).numpy()


class CachedPatchSource(PatchSource):
    """A :class:`PatchSource` backed by the on-disk log-mel cache in ``cache_dir`` (see the module docstring).

    ``max_open``: memory maps kept open per process (least recently used ones are dropped).
    """

    def __init__(self, config: audio.AudioConfig, cache_dir: str | Path, max_open: int = 2048):
        super().__init__(config)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.max_open = max_open
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()
        self._entries: dict[str, tuple[str, Path, Path]] = {}
        self._logmel: audio.LogMel | None = None
        self.decoded = 0  # tracks decoded by this process (cache misses)

    def key(self, path: str) -> str:
        """Cache key of the audio file ``path``: audio settings + absolute path + size + mtime."""
        p = Path(path).resolve()
        try:
            st = p.stat()
            ident = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            ident = "missing"
        text = "|".join(
            (
                _CACHE_VERSION, str(p), ident, str(self.config.n_mels),
                str(audio.SAMPLE_RATE), str(audio.WIN_LENGTH), str(audio.HOP_LENGTH),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _entry(self, path: str) -> tuple[str, Path, Path]:
        """(key, entry file, bad marker) of ``path`` (looked up once per path and process)."""
        entry = self._entries.get(path)
        if entry is None:
            key = self.key(path)
            entry = self._entries[path] = (key, self.cache_dir / f"{key}.npy", self.cache_dir / f"{key}.bad")
        return entry

    def entry_state(self, path: str) -> tuple[str, str]:
        """``("cached", "")``, ``("bad", reason)`` (failed before) or ``("missing", "")``, without decoding."""
        _, npy, bad = self._entry(path)
        if bad.exists():
            return "bad", str(audio.AudioError(path, self._bad_reason(bad)))
        return ("cached", "") if npy.exists() else ("missing", "")

    @staticmethod
    def _bad_reason(bad: Path) -> str:
        try:
            return bad.read_text(encoding="utf-8").strip() or "failed before (cached)"
        except OSError:
            return "failed before (cached)"

    def compute_entry(self, path: str) -> float:
        """Decode ``path`` and write its entry now, whatever is there; returns its seconds of audio. Raises
        :class:`spotifai.audio.AudioError` (after writing the ``.bad`` marker) for an unusable file."""
        _, npy, bad = self._entry(path)
        return self._write_entry(path, npy, bad) / audio.SAMPLE_RATE

    def mel(self, path: str) -> np.ndarray:
        """The cached whole-track log-mel (n_mels, frames) float16 (memory-mapped), computed on a miss."""
        key, npy, bad = self._entry(path)
        hit = self._open.get(key)
        if hit is not None:
            self._open.move_to_end(key)
            return hit
        if bad.exists():
            raise audio.AudioError(path, self._bad_reason(bad))
        try:
            arr = np.load(npy, mmap_mode="c")  # copy-on-write: torch can wrap it (never written)
        except (FileNotFoundError, ValueError, OSError):
            arr = self._compute(path, npy, bad)
        arr = arr.view(np.ndarray)  # the same memory (kept mapped by .base), without np.memmap's per-slice cost
        self._open[key] = arr
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return arr

    def _compute(self, path: str, npy: Path, bad: Path) -> np.ndarray:
        self._write_entry(path, npy, bad)
        return np.load(npy, mmap_mode="c")

    def _write_entry(self, path: str, npy: Path, bad: Path) -> int:
        """Decode ``path``, write its entry (or its ``.bad`` marker, then raise AudioError); returns the number
        of 16 kHz samples."""
        if self._logmel is None:
            self._logmel = audio.LogMel(self.config.n_mels)
        self.decoded += 1
        try:
            with torch.no_grad():
                wav = audio.load_audio(path)
                if wav.numel() < audio.WIN_LENGTH:
                    raise audio.AudioError(path, f"too short: {wav.numel()} samples")
                mel = self._logmel(wav)
        except audio.AudioError as exc:
            reason = str(exc.reason).encode()
            atomic.write_bytes(bad, reason)
            raise
        data = mel.to(torch.float16).numpy()
        atomic.write_with(npy, lambda fh: np.save(fh, data))
        return wav.numel()

    def patch_at(self, path: str, frame: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self._array_at(path, frame), dtype=np.float32))

    def _array_at(self, path: str, frame: int) -> np.ndarray:
        mel = self.mel(path)
        T = self.config.patch_frames
        frame = max(0, min(frame, mel.shape[-1] - T))  # the DB duration may overstate the audio slightly
        window = mel[:, frame : frame + T]
        if window.shape[-1] < T:
            window = _pad_patch(torch.from_numpy(np.array(window, dtype=np.float32)), self.config, path).numpy()
        return window


def make_source(config: audio.AudioConfig, cache_dir: str | Path | None) -> PatchSource:
    """A cached source when ``cache_dir`` is given, else a decoding one."""
    return CachedPatchSource(config, cache_dir) if cache_dir is not None else PatchSource(config)


# ----------------------------------------------------------------------------------------------- batches


class BatchMaker:
    """Makes the batches of one split for one rank (see the module docstring for the sampling rule).

    ``playlists``: {playlist id: [track ids]}; ``tracks``: {track id: (path, duration)};
    ``buffer_size`` = P playlists, ``batch_size`` = K patches per playlist (even, >= 2).
    A playlist split with fewer than P playlists gives batches of all of them. ``dtype``: of ``mel_a`` /
    ``mel_b``, torch.float32 or torch.float16 (exact only for cached patches, which are float16 already).
    """

    def __init__(
        self,
        playlists: dict[int, list[int]],
        tracks: dict[int, tuple[str, float]],
        config: audio.AudioConfig,
        *,
        buffer_size: int,
        batch_size: int,
        seed: int = 0,
        split: str = "train",
        rank: int = 0,
        world_size: int = 1,
        cache_dir: str | Path | None = None,
        same_track_views: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch_size must be even and >= 2, got {batch_size}")
        if not playlists:
            raise ValueError(f"no {split} playlists to sample from")
        self.pids = sorted(playlists)
        self.playlists = {pid: list(playlists[pid]) for pid in self.pids}
        self.tracks = tracks
        self.config = config
        self.P = min(buffer_size, len(self.pids))
        self.K = batch_size
        self.seed = int(seed)
        self.split_code = _SPLIT_CODES[split]
        self.split = split
        self.rank = rank
        self.world_size = world_size
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.same_track_views = bool(same_track_views)
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
        self.dtype = dtype
        self._source: PatchSource | None = None
        self.bad_tracks: dict[int, str] = {}
        self.bad_playlists: set[int] = set()

    @property
    def source(self) -> PatchSource:
        if self._source is None:  # created lazily: once per worker process
            self._source = make_source(self.config, self.cache_dir)
        return self._source

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def _track_patch(self, tid: int, rng: np.random.Generator, new_bad: list) -> np.ndarray | None:
        path, duration = self.tracks[tid]
        try:
            return self.source.patch_array(path, duration, rng)
        except audio.AudioError as exc:
            self.bad_tracks[tid] = str(exc)
            new_bad.append((tid, str(exc)))
            return None

    def _playlist_patches(
        self, pid: int, rng: np.random.Generator, new_bad: list
    ) -> list[tuple[int, np.ndarray]] | None:
        """K (track id, patch) of playlist ``pid``, or None if it has too few usable tracks.

        Default: K distinct tracks where possible, one patch each. ``same_track_views``: K/2 distinct tracks
        where possible, two patches each, ordered ``[first patches..., second patches...]`` so that the halves
        (the two views) hold the same tracks in the same order."""
        usable = [t for t in self.playlists[pid] if t not in self.bad_tracks]
        if len(usable) < _MIN_USABLE_TRACKS:
            return None
        n_tracks = self.K // 2 if self.same_track_views else self.K
        cuts = 2 if self.same_track_views else 1
        order = list(rng.permutation(len(usable)))
        picks = order[:n_tracks]
        while len(picks) < n_tracks:  # short playlist: every track once, then with replacement
            picks.append(int(rng.integers(len(usable))))
        chosen = [usable[i] for i in picks]
        spare = [usable[i] for i in order[n_tracks:]]
        out: list[list[tuple[int, np.ndarray]]] = []
        for tid in chosen:
            patches = self._track_patches(tid, cuts, rng, new_bad)
            while patches is None:  # replace a failed track by an unused one, else any usable one
                usable = [t for t in usable if t not in self.bad_tracks]
                if len(usable) < _MIN_USABLE_TRACKS:
                    return None
                spare = [t for t in spare if t not in self.bad_tracks]
                tid = spare.pop() if spare else usable[int(rng.integers(len(usable)))]
                patches = self._track_patches(tid, cuts, rng, new_bad)
            out.append([(tid, p) for p in patches])
        return [track[cut] for cut in range(cuts) for track in out]

    def _track_patches(
        self, tid: int, cuts: int, rng: np.random.Generator, new_bad: list
    ) -> list[np.ndarray] | None:
        """``cuts`` patches of track ``tid`` at independent random offsets, or None if any of them fails."""
        patches = []
        for _ in range(cuts):
            patch = self._track_patch(tid, rng, new_bad)
            if patch is None:
                return None
            patches.append(patch)
        return patches

    def _stack(self, rows: list[tuple[int, np.ndarray]]) -> torch.Tensor:
        shape = (len(rows), self.config.n_mels, self.config.patch_frames)
        if get_worker_info() is not None:
            # in a DataLoader worker: allocate in shared memory, so sending the batch to the main process moves
            # a handle instead of copying the whole tensor again (what torch's default_collate does)
            elem = torch.empty(0, dtype=self.dtype)
            out = elem.new(elem._typed_storage()._new_shared(math.prod(shape))).view(shape)
        else:
            out = torch.empty(shape, dtype=self.dtype)
        view = out.numpy()
        for i, (_, patch) in enumerate(rows):
            np.copyto(view[i], patch)  # one (vectorized) copy: float16 cache -> dtype
        return out

    def batch(self, step: int) -> dict:
        """The batch of ``step`` for this rank."""
        shared = np.random.default_rng([self.seed, self.split_code, step])
        order = shared.permutation(len(self.pids))
        rng = np.random.default_rng([self.seed, self.split_code, step, 1 + self.rank])
        n = len(order)
        start = self.rank * self.P
        candidates = [self.pids[order[(start + i) % n]] for i in range(n)]
        new_bad: list[tuple[int, str]] = []
        new_bad_playlists: list[int] = []
        groups_patches: list[list[tuple[int, np.ndarray]]] = []
        chosen_pids: list[int] = []
        for pid in candidates:
            if len(groups_patches) == self.P:
                break
            if pid in self.bad_playlists:
                continue
            patches = self._playlist_patches(pid, rng, new_bad)
            if patches is None:
                self.bad_playlists.add(pid)
                new_bad_playlists.append(pid)
                continue
            groups_patches.append(patches)
            chosen_pids.append(pid)
        if not groups_patches:
            raise RuntimeError(
                f"no usable {self.split} playlists left: {len(self.bad_tracks)} tracks failed to decode, "
                f"{len(self.bad_playlists)} playlists have fewer than {_MIN_USABLE_TRACKS} usable tracks"
            )
        while len(groups_patches) < self.P:  # bad playlists shrank the pool below P: reuse (rare)
            pid = candidates[int(rng.integers(n))]
            if pid not in self.bad_playlists:
                patches = self._playlist_patches(pid, rng, new_bad)
                if patches is not None:
                    groups_patches.append(patches)
                    chosen_pids.append(pid)
        half = self.K // 2
        view_a = [item for patches in groups_patches for item in patches[:half]]
        view_b = [item for patches in groups_patches for item in patches[half:]]
        return {
            "mel_a": self._stack(view_a),
            "mel_b": self._stack(view_b),
            "groups": torch.arange(len(groups_patches), dtype=torch.int64).repeat_interleave(half),
            "tracks_a": torch.tensor([tid for tid, _ in view_a], dtype=torch.int64),
            "tracks_b": torch.tensor([tid for tid, _ in view_b], dtype=torch.int64),
            "playlists": torch.tensor(chosen_pids, dtype=torch.int64),
            "step": int(step),
            "skipped_tracks": new_bad,
            "skipped_playlists": new_bad_playlists,
        }


class BatchStream(IterableDataset):
    """The batches of steps ``start .. stop-1`` in step order (``stop=None``: endless), as an
    IterableDataset: with ``W`` DataLoader workers, worker ``w`` makes the steps ``start + w + j*W`` and the
    DataLoader's round robin returns them in order."""

    def __init__(self, maker: BatchMaker, start: int, stop: int | None = None):
        self.maker = maker
        self.start = start
        self.stop = stop

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nworkers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        step = self.start + wid
        while self.stop is None or step < self.stop:
            yield self.maker.batch(step)
            step += nworkers


def make_loader(
    maker: BatchMaker, start: int, stop: int | None = None, *, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over :class:`BatchStream` (batches are made whole by the dataset: ``batch_size=None``).
    ``num_workers=0`` makes batches in the calling process."""
    kwargs = {"prefetch_factor": 4, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(
        BatchStream(maker, start, stop), batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs
    )


def prefetch_to_device(batches, device: torch.device):
    """The batches of ``batches`` with their tensors on the CUDA ``device``, each copied (non-blocking, from the
    loader's pinned memory, on a side stream) while the previous step runs."""
    stream = torch.cuda.Stream(device)
    keys = ("mel_a", "mel_b", "groups")

    def upload(batch: dict) -> dict:
        with torch.cuda.stream(stream):
            return {**batch, **{k: batch[k].to(device, non_blocking=True) for k in keys}}

    it = iter(batches)
    nxt = next(it, None)
    nxt = None if nxt is None else upload(nxt)
    while nxt is not None:
        current = torch.cuda.current_stream(device)
        current.wait_stream(stream)
        for k in keys:
            nxt[k].record_stream(current)  # the copy's memory belongs to the compute stream from here on
        batch, nxt = nxt, next(it, None)
        nxt = None if nxt is None else upload(nxt)
        yield batch
