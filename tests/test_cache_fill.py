"""Filling the patch cache before training: pool = in-process, bad and crashing tracks, kills, the trainer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spotifai import audio, cache_fill, database, sampling, train
from spotifai import experiment as experiments

AUDIO = audio.AudioConfig(n_mels=32, patch_frames=64)
ROOT = Path(__file__).resolve().parents[1]
FORMATS = [  # (extension, soundfile subtype, sample rate, channels): what a real library holds
    ("ogg", "VORBIS", 44100, 2), ("mp3", "MPEG_LAYER_III", 44100, 2), ("ogg", "VORBIS", 48000, 2),
    ("flac", "PCM_16", 22050, 1), ("wav", "PCM_16", 16000, 1), ("mp3", "MPEG_LAYER_III", 32000, 2),
]


def _music(sr: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 110.0 * (1 + seed % 7)
    cols = [0.3 * np.sin(2 * np.pi * f0 * (c + 1) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))
            + 0.05 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def make_library(directory: Path, *, n_playlists: int = 4, per_playlist: int = 3, seconds: float = 3.0,
                 corrupt: int = 0) -> Path:
    """A music DB over files in the formats of a real library (OGG/MP3/FLAC/WAV, 16-48 kHz, mono and stereo);
    the first ``corrupt`` tracks are garbage bytes."""
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    db = directory / "music.db"
    conn = database.connect(db)
    k = 0
    with conn:
        for p in range(n_playlists):
            ids = []
            for i in range(per_playlist):
                ext, subtype, sr, ch = FORMATS[k % len(FORMATS)]
                path = audio_dir / f"p{p}_t{i}.{ext}"
                if k < corrupt:
                    path.write_bytes(b"OggS" + bytes(np.random.default_rng(k).integers(0, 256, 4000, dtype=np.uint8)))
                else:
                    sf.write(str(path), _music(sr, seconds, ch, k), sr, subtype=subtype)
                ids.append(database.upsert_track(conn, uri=f"lib:{p}:{i}", title=f"T{p}-{i}", artist=f"A{p}",
                                                 album=f"B{p}", audio_path=str(path), duration=seconds))
                k += 1
            database.upsert_playlist(conn, f"lib:{p}", f"Playlist {p}", ids)
    conn.close()
    return db


def _plan(db: Path) -> sampling.Plan:
    return sampling.build_plan(db, AUDIO, validation_fraction=0.25, heldout_track_fraction=0.0)


def _entries(cache: Path) -> dict[str, object]:
    """{file name: array (.npy) or text (.bad)} of the cache's entries (hidden temporary files excluded)."""
    out: dict[str, object] = {}
    for f in sorted(cache.iterdir()):
        if f.name.startswith("."):
            continue
        out[f.name] = np.load(f) if f.suffix == ".npy" else f.read_text(encoding="utf-8")
    return out


