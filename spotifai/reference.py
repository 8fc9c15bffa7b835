"""Off-the-shelf reference for ``evaluate``: musicnn's pretrained MSD model, one vector per track.

musicnn 0.1.0 (MSD_musicnn, the 200-unit penultimate layer, mean over the 3 s windows of each track's first
120 s) needs tensorflow-cpu 2.15 and numpy 1.26, which cannot share the project's venv, so it lives in a
venv of its own (``bash scripts/install_musicnn.sh`` → ``.venv-musicnn/``; its weights ship inside the
musicnn wheel, nothing is downloaded at run time) and runs as the worker script
``spotifai/reference_musicnn.py`` (see its docstring for the exact computation), by subprocess, in chunks.
Nothing here imports tensorflow.

The musicnn python is, in order: the ``python`` argument, ``$SPOTIFAI_MUSICNN_PYTHON``, or
``.venv-musicnn/bin/python`` in the checkout that holds this package. Vectors are cached in an npz keyed by
(real path, size, modification time): a changed file is embedded again (its old entry dropped), a failed
one is retried on the next call (failures are not cached). The venv is only needed when something is not in the cache.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from spotifai import atomic

log = logging.getLogger(__name__)

MODEL = "MSD_musicnn"
LAYER = "penultimate"
SECONDS = 120.0
DIM = 200
ENV_PYTHON = "SPOTIFAI_MUSICNN_PYTHON"
SETUP = "bash scripts/install_musicnn.sh"
REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().with_name("reference_musicnn.py")
DEFAULT_PYTHON = REPO / ".venv-musicnn" / "bin" / "python"

Key = tuple[str, int, int]


class MusicnnUnavailable(RuntimeError):
    """The musicnn venv is not installed (or lacks tensorflow/librosa/musicnn)."""


def musicnn_python(python: str | os.PathLike | None = None) -> Path:
    """The musicnn venv's python: ``python``, else $SPOTIFAI_MUSICNN_PYTHON, else .venv-musicnn/bin/python
    of this checkout. Raises :class:`MusicnnUnavailable`, naming the set-up script, when it is not there."""
    if python:
        candidate, source = Path(python), "the python argument"
    elif os.environ.get(ENV_PYTHON):
        candidate, source = Path(os.environ[ENV_PYTHON]), f"${ENV_PYTHON}"
    else:
        candidate, source = DEFAULT_PYTHON, "the default"
    # absolute, but not resolved: a venv's python is a symlink, and resolving it would leave the venv
    candidate = Path(os.path.abspath(candidate))
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise MusicnnUnavailable(
            f"the musicnn venv is not installed: no python at {candidate} ({source}). Set it up with "
            f"`{SETUP}` (run in {REPO}; creates {DEFAULT_PYTHON.parent.parent}), or point ${ENV_PYTHON} "
            "at the python of a venv with musicnn==0.1.0 and tensorflow-cpu==2.15.1.")
    return candidate


def file_key(path: str | os.PathLike) -> Key:
    """Cache key of an audio file: (real path, size in bytes, modification time in ns). Raises OSError."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, int(st.st_size), int(st.st_mtime_ns)


def _meta_matches(meta: dict) -> bool:
    return (meta.get("model"), meta.get("layer"), float(meta.get("seconds", -1)), meta.get("dim")) == (
        MODEL, LAYER, SECONDS, DIM)


