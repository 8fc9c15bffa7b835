"""Filling the patch cache before training: every track of a plan decoded once, on all cores.

:func:`fill_cache` looks up the cache entry of every track of a
:class:`~spotifai.sampling.Plan`'s train and validation playlists, skips those already there (a ``.npy`` entry,
or a ``.bad`` marker of a track that failed before), and computes the rest in a pool of worker processes, one per
CPU, each on one torch thread and one decoder thread, longest tracks first. Each worker writes its own
entries through :mod:`spotifai.atomic` (a temporary file renamed over the target), so a killed fill leaves whole
entries and at most hidden ``.tmp`` files, and a new fill computes only what is missing. A track that cannot be
decoded gets its ``.bad`` marker (training then skips it without decoding it again) and is counted in
``failed``; nothing that goes wrong with one track stops the fill. A worker process that dies (a decoder crash,
the out-of-memory killer) breaks the pool: it is restarted, the tracks that were in flight are retried one at a
time, and a track in flight at two such deaths is recorded as failed.

Workers are forked on Linux, as the DataLoader's are: they start in milliseconds with torch (and torchcodec,
imported first when long OGG files are to be decoded) already loaded, and a script that trains at its top level
without a ``__main__`` guard does not start itself again in each worker, as it would under ``spawn`` (used
elsewhere). A worker touches no CUDA, process group or thread of the parent. Small jobs stay in the calling
process: with ``workers=None`` the pool gets at most one worker per :data:`MIN_AUDIO_SECONDS_PER_WORKER` of
audio to decode.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from spotifai import audio, sampling

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS_PER_WORKER = 600.0
"""With ``workers=None``: at most one worker process per this much audio (seconds) to decode."""
_MAX_DEATHS = 2  # a track in flight at this many worker deaths is recorded as failed

_worker_source: sampling.CachedPatchSource | None = None


def available_cpus() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity`` where it exists, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(config: dict, cache_dir: str) -> None:
    """Pool initializer: one torch thread and one decoder thread (the pool already uses every core)."""
    global _worker_source
    torch.set_num_threads(1)
    audio.DECODE_THREADS = 1
    _worker_source = sampling.CachedPatchSource(audio.AudioConfig.from_dict(config), cache_dir)


def _compute(source: sampling.CachedPatchSource, path: str) -> tuple[str | None, float, float]:
    """Compute the entry of ``path``: (failure reason or None, audio seconds, CPU seconds of this process)."""
    c0 = time.process_time()
    try:
        seconds = source.compute_entry(path)
        return None, seconds, time.process_time() - c0
    except audio.AudioError as exc:
        return str(exc), 0.0, time.process_time() - c0
    except Exception as exc:  # noqa: BLE001 - one track never stops the fill; not marked .bad (may be transient)
        log.warning("%s: %s: %s", path, type(exc).__name__, exc)
        return f"{path}: {type(exc).__name__}: {exc}", 0.0, time.process_time() - c0


def _work(path: str) -> tuple[str | None, float, float]:
    assert _worker_source is not None, "worker not initialized"
    with torch.no_grad():
        return _compute(_worker_source, path)


def _pool_size(workers: int | None, todo_seconds: float, n_todo: int) -> int:
    if workers is None:
        workers = min(available_cpus(), max(1, math.ceil(todo_seconds / MIN_AUDIO_SECONDS_PER_WORKER)))
    return max(0, min(int(workers), n_todo))


def fill_cache(
    plan: sampling.Plan,
    config: audio.AudioConfig,
    cache_dir: str | Path,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Compute the cache entry of every train and validation track of ``plan`` that the cache in ``cache_dir``
    lacks, in parallel (see the module docstring).

    ``workers``: worker processes (None: one per available CPU, fewer for small jobs; 0 or 1: in this process).
    ``progress``: a tqdm bar over the tracks to decode. Returns ``{"tracks": train + validation tracks,
    "cached": already there, "decoded": tracks decoded now, "failed": {track id: reason} (now or before),
    "seconds": wall seconds, "audio_seconds": audio decoded now, "cpu_seconds": CPU seconds spent decoding,
    "workers": processes used (1 = in this process)}``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    cache_dir = Path(cache_dir)
    source = sampling.CachedPatchSource(config, cache_dir)
    ids = sorted({t for members in (*plan.train.values(), *plan.validation.values()) for t in members})
    failed: dict[int, str] = {}
    todo: list[tuple[int, str, float]] = []
    for tid in ids:
        path, duration = plan.tracks[tid]
        state, reason = source.entry_state(path)
        if state == "bad":
            failed[tid] = reason
        elif state == "missing":
            todo.append((tid, path, float(duration)))
    todo.sort(key=lambda item: (-item[2], item[0]))  # longest first: the pool's last tracks are short
    n_workers = _pool_size(workers, sum(item[2] for item in todo), len(todo))
    summary = {"tracks": len(ids), "cached": len(ids) - len(todo) - len(failed), "decoded": len(todo),
               "failed": failed, "audio_seconds": 0.0, "cpu_seconds": 0.0, "workers": max(1, n_workers)}
    bar = tqdm(total=len(todo), desc="patch cache", unit="track", disable=not progress or not todo)

    def done(tid: int, result: tuple[str | None, float, float]) -> None:
        reason, seconds, cpu = result
        if reason is not None:
            failed[tid] = reason
        summary["audio_seconds"] += seconds
        summary["cpu_seconds"] += cpu
        bar.update(1)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(failed=len(failed), x_real_time=f"{summary['audio_seconds'] / max(elapsed, 1e-9):.0f}",
                        refresh=False)

    try:
        if n_workers <= 1:  # on one torch thread: a second one costs 3-5x the CPU on a busy machine (measured)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    for tid, path, _ in todo:
                        done(tid, _compute(source, path))
            finally:
                torch.set_num_threads(threads)
        else:
            _run_pool(todo, n_workers, config, cache_dir, done)
    finally:
        bar.close()
    summary["seconds"] = time.perf_counter() - t0
    if todo:
        s = summary
        log.info(
            "patch cache %s: %d tracks, %d already cached, %d decoded (%.2f h of audio) in %.1f s by %d "
            "process(es): %.0fx real time, %.0fx per CPU-second; %d failed",
            cache_dir, s["tracks"], s["cached"], s["decoded"], s["audio_seconds"] / 3600, s["seconds"],
            s["workers"], s["audio_seconds"] / max(s["seconds"], 1e-9),
            s["audio_seconds"] / max(s["cpu_seconds"], 1e-9), len(failed),
        )
    return summary


def _run_pool(todo, n_workers: int, config: audio.AudioConfig, cache_dir: Path, done) -> None:
    """Run ``todo`` [(track id, path, duration)] on a pool of processes; ``done(track id, result)`` is
    called in this process for each track.

    At most ``n_workers`` tracks are in flight, so when a worker dies (the pool breaks) the suspects are known:
    the tracks then in flight. The pool is restarted and runs the suspects one at a time first; a track in
    flight at :data:`_MAX_DEATHS` deaths is recorded as failed (without a ``.bad`` marker: a crash may be
    transient)."""
    queue = deque(todo)
    suspects: deque = deque()
    deaths: dict[int, int] = {}
    fork = sys.platform.startswith("linux")
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    if fork and any(Path(path).suffix.lower() in (".ogg", ".oga") and duration >= audio.WHOLE_FILE_FFMPEG_MIN_SECONDS
                    for _, path, duration in todo):  # see audio.WHOLE_FILE_FFMPEG_SUBTYPES
        import torchcodec.decoders  # noqa: F401 - once here instead of once per worker (1.5-3 s of CPU each)
    while queue or suspects:
        inflight: dict = {}
        lost: list = []
        with ProcessPoolExecutor(
            max_workers=n_workers, mp_context=ctx, initializer=_init_worker,
            initargs=(config.to_dict(), str(cache_dir)),
        ) as pool:
            try:
                while (queue or suspects or inflight) and not lost:
                    if suspects:  # alone, so that a death names its track
                        if not inflight:
                            item = suspects.popleft()
                            inflight[pool.submit(_work, item[1])] = item
                    else:
                        while queue and len(inflight) < n_workers:
                            item = queue.popleft()
                            inflight[pool.submit(_work, item[1])] = item
                    finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        item = inflight.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            lost.append(item)
                        else:
                            done(item[0], result)
            except BaseException:
                for future in inflight:
                    future.cancel()
                raise
        for future, item in inflight.items():  # the pool broke: what was still in flight is lost with it
            if future.done() and future.exception() is None:
                done(item[0], future.result())
            else:
                lost.append(item)
        for item in sorted(lost, key=lambda it: (-it[2], it[0])):
            tid = item[0]
            deaths[tid] = deaths.get(tid, 0) + 1
            if deaths[tid] >= _MAX_DEATHS:
                log.warning("%s: a worker process died while decoding it, %d times; skipped", item[1], deaths[tid])
                done(tid, (f"{item[1]}: the decoding process died ({deaths[tid]} times)", 0.0, 0.0))
            else:
                suspects.append(item)
        if lost:
            log.warning("patch cache: a worker process died with %d track(s) in flight; restarting the pool",
                        len(lost))