def _same_entries(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith(".npy"):
            assert a[name].dtype == b[name].dtype == np.float16 and np.array_equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return make_library(tmp_path_factory.mktemp("fill_library"), corrupt=1)


def test_parallel_fill_equals_serial_fill_and_counts_bad_tracks(library, tmp_path):
    plan = _plan(library)
    n = len({t for m in (*plan.train.values(), *plan.validation.values()) for t in m})
    serial = cache_fill.fill_cache(plan, AUDIO, tmp_path / "serial", progress=False, workers=0)
    parallel = cache_fill.fill_cache(plan, AUDIO, tmp_path / "parallel", progress=False, workers=2)
    assert serial["workers"] == 1 and parallel["workers"] == 2
    for s in (serial, parallel):
        assert s["tracks"] == s["decoded"] == n and s["cached"] == 0
        assert len(s["failed"]) == 1 and "p0_t0.ogg" in next(iter(s["failed"].values()))
        assert s["audio_seconds"] == pytest.approx(3.0 * (n - 1), abs=0.2)
        assert s["seconds"] > 0 and s["cpu_seconds"] > 0
    assert serial["failed"] == parallel["failed"]
    entries = _entries(tmp_path / "serial")
    assert sum(name.endswith(".npy") for name in entries) == n - 1
    assert sum(name.endswith(".bad") for name in entries) == 1
    _same_entries(entries, _entries(tmp_path / "parallel"))  # same files, same bytes of log-mel
    # warm: nothing is decoded again, the bad track is still reported
    again = cache_fill.fill_cache(plan, AUDIO, tmp_path / "parallel", progress=False, workers=2)
    assert again["decoded"] == 0 and again["cached"] == n - 1 and again["failed"] == parallel["failed"]
    assert again["audio_seconds"] == 0.0


def test_a_cached_patch_equals_a_windowed_decode(library, tmp_path, monkeypatch):
    """The contract of the cache, for every format of the library and the FFmpeg whole-file path of OGG."""
    monkeypatch.setattr(audio, "WHOLE_FILE_FFMPEG_MIN_SECONDS", 0.0)  # 3 s OGG files go through FFmpeg too
    plan = _plan(library)
    cache_fill.fill_cache(plan, AUDIO, tmp_path / "cache", progress=False, workers=0)
    cached, direct = sampling.CachedPatchSource(AUDIO, tmp_path / "cache"), sampling.PatchSource(AUDIO)
    checked = 0
    for path, _ in plan.tracks.values():
        if cached.entry_state(path)[0] != "cached":
            continue
        frames = cached.mel(path).shape[-1]
        for frame in (0, 41, frames - AUDIO.patch_frames):
            a, b = cached.patch_at(path, frame), direct.patch_at(path, frame)
            tol = 2e-3 if path.endswith((".wav", ".flac")) else 0.05  # float16 / lossy decoders after a seek
            assert (a - b).abs().mean() < tol, (path, frame)
        checked += 1
    assert checked >= 8


def test_whole_ogg_through_ffmpeg_equals_libsndfile(tmp_path, monkeypatch):
    path = tmp_path / "long.ogg"
    sf.write(str(path), _music(44100, 4.0, 2, 3), 44100, subtype="VORBIS")
    calls = []
    decode = audio._decode_torchcodec
    monkeypatch.setattr(audio, "_decode_torchcodec", lambda *a, **k: calls.append(a) or decode(*a, **k))
    monkeypatch.setattr(audio, "WHOLE_FILE_FFMPEG_MIN_SECONDS", 0.0)
    via_ffmpeg = audio.load_audio(path)
    assert len(calls) == 1
    monkeypatch.setattr(audio, "WHOLE_FILE_FFMPEG_SUBTYPES", frozenset())
    via_sndfile = audio.load_audio(path)
    assert len(calls) == 1 and via_ffmpeg.shape == via_sndfile.shape
    assert torch.allclose(via_ffmpeg, via_sndfile, atol=1e-5)
    # FFmpeg disagreeing with libsndfile's sample count: libsndfile decodes the file
    monkeypatch.setattr(audio, "WHOLE_FILE_FFMPEG_SUBTYPES", frozenset({"VORBIS"}))
    monkeypatch.setattr(audio, "_decode_torchcodec", lambda *a, **k: (decode(*a, **k)[0][:-5], 44100))
    assert torch.equal(audio.load_audio(path), via_sndfile)
    # short files stay on libsndfile (importing torchcodec costs more than it saves)
    monkeypatch.setattr(audio, "WHOLE_FILE_FFMPEG_MIN_SECONDS", 60.0)
    monkeypatch.setattr(audio, "_decode_torchcodec", lambda *a, **k: pytest.fail("FFmpeg for a short file"))
    assert torch.equal(audio.load_audio(path), via_sndfile)


def test_an_unexpected_error_in_one_track_is_counted_and_leaves_no_entry(library, tmp_path, monkeypatch):
    plan = _plan(library)
    save, calls = np.save, []

    def failing_save(fh, data):  # the fourth entry: half of it written, then the failure
        calls.append(1)
        if len(calls) == 4:
            fh.write(b"\x93NUMPY half an entry")
            raise OSError("disk on fire")
        save(fh, data)

    monkeypatch.setattr(sampling.np, "save", failing_save)
    s = cache_fill.fill_cache(plan, AUDIO, tmp_path, progress=False, workers=0)
    victims = [t for t, r in s["failed"].items() if "disk on fire" in r]
    assert len(victims) == 1 and len(s["failed"]) == 2  # and the corrupt file
    path = plan.tracks[victims[0]][0]
    assert path in s["failed"][victims[0]]
    assert sampling.CachedPatchSource(AUDIO, tmp_path).entry_state(path) == ("missing", "")  # no .bad either
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    monkeypatch.undo()
    again = cache_fill.fill_cache(plan, AUDIO, tmp_path, progress=False, workers=0)
    assert again["decoded"] == 1 and victims[0] not in again["failed"]


_FILL_SCRIPT = """
import sys
from spotifai import audio, cache_fill, sampling
plan = sampling.build_plan(sys.argv[1], audio.AudioConfig(n_mels=32, patch_frames=64),
                           validation_fraction=0.25, heldout_track_fraction=0.0)
cache_fill.fill_cache(plan, audio.AudioConfig(n_mels=32, patch_frames=64), sys.argv[2], progress=False,
                      workers=int(sys.argv[3]))
"""


def test_a_killed_fill_leaves_whole_entries_and_the_next_one_finishes(tmp_path):
    db = make_library(tmp_path / "lib", n_playlists=4, per_playlist=4, seconds=12.0)
    plan = _plan(db)
    reference = tmp_path / "reference"
    cache_fill.fill_cache(plan, AUDIO, reference, progress=False, workers=0)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _FILL_SCRIPT, str(db), str(cache), "2"], env=env,
                            start_new_session=True)
    try:
        while proc.poll() is None and not (cache.exists() and list(cache.glob("*.npy"))):
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the fill and its pool workers, mid-write or not
        proc.wait()
    time.sleep(0.2)
    present = _entries(cache)
    ref = _entries(reference)
    assert present and set(present) <= set(ref)
    for name, value in present.items():  # whatever is there is a whole entry
        assert np.array_equal(value, ref[name]), name
    s = cache_fill.fill_cache(plan, AUDIO, cache, progress=False, workers=0)
    assert s["cached"] == len(present) and s["decoded"] == len(ref) - len(present)
    _same_entries(_entries(cache), ref)


