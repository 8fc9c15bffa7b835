"""Train the full preset on the real-music excerpts on one CUDA machine, several variants at once, and bring the
selected weights back for evaluation on the full-length tracks here.

On the GPU machine (repository root, with ``data/real-excerpts`` from ``scripts/excerpt_corpus.py build``)::

    python3 scripts/gpu_real_music.py train --out "$OUT" --steps 700 --deadline 420

relocates the excerpt DB, trains every variant of :data:`VARIANTS` in parallel (one process each, bf16, the
patch cache filled first), embeds and evaluates each on the excerpts of the held-out tracks (a sanity check
only), and writes to ``--out``: ``<variant>.best.<k>.pt`` (the best-validation weights, weight matrices rounded
to float16 and everything else float32, in shards of at most 14 MiB: the device returns at most 8 files of
16 MiB, 64 MiB in all) and ``runs.tgz`` (configs, histories, evaluations,
logs). A variant still training at ``--deadline`` seconds is stopped; its best weights so far are kept.

Back here::

    python scripts/gpu_real_music.py join FILES_DIR experiments/real-gpu --database data/real/music.db

rebuilds ``experiments/real-gpu/<variant>/`` (config pointing at the full-length DB, ``checkpoints/best.pt``),
ready for ``spotifai embed`` and ``spotifai evaluate --reference musicnn``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUGMENT = {"gain_db": 6, "eq_db": 6, "noise_snr_db": 10, "mix_db": 6, "freq_mask": 10, "time_mask": 128}
COMMON = {
    "optimizer": {"warmup_steps": 100},
    "training": {"patches_per_playlist": 32, "playlists_per_step": 16, "precision": "bf16", "compile": False},
    "data": {"num_workers": 4},
    "progress": {"val_period": 50, "val_batches": 8, "save_period": 100, "checkpoint_period": 100000},
}
VARIANTS = {
    "full": {},
    "full-aug": {"training": {"augment": AUGMENT}},
    "full-aug-p512": {"training": {"augment": {**AUGMENT, "time_mask": 64}}, "patch_frames": 512},
    # next candidates (README, "Real music"): masks only, and the cpu preset's patchify stem at full width, whose
    # 256 tokens per patch halve the step so the same deadline trains about twice the steps
    "full-masks": {"training": {"augment": {"freq_mask": 12, "time_mask": 200}}},
    "full-s4": {"model": {"time_stride": 4}},
}
SHARD_BYTES = 15 << 20


def _merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    subprocess.run([sys.executable, "scripts/excerpt_corpus.py", "relocate", "data/real-excerpts"], check=True, env=env)
    runs = Path(args.runs)
    procs = {}
    t0 = time.time()
    chosen = {name: VARIANTS[name] for name in args.variants}
    for name, overrides in chosen.items():
        cmd = [sys.executable, "scripts/real_music_sweep.py", "--database", "data/real-excerpts/music.db",
               "--device", args.device, "--preset", args.preset, "--steps", str(args.steps), "--out", str(runs),
               "--variant", f"{name}={json.dumps(_merge(COMMON, overrides))}"]
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        if name == next(iter(chosen)) and len(chosen) > 1:
            time.sleep(20)  # the first one fills the patch cache; the others then find it warm
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=max(1.0, args.deadline - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"{name}: stopped at the deadline", flush=True)
        log.close()
        print(f"{name}: exit {proc.returncode} after {time.time() - t0:.0f} s", flush=True)
    import torch

    for name in chosen:
        best = runs / name / "checkpoints" / "best.pt"
        if not best.exists():
            print(f"{name}: no best.pt", flush=True)
            continue
        state = torch.load(best, map_location="cpu", weights_only=False)
        shards, current, size = [], {}, 0
        for key, tensor in state["model"].items():
            if tensor.is_floating_point() and tensor.dim() >= 2:
                tensor = tensor.half()  # the 64 MiB the device returns hold three variants only in half precision
            nbytes = tensor.numel() * tensor.element_size()
            if current and size + nbytes > SHARD_BYTES:
                shards.append(current)
                current, size = {}, 0
            current[key] = tensor
            size += nbytes
        shards.append(current)
        meta = {k: v for k, v in state.items() if k != "model"}
        for i, shard in enumerate(shards):
            torch.save({"model": shard, **(meta if i == 0 else {}), "shards": len(shards)},
                       out / f"{name}.best.{i}.pt")
        print(f"{name}: best step {state['step']} (validation loss {state['validation_loss']:.2f}, "
              f"probe mAP {state.get('validation_map')}), {len(shards)} shards", flush=True)
    with tarfile.open(out / "runs.tgz", "w:gz") as tar:
        for name in chosen:
            for f in ("config.json", "history.csv", "evaluation.json", "embeddings.npz"):
                p = runs / name / f
                if p.exists():
                    tar.add(p, arcname=f"{name}/{f}")
            log = out / f"{name}.log"
            if log.exists():
                tar.add(log, arcname=f"{name}/train.log")
    for name in chosen:
        (out / f"{name}.log").unlink(missing_ok=True)


def join(args) -> None:
    import torch

    from spotifai import atomic
    from spotifai import experiment as experiments

    files = Path(args.files)
    target = Path(args.target)
    with tarfile.open(files / "runs.tgz") as tar:
        tar.extractall(target / "_device", filter="data")
    for first in sorted(files.glob("*.best.0.pt")):
        name = first.name[: -len(".best.0.pt")]
        head = torch.load(first, map_location="cpu", weights_only=False)
        model = dict(head["model"])
        for i in range(1, head["shards"]):
            model.update(torch.load(files / f"{name}.best.{i}.pt", map_location="cpu", weights_only=False)["model"])
        model = {k: v.float() if v.is_floating_point() else v for k, v in model.items()}
        config = head["config"]
        config["data"]["database"] = str(Path(args.database).resolve())
        config["data"]["cache_dir"] = str(Path(args.database).resolve().parent / "patch-cache")  # shared by variants
        config = experiments.validate_config(config, str(first))
        exp = target / name
        buf = io.BytesIO()
        torch.save({"model": model, "config": config, "step": head["step"],
                    "validation_loss": head["validation_loss"], "validation_map": head.get("validation_map")}, buf)
        atomic.write_bytes(exp / "checkpoints" / "best.pt", buf.getvalue())
        atomic.write_bytes(exp / "config.json", json.dumps(config, indent=2).encode())
        device_dir = target / "_device" / name
        if (device_dir / "history.csv").exists():
            atomic.write_bytes(exp / "history.csv", (device_dir / "history.csv").read_bytes())
        print(f"{exp}: step {head['step']}, validation loss {head['validation_loss']:.2f}, "
              f"probe mAP {head.get('validation_map')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--runs", default="experiments/gpu", help="where the experiments are trained")
    t.add_argument("--steps", type=int, default=700)
    t.add_argument("--variants", nargs="+", default=["full", "full-aug", "full-aug-p512"], choices=list(VARIANTS))
    t.add_argument("--device", default="cuda")
    t.add_argument("--preset", default="full", help="tiny: a smoke test of this script on a CPU")
    t.add_argument("--deadline", type=float, default=420.0, help="seconds after which training stops")
    j = sub.add_parser("join")
    j.add_argument("files")
    j.add_argument("target")
    j.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    train(args) if args.command == "train" else join(args)


if __name__ == "__main__":
    main()
