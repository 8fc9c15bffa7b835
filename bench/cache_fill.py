"""Filling the patch cache from cold: whole tracks decoded to float16 log-mel entries, by a pool of processes.

    .venv/bin/python bench/cache_fill.py [--database data/real/music.db] [--workers 1 2] [--limit N]

The tracks are those training would fill (the train and validation tracks of the demo config's split of the
database; ``--limit N``: the first N of them by id); each ``--workers`` value fills a fresh temporary cache with
:func:`spotifai.cache_fill.fill_cache` (1 = in this process). Reported per run: wall seconds, audio hours, x real
time in total (audio seconds / wall seconds), per worker (total / workers) and per CPU-second (audio seconds /
CPU seconds the workers spent decoding, which does not count their start-up); the load average is printed next
to them because the machine may be shared. Target: >= 1,000x real time per core for whole tracks.
Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spotifai import cache_fill, sampling  # noqa: E402
from spotifai import experiment as experiments  # noqa: E402
from spotifai.audio import AudioConfig  # noqa: E402


def plan_for(database: Path, limit: int | None) -> tuple[sampling.Plan, AudioConfig]:
    """The plan training would use for ``database`` (demo config), cut to its first ``limit`` tracks."""
    data = experiments.as_config(experiments.demo_config(database)).data
    audio_cfg = data.audio
    plan = sampling.build_plan(database, audio_cfg, **data.split_arguments)
    if limit is not None:
        keep = set(sorted({t for m in (*plan.train.values(), *plan.validation.values()) for t in m})[:limit])
        plan.train = {p: [t for t in m if t in keep] for p, m in plan.train.items()}
        plan.validation = {p: [t for t in m if t in keep] for p, m in plan.validation.items()}
    return plan, audio_cfg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=ROOT / "data" / "real" / "music.db", help="music DB")
    parser.add_argument("--workers", type=int, nargs="+", default=[cache_fill.available_cpus()],
                        help="pool sizes to run, each on a fresh cache (1 = in this process)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N tracks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    plan, audio_cfg = plan_for(args.database, args.limit)
    runs = []
    for workers in args.workers:
        work = Path(tempfile.mkdtemp(prefix="bench_fill_"))
        try:
            load0 = os.getloadavg()[0]
            s = cache_fill.fill_cache(plan, audio_cfg, work / "cache", progress=False, workers=workers)
            size = sum(f.stat().st_size for f in (work / "cache").glob("*.npy"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        total = s["audio_seconds"] / s["seconds"]
        runs.append({
            "workers": s["workers"],
            "tracks": s["tracks"],
            "decoded": s["decoded"],
            "failed": len(s["failed"]),
            "audio_hours": round(s["audio_seconds"] / 3600, 2),
            "wall_s": round(s["seconds"], 1),
            "cpu_s": round(s["cpu_seconds"], 1),
            "x_real_time": round(total),
            "x_real_time_per_worker": round(total / s["workers"]),
            "x_real_time_per_cpu_second": round(s["audio_seconds"] / s["cpu_seconds"]),
            "cache_mb": round(size / 2**20),
            "load_average_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        })
    print(json.dumps({
        "bench": "cache_fill",
        "database": str(args.database),
        "n_mels": audio_cfg.n_mels,
        "runs": runs,
        "target_x_real_time_per_core": 1000,
        "cpu_count": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