def test_the_pool_survives_a_worker_that_dies(library, tmp_path, monkeypatch):
    """A decoder that kills its process: the track is recorded as failed after two deaths, the rest is filled."""
    plan = _plan(library)
    victim = plan.tracks[sorted(plan.tracks)[2]][0]
    monkeypatch.setattr(cache_fill, "_work", _DyingWork(victim))
    s = cache_fill.fill_cache(plan, AUDIO, tmp_path, progress=False, workers=2)
    died = [r for r in s["failed"].values() if "died" in r]
    assert len(died) == 1 and victim in died[0]
    assert len(s["failed"]) == 2  # and the corrupt file
    entries = _entries(tmp_path)
    assert sum(name.endswith(".npy") for name in entries) == s["tracks"] - 2


_WORK = cache_fill._work  # the real one: forked workers inherit the monkeypatched module attribute


class _DyingWork:
    """A picklable stand-in for ``cache_fill._work`` that kills its worker process on one path."""

    def __init__(self, victim: str):
        self.victim = victim

    def __call__(self, path: str):
        if path == self.victim:
            os._exit(3)
        return _WORK(path)


def test_training_fills_the_cache_before_step_one(library, tmp_path, monkeypatch):
    cfg = experiments.tiny_config(library)
    cfg["training"]["steps"] = 2
    cfg["data"].update(cache_dir=str(tmp_path / "cache"), validation_fraction=0.25, heldout_track_fraction=0.0)
    seen = {}
    run = train._Runner.run

    def checked_run(self):
        source = sampling.CachedPatchSource(self.config.data.audio, experiments.cache_path(self.experiment, self.config))
        tracks = {t for m in (*self.plan.train.values(), *self.plan.validation.values()) for t in m}
        seen.update({t: source.entry_state(self.plan.tracks[t][0])[0] for t in tracks})
        return run(self)

    monkeypatch.setattr(train._Runner, "run", checked_run)
    summary = train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    assert summary["steps"] == 2
    assert len(seen) >= 8 and set(seen.values()) <= {"cached", "bad"}  # every track decoded before step 1
