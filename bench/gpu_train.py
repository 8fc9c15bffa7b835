"""Keep a GPU busy: the model alone vs the training loop, eager vs ``torch.compile``, and the loader alone.

    python bench/gpu_train.py                      # CUDA: full preset, bf16 (+ an fp16 loop); CPU: tiny preset
    python bench/gpu_train.py --database DB --preset tiny --steps 3 --loop-steps 4 --workers 1   # a quick check

One command on a fresh machine: it builds the demo corpus when ``--corpus`` has none (all cores; needs
soundfile), fills the patch cache (``--cache-dir``), then measures, each section in its own try (a failing one
reports its error and the rest still run; a section started after ``--budget-s`` seconds is skipped):

* ``loader``: the loader alone (:func:`bench.data_pipeline.measure_loader`, no model) for each of ``--workers``
  processes, with ``pin_memory`` on CUDA: patches/s and patches per worker CPU-second;
* ``model_alone``: ``_Runner.train_step`` (the loop's own step: forward, loss, backward, clip, AdamW) on a
  synthetic batch of the loop's shape and dtype already on the device, eager and compiled
  (``training.compile``); patches/s over ``--steps`` steps after ``--warmup`` (the first step, with the
  compile, is ``first_step_s``), peak device memory in GiB;
* ``loop``: :func:`spotifai.train.train_model` end to end (loader workers, device prefetch, steps, history,
  the final validation and checkpoint), eager and compiled, for ``--loop-steps`` steps with ``--loop-workers``
  loader workers; patches/s is the summary's steady state (the first step, with worker start-up and the
  compile, left out), plus wall seconds and peak memory. On CUDA also the compiled loop in fp16 (GradScaler);
* ``ratios``: loop / model alone (eager and compiled) and compiled / eager; ``targets``: the issue's GPU
  targets (loop >= 0.95 of the compiled model; >= 8,000 patches/s end to end; peak <= 32 GiB).

Patches/s count both views. On CPU the figures only show that everything runs. Prints ONE JSON line (also
written to ``--out`` when given); progress goes to stderr.
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
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import data_pipeline  # noqa: E402
import torch  # noqa: E402

from spotifai import experiment as experiments  # noqa: E402
from spotifai import train  # noqa: E402

T0 = time.perf_counter()
GIB = 2**30
TARGETS = {"loop_over_model_compiled": 0.95, "patches_per_s": 8000.0, "peak_gib": 32.0}


def _say(message: str) -> None:
    print(f"[gpu_train {time.perf_counter() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / GIB, 2) if device.startswith("cuda") else None


def _with(cfg: dict, **training) -> dict:
    out = json.loads(json.dumps(cfg))
    out["training"].update(training)
    return experiments.validate_config(out)


def model_alone(experiment: Path, cfg: dict, plan, device: str, compiled: bool, steps: int, warmup: int) -> dict:
    """The loop's own step on a synthetic batch already on the device (see the module docstring)."""
    cfg = _with(cfg, compile=compiled)
    torch.manual_seed(0)
    runner = train._Runner(experiment, cfg, plan, device, True, False, 0, 1)
    batch = runner.maker("train").batch(1)
    dev = runner.device
    fake = {**batch, "groups": batch["groups"].to(dev)}
    for key in ("mel_a", "mel_b"):
        fake[key] = (torch.rand(batch[key].shape, device=dev) * 2 - 1).to(batch[key].dtype)
    n = fake["mel_a"].shape[0] + fake["mel_b"].shape[0]
    _reset_peak(device)
    t0 = time.perf_counter()
    runner.train_step(fake)
    runner.flush()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        runner.train_step(fake)
    runner.flush()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.train_step(fake)
    runner.flush()
    _sync(device)
    seconds = time.perf_counter() - t0
    out = {"patches_per_s": round(n * steps / seconds, 1), "patches_per_step": n, "steps": steps,
           "first_step_s": round(first, 2),
           "peak_gib": _peak_gib(device), "loss": round(runner.last_loss, 4), "precision": runner.precision,
           "compiled": runner.compiled}
    del runner
    return out


