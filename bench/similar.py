"""Benchmark the cold start: similar tracks for one 30 s audio file, end to end, on CPU.

Two measurements on a trained experiment (default ``experiments/demo``, the main job's):

* ``api``: ``model.similar(path, k=10)`` in-process (decode the file + the model on its patches + the ChromaDB
  query with metadata), after one warm-up; p50 / p95 over ``--repeats`` calls. Target p50 <= 300 ms.
* ``upload``: the page's request, ``POST /api/similar-to-file?k=10`` with the file's bytes to ``spotifai serve``
  on loopback (upload + decode + model + index + metadata from the DB); p50 / p95. Target <= 1 s.

The 30 s file is a 44.1 kHz stereo WAV written from two demo tracks played one after the other (cut to 30 s)
to a temporary folder. Prints ONE JSON line.

    .venv/bin/python bench/similar.py [--experiment experiments/demo] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import spotifai  # noqa: E402
from spotifai import database  # noqa: E402
from spotifai.app.screenshot import free_port, stop_process  # noqa: E402
from spotifai.audio import load_audio  # noqa: E402


def _thirty_seconds(model, out: Path) -> Path:
    conn = database.connect(model.database, readonly=True)
    try:
        rows = database.tracks(conn, with_audio=True)[:2]
    finally:
        conn.close()
    wav = np.concatenate([load_audio(r["audio_path"]).numpy() for r in rows])[: 30 * 16000]
    import torch

    up = torch.nn.functional.interpolate(torch.from_numpy(wav)[None, None], scale_factor=44100 / 16000,
                                         mode="linear").numpy()[0, 0]
    assert abs(len(up) / 44100 - 30.0) < 0.1  # 30 s at 44.1 kHz
    sf.write(out, np.stack([up, up], axis=1).astype(np.float32), 44100, subtype="PCM_16")
    return out


def _stats(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "n": len(ms)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "demo")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the in-process API (default torch's: one per core; on a shared, loaded "
                    "machine 1 avoids waiting for a busy core at every operation)")
    args = ap.parse_args()
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = spotifai.load(args.experiment)
    with tempfile.TemporaryDirectory() as tmp:
        song = _thirty_seconds(model, Path(tmp) / "song30.wav")
        model.similar(song, k=10)  # warm-up: index opened, HNSW graph loaded
        api = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            hits = model.similar(song, k=10)
            api.append(time.perf_counter() - start)
        assert len(hits) == 10
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "spotifai.cli", "serve", "--database", str(model.database),
                                 "--experiment", str(args.experiment), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = httpx.get(f"{url}/api/health", timeout=1).json()
                    if "loading" not in (health["index"], health["uploads"]):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server not ready")
                time.sleep(0.1)
            data = song.read_bytes()
            upload = []
            with httpx.Client(timeout=60) as client:
                for i in range(args.repeats + 1):
                    start = time.perf_counter()
                    r = client.post(f"{url}/api/similar-to-file?k=10", content=data,
                                    headers={"content-type": "application/octet-stream"})
                    r.raise_for_status()
                    if i:  # the first is a warm-up
                        upload.append(time.perf_counter() - start)
        finally:
            stop_process(proc)
    result = {"bench": "similar", "experiment": str(args.experiment), "file_seconds": 30.0,
              "torch_threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2),
              "file_bytes": len(data), "api": _stats(api), "upload": _stats(upload),
              "api_target_p50_ms": 300, "upload_target_ms": 1000}
    result["api_ok"] = result["api"]["p50_ms"] <= 300
    result["upload_ok"] = result["upload"]["p50_ms"] <= 1000
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
