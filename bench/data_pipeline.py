"""The training data path alone (no model): patches/s per loader worker process and per worker CPU-second.

    .venv/bin/python bench/data_pipeline.py [--corpus data/demo] [--preset full] [--workers 1,2] [--steps 12]

Builds the config of ``--preset`` (default ``full``: 80 mels x 1024 frames, 24 playlists x 32 patches = 768
patches per step) for the demo corpus's music DB (built first when missing), fills the patch cache (a
persistent folder, ``--cache-dir``, so a second run starts warm; the fill is reported, not measured), then for
each worker count ``W`` iterates the loader the trainer uses (:func:`spotifai.train.batch_maker` +
:func:`spotifai.sampling.make_loader`, ``pin_memory`` as on the device) over ``W`` warm-up + ``--steps`` steps.

What is measured, per ``W``:

* ``patches_per_s``: patches delivered to the main process per wall second after the warm-up (both views);
  ``patches_per_s_per_worker`` = that / W;
* ``patches_per_worker_cpu_s``: patches per CPU-second of the worker processes in steady state. Each batch
  carries its worker's cumulative process CPU time (user + system, ``time.process_time`` in the worker) taken
  when the worker *starts* making it, so the difference between two of a worker's batches is everything the
  worker spent on the batches between them: sampling, slicing the cache, filling the output tensor, pickling
  and moving it into shared memory. A worker's first batch (opening the cache files) is left out;
* ``worker_cpu_s_per_step`` and ``main_cpu_s_per_step`` (the main process's CPU per received batch: unpickling,
  mapping shared memory, pinning when ``--pin``);
* ``batch_mb``: bytes of one step's patches as delivered (dtype ``batch_dtype``).

Wall-clock figures depend on what else runs on the machine (``load_average`` is printed); the CPU-second figure
is the one to compare across machines and runs. Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spotifai import cache_fill, sampling, train  # noqa: E402
from spotifai import experiment as experiments  # noqa: E402
from spotifai.audio import AudioConfig  # noqa: E402


class _TimedMaker:
    """A batch maker that stamps each batch with its worker's pid and cumulative CPU seconds at its start."""

    def __init__(self, maker):
        self.maker = maker

    def __getattr__(self, name):
        return getattr(self.maker, name)

    def batch(self, step: int) -> dict:
        c0 = time.process_time()
        out = self.maker.batch(step)
        out["bench_cpu_start"] = c0
        out["bench_pid"] = os.getpid()
        return out


def prepare(db: Path, preset: str, cache_dir: Path, work: Path, overrides: dict | None = None) -> tuple:
    """(config, plan, experiment folder, fill summary) of ``preset`` on ``db`` with its cache filled."""
    base = experiments.preset_config(preset, db, overrides=overrides)
    base["data"]["cache_dir"] = str(cache_dir.resolve())
    cfg = experiments.validate_config(base)
    experiment = work / "exp"
    plan = train.check_data(experiment, train.create_experiment(experiment, cfg))
    fill = cache_fill.fill_cache(plan, AudioConfig.from_dict(cfg["data"]["audio"]), cache_dir.resolve(),
                                 progress=False)
    return cfg, plan, experiment, fill


def measure_loader(experiment: Path, cfg: dict, plan, workers: int, steps: int, *, pin_memory: bool = False,
                   warmup: int | None = None) -> dict:
    """Loader-alone figures for ``workers`` processes (see the module docstring)."""
    maker = _TimedMaker(train.batch_maker(experiment, cfg, plan, "train"))
    warmup = max(1, workers) if warmup is None else warmup
    total = warmup + steps
    loader = sampling.make_loader(maker, 1, 1 + total, num_workers=workers, pin_memory=pin_memory)
    stamps: dict[int, list[tuple[int, float]]] = {}
    patches_per_step = 0
    batch_bytes, dtype = 0, None
    t_start = m_start = None
    it = iter(loader)
    try:
        for i, batch in enumerate(it):
            if i == warmup:
                t_start, m_start = time.perf_counter(), time.process_time()
            stamps.setdefault(batch["bench_pid"], []).append((batch["step"], batch["bench_cpu_start"]))
            patches_per_step = batch["mel_a"].shape[0] + batch["mel_b"].shape[0]
            batch_bytes = batch["mel_a"].nbytes + batch["mel_b"].nbytes
            dtype = str(batch["mel_a"].dtype).replace("torch.", "")
            del batch
        wall = time.perf_counter() - t_start
        main_cpu = time.process_time() - m_start
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    counted, cpu = 0, 0.0
    for rows in stamps.values():
        rows.sort()
        if len(rows) >= 3:  # from the start of the worker's 2nd batch to the start of its last one
            counted += len(rows) - 2
            cpu += rows[-1][1] - rows[1][1]
    counted_patches = counted * patches_per_step
    rate = steps * patches_per_step / wall
    return {
        "workers": workers,
        "steps": steps,
        "patches_per_s": round(rate, 1),
        "patches_per_s_per_worker": round(rate / max(1, workers), 1),
        "patches_per_worker_cpu_s": round(counted_patches / cpu, 1) if cpu > 0 else None,
        "worker_cpu_s_per_step": round(cpu / counted, 4) if counted else None,
        "main_cpu_s_per_step": round(main_cpu / steps, 4),
        "batch_mb": round(batch_bytes / 1e6, 1),
        "batch_dtype": dtype,
        "patches_per_step": patches_per_step,
    }


def corpus_db(corpus: Path, workers: int | None = None) -> Path:
    """The demo corpus's music DB, building the corpus first when missing."""
    db = corpus / "music.db"
    if not (corpus / "corpus.json").exists():
        from spotifai.demo_corpus import build_demo_corpus

        build_demo_corpus(corpus, workers=workers)
    return db


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "demo", help="demo corpus folder")
    parser.add_argument("--database", type=Path, default=None, help="any music DB (default: the corpus's)")
    parser.add_argument("--preset", default="full", choices=sorted(experiments.PRESETS))
    parser.add_argument("--workers", default="1,2", help="comma-separated loader worker counts")
    parser.add_argument("--steps", type=int, default=12, help="measured steps per worker count")
    parser.add_argument("--pin", action="store_true", help="pin_memory=True (as on CUDA)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "spotifai_bench_cache",
                        help="patch cache (kept between runs; entries are keyed per file and mel size)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    db = args.database or corpus_db(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        cfg, plan, experiment, fill = prepare(db, args.preset, args.cache_dir, work)
        runs = [measure_loader(experiment, cfg, plan, int(w), args.steps, pin_memory=args.pin)
                for w in args.workers.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t, a = cfg["training"], cfg["data"]["audio"]
    print(json.dumps({
        "bench": "data_pipeline",
        "database": str(db),
        "preset": args.preset,
        "config": {"n_mels": a["n_mels"], "patch_frames": a["patch_frames"], "playlists_per_step": t["playlists_per_step"],
                   "patches_per_playlist": t["patches_per_playlist"], "pin_memory": args.pin},
        "cache_fill": {"tracks": fill["tracks"], "decoded": fill["decoded"], "seconds": round(fill["seconds"], 1)},
        "runs": runs,
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
