"""Training throughput on the demo corpus: the model alone vs the full loop with loading (cache on / off).

    .venv/bin/python bench/train_loop.py [--corpus data/demo] [--steps 20]

Same config for all three (the demo config, :func:`spotifai.train.demo_config`):

* ``model_alone``: forward + loss + backward + AdamW step on pre-made tensors of one batch's shape
  (``_Runner.train_step``, the loop's own step), no data loading;
* ``loop_cached``: ``train_model`` end to end (DataLoader workers, batches, steps, history) with the patch
  cache already filled (the steady state after the first pass; the fill time is reported separately);
* ``loop_uncached``: the same with ``data.patch_cache = false`` (every patch decoded from its audio file).

Patches/s counts the patches of both views. Other processes may share the CPU, so the model-alone and cached-loop
figures are measured in ``--rounds`` interleaved pairs; the ratio is the median of the per-round ratios.
Target: loop_cached >= 0.9 x model_alone. Prints ONE JSON line.
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

from spotifai import sampling, train  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "demo", help="demo corpus folder")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per figure")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved model-alone / cached-loop rounds")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="patch cache to use (and fill); default: a temporary one (keys are per file, so an "
                             "experiment's cache can be shared)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")

    db = args.corpus / "music.db"
    if not db.exists():
        from spotifai.demo_corpus import build_demo_corpus

        build_demo_corpus(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        base = train.demo_config(db)
        base["training"]["steps"] = args.steps + 1  # the loop's first step (worker start) is not measured
        base["progress"].update(val_period=0, save_period=10**6, checkpoint_period=10**6)
        cache = (args.cache_dir or work / "cache").resolve()
        base["data"]["cache_dir"] = str(cache)
        cfg = train.validate_config(base)
        plan = train.check_data(work / "exp", train.create_experiment(work / "exp", cfg))
        audio_cfg = AudioConfig.from_dict(cfg["data"]["audio"])

        t0 = time.perf_counter()
        fill = sampling.fill_cache(plan, audio_cfg, cache, progress=False)
        fill_s = time.perf_counter() - t0
        alone_runs, cached_runs = [], []
        for _ in range(args.rounds):  # interleaved, so that load changes hit both figures alike
            alone_runs.append(model_alone(work / "exp", cfg, plan, args.steps, args.warmup))
            cached_runs.append(full_loop(work / "cached", cfg, args.steps)["patches_per_second"])
        uncached_cfg = train.validate_config({**cfg, "data": {**cfg["data"], "patch_cache": False}})
        uncached_rate = full_loop(work / "uncached", uncached_cfg, args.steps)["patches_per_second"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    alone = statistics.median(alone_runs)
    cached_rate = statistics.median(cached_runs)
    ratios = [c / a for a, c in zip(alone_runs, cached_runs, strict=True)]
    t, m, a = cfg["training"], cfg["model"], cfg["data"]["audio"]
    result = {
        "bench": "train_loop",
        "corpus": str(args.corpus),
        "config": {
            "n_mels": a["n_mels"], "patch_frames": a["patch_frames"], "model_dim": m["model_dim"],
            "n_layers": m["n_layers"], "projection_dim": m["projection_dim"], "buffer_size": t["buffer_size"],
            "batch_size": t["batch_size"], "precision": t["precision"], "num_workers": cfg["data"]["num_workers"],
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