def load_cache(cache: str | os.PathLike) -> tuple[dict[Key, np.ndarray], dict]:
    """{key: vector} and the worker's metadata from a cache npz; empty when absent, unreadable or for
    another model/layer/duration (with a warning: it is then rewritten, not trusted)."""
    if not os.path.exists(cache):
        return {}, {}
    try:
        with np.load(cache, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keys = zip(z["paths"].tolist(), z["sizes"].tolist(), z["mtimes"].tolist(), strict=True)
            entries = dict(zip(keys, z["vectors"].astype(np.float32), strict=True))
    except Exception as exc:  # a truncated or foreign file: recompute rather than fail the evaluation
        log.warning("musicnn cache %s unreadable (%s: %s): ignored", cache, type(exc).__name__, exc)
        return {}, {}
    if not _meta_matches(meta):
        log.warning("musicnn cache %s is for %s: ignored", cache,
                    {k: meta.get(k) for k in ("model", "layer", "seconds", "dim")})
        return {}, {}
    return entries, meta


def save_cache(cache: str | os.PathLike, entries: dict[Key, np.ndarray], meta: dict) -> None:
    """Write the cache npz atomically (:mod:`spotifai.atomic`)."""
    keys = list(entries)
    atomic.write_with(cache, lambda f: np.savez(
        f, paths=np.array([k[0] for k in keys], dtype=str),
        sizes=np.array([k[1] for k in keys], dtype=np.int64),
        mtimes=np.array([k[2] for k in keys], dtype=np.int64),
        vectors=np.stack([entries[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, DIM), np.float32),
        meta=np.array(json.dumps(meta))))


def _run_worker(python: Path, paths: Sequence[str], workdir: Path) -> tuple[dict, dict, dict]:
    """One worker call: ({path: vector}, {path: reason}, meta)."""
    listing, output = workdir / "paths.json", workdir / "vectors.npz"
    listing.write_text(json.dumps(list(paths)), encoding="utf-8")
    output.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # -I: isolated (no PYTHON* variables, no user site, and not the script's folder, spotifai/, on sys.path)
    cmd = [str(python), "-I", str(WORKER), "--input", str(listing), "--output", str(output),
           "--model", MODEL, "--seconds", str(SECONDS), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode == 3:
        raise MusicnnUnavailable(f"{python} lacks musicnn's packages ({proc.stderr.strip()[-500:]}); "
                                 f"set the venv up with `{SETUP}`")
    if proc.returncode != 0 or not output.exists():
        raise RuntimeError(f"musicnn worker failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stderr.strip()[-2000:]}")
    with np.load(output, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        vectors = z["vectors"].astype(np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != DIM or not _meta_matches(meta):
            raise RuntimeError(f"musicnn worker returned {vectors.shape} vectors for {meta}; expected "
                               f"{MODEL} {LAYER}, {DIM}-d, {SECONDS:g} s")
        done = dict(zip(z["paths"].tolist(), vectors, strict=True))
        failed = dict(zip(z["failed_paths"].tolist(), z["failed_reasons"].tolist(), strict=True))
    return done, failed, meta


def musicnn_vectors(
    paths: Iterable[str | os.PathLike],
    python: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    *,
    chunk: int = 64,
) -> tuple[np.ndarray, dict]:
    """musicnn MSD penultimate-layer vectors of ``paths``: ((N, 200) float32, NaN rows where a track failed;
    info). ``python``: the musicnn venv's interpreter (see :func:`musicnn_python`); ``cache``: an npz to read
    and update (after every chunk of ``chunk`` tracks, so an interrupted run keeps its progress).

    info: model, layer, seconds, dim, python, cache, counts (cached; computed: sent to the worker), failed ([(path, reason)]),
    time_s and the worker's metadata (package versions). Raises :class:`MusicnnUnavailable` when tracks
    need computing and the venv is not installed; RuntimeError when the worker itself fails (e.g. its
    checkpoint does not load)."""
    start = time.perf_counter()
    paths = [os.fspath(p) for p in paths]
    vectors = np.full((len(paths), DIM), np.nan, dtype=np.float32)
    keys: list[Key | None] = []
    reasons: dict[str, str] = {}  # real path -> why it failed
    for p in paths:
        try:
            keys.append(file_key(p))
        except OSError as exc:
            keys.append(None)
            reasons[os.path.realpath(p)] = f"{type(exc).__name__}: {exc}"
    entries, meta = load_cache(cache) if cache is not None else ({}, {})
    latest = {k[0]: k for k in keys if k is not None}
    stale = [k for k in entries if k[0] in latest and k != latest[k[0]]]  # older versions of these files
    for k in stale:
        del entries[k]
    todo = list(dict.fromkeys(k for k in keys if k is not None and k not in entries))
    n_cached = sum(k is not None and k in entries for k in keys)
    exe = None
    if todo:
        exe = musicnn_python(python)
        log.info("musicnn: embedding %d tracks (%d cached) with %s", len(todo), n_cached, exe)
        by_path = {k[0]: k for k in todo}
        with tempfile.TemporaryDirectory(prefix="spotifai-musicnn-") as tmp:
            for i in range(0, len(todo), max(1, chunk)):
                part = [k[0] for k in todo[i:i + max(1, chunk)]]
                done, failed, meta = _run_worker(exe, part, Path(tmp))
                entries.update({by_path[p]: v for p, v in done.items() if p in by_path})
                reasons.update(failed)
                reasons.update({p: "not returned by the musicnn worker" for p in part
                                if p not in done and p not in failed})
                if cache is not None:
                    save_cache(cache, entries, meta)
                n, elapsed = min(i + len(part), len(todo)), time.perf_counter() - start
                log.info("musicnn: %d/%d tracks, %d failed, %.0f s, about %.0f s left", n, len(todo),
                         sum(k[0] in reasons for k in todo[:n]), elapsed, elapsed / n * (len(todo) - n))
    if stale and not todo and cache is not None:
        save_cache(cache, entries, meta)
    failed_list = []
    for row, (p, k) in enumerate(zip(paths, keys, strict=True)):
        if k is not None and k in entries:
            vectors[row] = entries[k]
        else:
            failed_list.append((p, reasons.get(k[0] if k else os.path.realpath(p), "not embedded")))
    info = {"model": MODEL, "layer": LAYER, "seconds": SECONDS, "dim": DIM, "pooling": "mean over 3 s windows",
            "python": str(exe) if exe else None, "cache": os.fspath(cache) if cache is not None else None,
            "cached": n_cached, "computed": len(todo), "failed": failed_list,
            "time_s": time.perf_counter() - start, "meta": meta}
    if failed_list:
        log.warning("musicnn: %d of %d tracks failed, e.g. %s: %s", len(failed_list), len(paths),
                    *failed_list[0])
    return vectors, info
