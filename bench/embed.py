"""Benchmark full-song embedding on CPU: tracks per minute for 30 s tracks with the demo config's model
(random weights: speed does not depend on training), and the share of time in decoding vs the model.

Writes ``--tracks`` 30 s stereo 44.1 kHz files (cycling WAV, FLAC, OGG/Vorbis, MP3: decoding and resampling
are part of the cost), then embeds them twice with :func:`spotifai.embed.embed_tracks`:

* in-process decoding (``num_workers=0``): decode and model run one after the other, so their times add up
  and give the shares (``decode_share``, ``model_share``);
* with ``--workers`` decoding processes (default 1): decode overlaps the model; ``tracks_per_min`` of this
  run is the headline number.

Prints ONE JSON line. CPU timings are noisy when other processes share the cores (``load_avg`` is reported).

    .venv/bin/python bench/embed.py [--tracks 48] [--workers 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotifai.audio import AudioConfig  # noqa: E402
from spotifai.baselines import random_encoder  # noqa: E402
from spotifai.embed import embed_tracks  # noqa: E402
from spotifai.experiment import demo_config  # noqa: E402

FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")]


def write_tracks(folder: Path, n: int, seconds: float, sr: int = 44100, seed: int = 0) -> list[tuple[int, str]]:
    rng = np.random.default_rng(seed)
    items = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        ext, fmt, subtype = FORMATS[i % len(FORMATS)]
        f0 = rng.uniform(80, 400)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        left = 0.2 * tone / 2 + 0.02 * rng.standard_normal(t.size)
        y = np.stack([left, np.roll(left, 37)], axis=1).astype(np.float32)
        path = folder / f"track{i:03d}.{ext}"
        sf.write(path, y, sr, format=fmt, subtype=subtype)
        items.append((i + 1, str(path)))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=1, help="decoding processes for the overlapped run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process (1: no oversubscription on a shared CPU)")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config = demo_config("unused.db")
    audio = AudioConfig.from_dict(config["data"]["audio"])
    encoder = random_encoder(config["model"], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        items = write_tracks(Path(tmp), args.tracks, args.seconds)
        embed_tracks(encoder, items[:2], audio, batch_size=args.batch_size, progress=False)  # warm-up
        t0 = time.perf_counter()
        serial = embed_tracks(encoder, items, audio, batch_size=args.batch_size, num_workers=0, progress=False)
        serial_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        overlapped = embed_tracks(
            encoder, items, audio, batch_size=args.batch_size, num_workers=args.workers, progress=False
        )
        overlapped_s = time.perf_counter() - t0
    assert len(serial.track_ids) == len(overlapped.track_ids) == args.tracks
    busy = serial.seconds_decoding + serial.seconds_model
    patches_per_track = args.seconds * 100 / audio.patch_frames
    print(
        json.dumps(
            {
                "bench": "embed",
                "device": "cpu",
                "tracks": args.tracks,
                "track_seconds": args.seconds,
                "patches_per_track": round(patches_per_track, 1),
                "model": {k: config["model"][k] for k in ("model_dim", "projection_dim", "n_layers", "n_mels", "n_frames")},
                "workers": args.workers,
                "torch_threads": args.threads,
                "tracks_per_min": round(args.tracks / overlapped_s * 60, 1),
                "tracks_per_min_in_process_decoding": round(args.tracks / serial_s * 60, 1),
                "decode_share": round(serial.seconds_decoding / busy, 3),
                "model_share": round(serial.seconds_model / busy, 3),
                "decode_ms_per_track": round(serial.seconds_decoding / args.tracks * 1000, 1),
                "model_ms_per_track": round(serial.seconds_model / args.tracks * 1000, 1),
                "load_avg": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
