"""Benchmark one training step: forward + backward + AdamW on CPU (fp32 and bf16 autocast; CUDA AMP if present).

Configuration of the original design: 64 mels x 512 frames, model_dim 64, 4 layers, 4 heads, projection 512,
24 playlists x 16 patches = 384 patches per step, split 8 + 8 per playlist into views a / b (groups = playlist).
Prints ONE JSON line: wall-clock patches/s and seconds/step (median), plus the process CPU seconds per step and
the load average, because the machine may be shared (on a busy machine the wall-clock figure mostly measures the
other processes).  Usage: python bench/train_step.py [--steps N] [--threads 2,1] [--no-bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from spotifai.loss import barlow_twins_loss
from spotifai.model import AudioEncoder, EncoderConfig

PLAYLISTS, PER_PLAYLIST = 24, 16


def _bench(device: str, dtype: torch.dtype | None, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    cfg = EncoderConfig(n_mels=64, n_frames=512, model_dim=64, projection_dim=512, n_layers=4, n_heads=4)
    model = AudioEncoder(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    n = PLAYLISTS * PER_PLAYLIST
    mel = torch.rand(n, cfg.n_mels, cfg.n_frames, device=device) * 2 - 1
    half = PER_PLAYLIST // 2
    # rows ordered playlist-major: the first half of each playlist's patches is view a, the second half view b
    idx = torch.arange(n, device=device).view(PLAYLISTS, PER_PLAYLIST)
    ia, ib = idx[:, :half].reshape(-1), idx[:, half:].reshape(-1)
    groups = torch.arange(PLAYLISTS, device=device).repeat_interleave(half)
    times, cpu_times = [], []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            proj = model(mel, output="projections")
            loss = barlow_twins_loss(proj[ia], proj[ib], groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    sec = statistics.median(times)
    cpu = statistics.median(cpu_times)
    return {
        "patches_per_s": round(n / sec, 2),
        "seconds_per_step": round(sec, 4),
        "process_cpu_seconds_per_step": round(cpu, 3),
        "loss": round(loss.item(), 4),
        "steps": steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", default="2,1", help="comma-separated torch thread counts to measure")
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    cfg = EncoderConfig(n_mels=64, n_frames=512, model_dim=64, projection_dim=512, n_layers=4, n_heads=4)
    out = {
        "benchmark": "train_step",
        "patches_per_step": PLAYLISTS * PER_PLAYLIST,
        "config": cfg.to_dict(),
        "parameters": sum(p.numel() for p in AudioEncoder(cfg).parameters()),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "target_patches_per_s": 65.0,
        "original_patches_per_s": 6.5,
    }
    for threads in thread_counts:
        torch.set_num_threads(threads)
        out[f"cpu_fp32_threads{threads}"] = _bench("cpu", None, args.steps, args.warmup)
        if not args.no_bf16:
            out[f"cpu_bf16_autocast_threads{threads}"] = _bench(
                "cpu", torch.bfloat16, args.steps, args.warmup
            )
    if torch.cuda.is_available():
        out["cuda_name"] = torch.cuda.get_device_name()
        out["cuda_fp32"] = _bench("cuda", None, 20, 3)
        out["cuda_bf16_autocast"] = _bench("cuda", torch.bfloat16, 20, 3)
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
