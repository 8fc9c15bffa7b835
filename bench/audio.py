"""Benchmark the audio processor: full file -> patches, real-time factor per format, and where the time goes.

Generates 30 s, 44.1 kHz stereo files (WAV PCM-16, FLAC, OGG/Vorbis, MP3) in a temporary folder, then for
each format times ``track_patches`` (64 mels, 512-frame patches) end to end, median of ``--runs`` runs in this one
process, and separately the three stages: decode (+ mono mix), resample 44.1 -> 16 kHz, log-mel + patches.
Wall-clock and process CPU time are both reported: the machine may be shared, and CPU time of these
(single-threaded, except the small torch ops) stages is the better estimate of uncontended speed.
Default threading: torch ops (resample, mel) on 1 thread - they take a few ms, and on a shared machine waking a
second OpenMP thread for each small op costs more than it saves (measured: resample 3 ms on 1 thread, 200+ ms
CPU on 2 threads under load) - and the decoder on 2 threads (two halves of the file, decoded concurrently).
Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from spotifai import audio

SECONDS, SR = 30.0, 44100
SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


def _music(seconds: float, sr: int) -> np.ndarray:
    """A stereo chord progression with a beat and some noise, (frames, 2) float32."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    beat = np.exp(-12 * (t % 0.5))
    left = sum(
        0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)
    ) + 0.2 * beat * rng.standard_normal(t.size)
    right = sum(
        0.15 * np.sin(2 * np.pi * f * t + 0.3) for f in (196.0, 246.9, 293.7)
    ) + 0.05 * rng.standard_normal(t.size)
    return np.stack([left, right], axis=1).astype(np.float32)


def _time(fn, runs: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds)."""
    walls, cpus = [], []
    fn()  # warm-up (kernel caches, page cache)
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (resample, mel)")
    ap.add_argument("--decode-threads", type=int, default=2, help="threads decoding chunks of one file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    audio.DECODE_THREADS = args.decode_threads
    cfg = audio.AudioConfig(n_mels=64, patch_frames=512)
    data = _music(SECONDS, SR)
    out: dict = {
        "benchmark": "audio",
        "seconds": SECONDS,
        "source": "44.1 kHz stereo",
        "n_mels": cfg.n_mels,
        "patch_frames": cfg.patch_frames,
        "torch_threads": args.threads,
        "decode_threads": args.decode_threads,
        "runs": args.runs,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "target_rtf": 1000,
        "formats": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for ext, subtype in SUBTYPES.items():
            path = Path(tmp) / f"music.{ext}"
            sf.write(str(path), data, SR, subtype=subtype)
            n_patches = int(audio.track_patches(path, cfg).shape[0])
            total_w, total_c = _time(lambda p=path: audio.track_patches(p, cfg), args.runs)
            info = audio._info(path)
            mono = audio._decode(path, info, 0, None)
            wav16 = audio.resample(torch.from_numpy(mono), info.sample_rate)
            lm = audio._logmel(cfg.n_mels, "cpu")
            dec_w, dec_c = _time(lambda p=path, i=info: audio._decode(p, i, 0, None), args.runs)
            res_w, res_c = _time(lambda m=mono: audio.resample(torch.from_numpy(m), SR), args.runs)
            mel_w, mel_c = _time(lambda w=wav16, m=lm: audio.to_patches(m(w), cfg.patch_frames), args.runs)
            out["formats"][ext] = {
                "rtf": round(SECONDS / total_w),
                "rtf_cpu_time": round(SECONDS / total_c),
                "ms": round(total_w * 1e3, 2),
                "cpu_ms": round(total_c * 1e3, 2),
                "split_cpu_ms": {
                    "decode": round(dec_c * 1e3, 2),
                    "resample": round(res_c * 1e3, 2),
                    "mel_patches": round(mel_c * 1e3, 2),
                },
                "split_wall_ms": {
                    "decode": round(dec_w * 1e3, 2),
                    "resample": round(res_w * 1e3, 2),
                    "mel_patches": round(mel_w * 1e3, 2),
                },
                # what an otherwise idle machine would give: decode CPU split over the decode threads
                "rtf_estimate_idle": round(SECONDS / (dec_c / min(args.decode_threads, 2) + res_c + mel_c)),
                "n_patches": n_patches,
                "file_kb": round(path.stat().st_size / 1024),
            }
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
