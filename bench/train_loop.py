"""Training throughput on the demo corpus: the model alone vs the full loop with loading (cache on / off).

    .venv/bin/python bench/train_loop.py [--corpus data/demo | --database DB] [--steps 20]
    .venv/bin/python bench/train_loop.py --database data/real/music.db --cold [--cold-steps 100] [--lazy]

Same config for all three (the demo config, :func:`spotifai.experiment.demo_config`):

* ``model_alone``: forward + loss + backward + AdamW step on pre-made tensors of one batch's shape
  (``_Runner.train_step``, the loop's own step), no data loading;
* ``loop_cached``: ``train_model`` end to end (DataLoader workers, batches, steps, history) with the patch
  cache already filled (the steady state after the first pass; the fill time is reported separately);
* ``loop_uncached``: the same with ``data.patch_cache = false`` (every patch decoded from its audio file).

Patches/s counts the patches of both views. Other processes may share the CPU, so the model-alone and cached-loop
figures are measured in ``--rounds`` interleaved pairs; the ratio is the median of the per-round ratios.
Target: loop_cached >= 0.9 x model_alone. ``--database``: any music DB instead of the demo corpus.

``--cold``: the first pass instead. ``train_model`` for ``--cold-steps`` steps on a fresh experiment with a fresh
(empty) patch cache, as a user's first run: it fills the cache on all cores before step 1 (the fill is timed:
tracks, audio hours, x real time in total, per worker and per CPU-second), then trains; then the same steps again
on a second fresh experiment with the cache now warm. Reported: the rate of the steps alone (patches / seconds of
``_Runner.run``, worker start-up and the first step included) and end to end (prefill included), cold and warm,
and their ratios. ``--lazy`` adds the behaviour before the prefill existed: a cold run whose loader workers
decode whole tracks as the first pass reaches them. Target: cold first steps >= 0.5 x the warm rate.

Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
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


def model_alone(experiment: Path, config: dict, plan: sampling.Plan, steps: int, warmup: int) -> float:
    runner = train._Runner(experiment, config, plan, "cpu", True, False, 0, 1)
    batch = runner.maker("train").batch(1)
    fake = {**batch, "mel_a": torch.rand_like(batch["mel_a"]) * 2 - 1, "mel_b": torch.rand_like(batch["mel_b"]) * 2 - 1}
    n = batch["mel_a"].shape[0] * 2
    for _ in range(warmup):
        runner.train_step(fake)
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.train_step(fake)
    return n * steps / (time.perf_counter() - t0)


def full_loop(experiment: Path, config: dict, steps: int) -> dict:
    """``train_model`` summary of a fresh run (its patches/s leave out the first step: worker start-up)."""
    shutil.rmtree(experiment, ignore_errors=True)
    return train.train_model(experiment, config=config, multi_processing=True)


def _timed_run(experiment: Path, config: dict, prefill: bool = True) -> dict:
    """``train_model`` of a fresh experiment with the prefill's summary (``fill``; None without a prefill) and the
    wall seconds of the whole call (``wall_s``)."""
    fills: list[dict] = []
    fill = cache_fill.fill_cache

    def spy(*args, **kwargs):
        fills.append(fill(*args, **kwargs) if prefill else {})
        return fills[-1]

    cache_fill.fill_cache = spy  # train_model calls cache_fill.fill_cache
    try:
        t0 = time.perf_counter()
        summary = full_loop(experiment, config, 0)
        summary["wall_s"] = time.perf_counter() - t0
    finally:
        cache_fill.fill_cache = fill
    summary["fill"] = fills[0] if fills and prefill else None
    return summary


def cold_first_pass(args: argparse.Namespace, db: Path, work: Path) -> dict:
    """The ``--cold`` measurement (see the module docstring)."""
    base = experiments.demo_config(db)
    base["training"]["steps"] = args.cold_steps
    base["progress"].update(val_period=0, save_period=10**6, checkpoint_period=10**6)
    base["data"]["cache_dir"] = str((work / "cache").resolve())
    cfg = experiments.validate_config(base)
    per_step = cfg["training"]["playlists_per_step"] * cfg["training"]["patches_per_playlist"]  # both views
    patches = per_step * args.cold_steps
    cold = _timed_run(work / "cold", cfg)
    warm = _timed_run(work / "warm", cfg)
    f = cold["fill"]
    steps_rate = {name: patches / run["seconds"] for name, run in (("cold", cold), ("warm", warm))}
    e2e_rate = {name: patches / (run["fill"]["seconds"] + run["seconds"]) for name, run in (("cold", cold), ("warm", warm))}
    result = {
        "mode": "cold",
        "steps": args.cold_steps,
        "patches_per_step": per_step,
        "prefill": {
            "tracks": f["tracks"], "decoded": f["decoded"], "failed": len(f["failed"]), "workers": f["workers"],
            "audio_hours": round(f["audio_seconds"] / 3600, 2), "wall_s": round(f["seconds"], 1),
            "cpu_s": round(f["cpu_seconds"], 1),
            "x_real_time": round(f["audio_seconds"] / f["seconds"]),
            "x_real_time_per_worker": round(f["audio_seconds"] / f["seconds"] / f["workers"]),
            "x_real_time_per_cpu_second": round(f["audio_seconds"] / max(f["cpu_seconds"], 1e-9)),
        },
        "warm_prefill_check_s": round(warm["fill"]["seconds"], 2),
        "cold_steps_s": round(cold["seconds"], 1),
        "warm_steps_s": round(warm["seconds"], 1),
        "cold_steps_patches_per_s": round(steps_rate["cold"], 1),
        "warm_steps_patches_per_s": round(steps_rate["warm"], 1),
        "cold_end_to_end_patches_per_s": round(e2e_rate["cold"], 1),
        "warm_end_to_end_patches_per_s": round(e2e_rate["warm"], 1),
        "cold_steady_patches_per_s": round(cold["patches_per_second"], 1),
        "warm_steady_patches_per_s": round(warm["patches_per_second"], 1),
        "ratio_steps": round(steps_rate["cold"] / steps_rate["warm"], 3),
        "ratio_end_to_end": round(e2e_rate["cold"] / e2e_rate["warm"], 3),
        "target_ratio": 0.5,
    }
    if args.lazy:  # the first pass as it was: no prefill, the loader workers decode whole tracks on first use
        lazy_cfg = experiments.validate_config({**cfg, "data": {**cfg["data"], "cache_dir": str((work / "lazy").resolve())}})
        lazy = _timed_run(work / "lazy_exp", lazy_cfg, prefill=False)
        result["lazy_steps_s"] = round(lazy["seconds"], 1)
        result["lazy_steps_patches_per_s"] = round(patches / lazy["seconds"], 1)
        result["ratio_lazy"] = round(patches / lazy["seconds"] / steps_rate["warm"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "demo", help="demo corpus folder")
    parser.add_argument("--database", type=Path, default=None, help="any music DB (default: the corpus's)")
    parser.add_argument("--cold", action="store_true", help="measure the first pass from an empty cache")
    parser.add_argument("--cold-steps", type=int, default=100, help="steps of each --cold run")
    parser.add_argument("--lazy", action="store_true", help="with --cold: also a cold run without the prefill")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per figure")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved model-alone / cached-loop rounds")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="patch cache to use (and fill); default: a temporary one (keys are per file, so an "
                             "experiment's cache can be shared)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")

    db = args.database or args.corpus / "music.db"
    if not db.exists() and args.database is None:
        from spotifai.demo_corpus import build_demo_corpus

        build_demo_corpus(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    if args.cold:
        try:
            result = cold_first_pass(args, db, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({"bench": "train_loop", "database": str(db), **result,
                          "load_average": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()}))
        return 0
    try:
        base = experiments.demo_config(db)
        base["training"]["steps"] = args.steps + 1  # the loop's first step (worker start) is not measured
        base["progress"].update(val_period=0, save_period=10**6, checkpoint_period=10**6)
        cache = (args.cache_dir or work / "cache").resolve()
        base["data"]["cache_dir"] = str(cache)
        cfg = experiments.validate_config(base)
        plan = train.check_data(work / "exp", train.create_experiment(work / "exp", cfg))
        audio_cfg = AudioConfig.from_dict(cfg["data"]["audio"])

        t0 = time.perf_counter()
        fill = cache_fill.fill_cache(plan, audio_cfg, cache, progress=False)
        fill_s = time.perf_counter() - t0
        alone_runs, cached_runs = [], []
        for _ in range(args.rounds):  # interleaved, so that load changes hit both figures alike
            alone_runs.append(model_alone(work / "exp", cfg, plan, args.steps, args.warmup))
            cached_runs.append(full_loop(work / "cached", cfg, args.steps)["patches_per_second"])
        uncached_cfg = experiments.validate_config({**cfg, "data": {**cfg["data"], "patch_cache": False}})
        uncached_rate = full_loop(work / "uncached", uncached_cfg, args.steps)["patches_per_second"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    alone = statistics.median(alone_runs)
    cached_rate = statistics.median(cached_runs)
    ratios = [c / a for a, c in zip(alone_runs, cached_runs, strict=True)]
    t, m, a = cfg["training"], cfg["model"], cfg["data"]["audio"]
    result = {
        "bench": "train_loop",
        "database": str(db),
        "config": {
            "n_mels": a["n_mels"], "patch_frames": a["patch_frames"], "model_dim": m["model_dim"],
            "n_layers": m["n_layers"], "projection_dim": m["projection_dim"], "playlists_per_step": t["playlists_per_step"],
            "patches_per_playlist": t["patches_per_playlist"], "precision": t["precision"], "num_workers": cfg["data"]["num_workers"],
            "torch_threads": torch.get_num_threads(),
        },
        "steps": args.steps,
        "model_alone_patches_per_s": round(alone, 1),
        "loop_cached_patches_per_s": round(cached_rate, 1),
        "loop_uncached_patches_per_s": round(uncached_rate, 1),
        "model_alone_runs": [round(x, 1) for x in alone_runs],
        "loop_cached_runs": [round(x, 1) for x in cached_runs],
        "cached_ratio": round(statistics.median(ratios), 3),
        "cached_ratio_runs": [round(x, 3) for x in ratios],
        "uncached_ratio": round(uncached_rate / alone, 3),
        "target_ratio": 0.9,
        "meets_target": statistics.median(ratios) >= 0.9,
        "cache_fill_s": round(fill_s, 1),
        "cache_decoded": fill["decoded"],
        "cache_tracks": fill["tracks"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