def loop(work: Path, name: str, cfg: dict, device: str, compiled: bool, steps: int, workers: int,
         precision: str | None = None) -> dict:
    """``train_model`` end to end on a fresh experiment (see the module docstring)."""
    extra = {"compile": compiled, "steps": steps}
    if precision is not None:
        extra["precision"] = precision
    cfg = _with(cfg, **extra)
    cfg["data"]["num_workers"] = workers
    experiment = work / name
    shutil.rmtree(experiment, ignore_errors=True)
    _reset_peak(device)
    t0 = time.perf_counter()
    summary = train.train_model(experiment, device=device, config=cfg, multi_processing=workers > 0)
    wall = time.perf_counter() - t0
    shutil.rmtree(experiment, ignore_errors=True)
    rate = summary["patches_per_second"]
    return {"patches_per_s": None if rate is None else round(rate, 1), "steps": steps, "wall_s": round(wall, 1),
            "train_seconds": round(summary["seconds"], 1), "peak_gib": _peak_gib(device),
            "final_train_loss": summary["final_train_loss"], "precision": summary["precision"],
            "compiled": compiled, "workers": workers}


def main() -> int:
    cuda = torch.cuda.is_available()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "demo", help="demo corpus (built if missing)")
    parser.add_argument("--database", type=Path, default=None, help="any music DB instead of the demo corpus")
    parser.add_argument("--preset", default=None, help="default: full on CUDA, tiny on CPU")
    parser.add_argument("--precision", default=None, help="default: bf16 on CUDA, the preset's on CPU")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                        help="also the compiled loop in fp16 (default: on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="model-alone steps (default 20 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=None, help="loop steps (default 200 CUDA, 4 CPU)")
    parser.add_argument("--loop-workers", type=int, default=None,
                        help="loader workers of the loop (default: min(8, CPUs - 2) on CUDA, 1 on CPU)")
    parser.add_argument("--workers", default=None, help="loader-alone worker counts (default 1,2,4,8,16 up to CPUs)")
    parser.add_argument("--loader-steps", type=int, default=None, help="loader-alone steps (default 24 CUDA, 4 CPU)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default inductor; aot_eager for a quick check)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "spotifai_bench_cache")
    parser.add_argument("--budget-s", type=float, default=360.0, help="sections starting later are skipped")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.compile_backend:
        os.environ["SPOTIFAI_COMPILE_BACKEND"] = args.compile_backend
    device = args.device
    on_cuda = device.startswith("cuda")
    preset = args.preset or ("full" if on_cuda else "tiny")
    steps = args.steps or (20 if on_cuda else 3)
    loop_steps = args.loop_steps or (200 if on_cuda else 4)  # 60 left ~4 s of steady state
    loop_workers = args.loop_workers if args.loop_workers is not None else (max(1, min(8, cpus - 2)) if on_cuda else 1)
    loader_steps = args.loader_steps or (24 if on_cuda else 4)
    worker_counts = ([int(w) for w in args.workers.split(",")] if args.workers
                     else [w for w in (1, 2, 4, 8, 16) if w <= cpus] or [1])
    fp16 = on_cuda if args.fp16 is None else args.fp16
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    result: dict = {"bench": "gpu_train", "device": device, "preset": preset, "torch": torch.__version__,
                    "cpus": cpus, "compile_backend": train.compile_backend()}
    if on_cuda:
        result["device_name"] = torch.cuda.get_device_name()

    def section(name: str, fn, *fargs, **fkwargs):
        elapsed = time.perf_counter() - T0
        if elapsed > args.budget_s:
            _say(f"{name}: skipped (time budget {args.budget_s:.0f} s spent)")
            return {"skipped": f"started after the {args.budget_s:.0f} s budget"}
        _say(f"{name} ...")
        try:
            out = fn(*fargs, **fkwargs)
        except Exception as exc:  # noqa: BLE001 - reported in the JSON; the other sections still run
            traceback.print_exc()
            out = {"error": f"{type(exc).__name__}: {exc}"}
        _say(f"{name}: {json.dumps(out)}")
        return out

    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        t0 = time.perf_counter()
        db = args.database or data_pipeline.corpus_db(args.corpus, workers=max(1, cpus))
        result["corpus_s"] = round(time.perf_counter() - t0, 1)
        overrides = {"progress": {"val_period": 0, "val_batches": 1, "save_period": 10**6,
                                  "checkpoint_period": 10**6, "loss_window": 10}}
        if args.precision or on_cuda:
            overrides["training"] = {"precision": args.precision or "bf16"}
        t0 = time.perf_counter()
        cfg, plan, experiment, fill = data_pipeline.prepare(db, preset, args.cache_dir, work, overrides)
        result["cache_fill"] = {"tracks": fill["tracks"], "decoded": fill["decoded"],
                                "seconds": round(time.perf_counter() - t0, 1)}
        t, a, m = cfg["training"], cfg["data"]["audio"], cfg["model"]
        maker = train.batch_maker(experiment, cfg, plan, "train")  # a corpus with fewer playlists caps P
        result["config"] = {"n_mels": a["n_mels"], "patch_frames": a["patch_frames"], "model_dim": m["model_dim"],
                            "n_layers": m["n_layers"], "projection_dim": m["projection_dim"],
                            "patches_per_step": maker.P * maker.K,
                            "configured_patches_per_step": t["playlists_per_step"] * t["patches_per_playlist"],
                            "precision": t["precision"]}
        result["loader"] = [section(f"loader {w} workers", data_pipeline.measure_loader, experiment, cfg, plan, w,
                                    loader_steps, pin_memory=on_cuda) for w in worker_counts]
        result["model_alone"] = {
            "eager": section("model alone eager", model_alone, experiment, cfg, plan, device, False, steps,
                             args.warmup),
            "compiled": section("model alone compiled", model_alone, experiment, cfg, plan, device, True, steps,
                                args.warmup),
        }
        result["loop"] = {
            "compiled": section("loop compiled", loop, work, "loop_compiled", cfg, device, True, loop_steps,
                                loop_workers),
            "eager": section("loop eager", loop, work, "loop_eager", cfg, device, False, loop_steps, loop_workers),
        }
        if fp16:
            result["loop"]["compiled_fp16"] = section("loop compiled fp16", loop, work, "loop_fp16", cfg, device,
                                                      True, loop_steps, loop_workers, precision="fp16")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def rate(d: dict) -> float | None:
        return d.get("patches_per_s") if isinstance(d, dict) else None

    ma, lp = result["model_alone"], result["loop"]
    ratios = {}
    for key, num, den in (("loop_over_model_eager", rate(lp["eager"]), rate(ma["eager"])),
                          ("loop_over_model_compiled", rate(lp["compiled"]), rate(ma["compiled"])),
                          ("model_compiled_over_eager", rate(ma["compiled"]), rate(ma["eager"])),
                          ("loop_compiled_over_eager", rate(lp["compiled"]), rate(lp["eager"]))):
        ratios[key] = round(num / den, 3) if num and den else None
    result["ratios"] = ratios
    peaks = [d.get("peak_gib") for d in (*ma.values(), *lp.values()) if isinstance(d, dict) and d.get("peak_gib")]
    result["peak_gib"] = max(peaks) if peaks else None
    best_loop = [rate(lp[k]) for k in ("compiled", "compiled_fp16") if k in lp and rate(lp[k])]
    result["targets"] = {
        **TARGETS,
        "meets_loop_ratio": None if ratios["loop_over_model_compiled"] is None
        else ratios["loop_over_model_compiled"] >= TARGETS["loop_over_model_compiled"],
        "meets_patches_per_s": {k: rate(lp[k]) >= TARGETS["patches_per_s"]
                                for k in ("compiled", "compiled_fp16") if k in lp and rate(lp[k])} or None,
        "meets_peak": None if result["peak_gib"] is None else result["peak_gib"] <= TARGETS["peak_gib"],
    } if on_cuda else {**TARGETS, "note": "GPU targets; not checked on CPU", "loop_rates": best_loop}
    result["total_s"] = round(time.perf_counter() - T0, 1)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    line = json.dumps(result, default=str)
    print(line, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
