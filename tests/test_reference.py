"""spotifai.reference: cache keying, the worker's subprocess contract (a fake python that writes the npz), the
error when the musicnn venv is missing; and, only where the musicnn venv is installed, the real worker
against musicnn's own extractor and a checkpoint that does not load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from spotifai import reference as ref

# A stand-in for the musicnn venv's python: logs its argv, and writes the worker's npz with a vector that is
# a function of the path (its first value: the path's length), failing paths whose name contains "bad".
FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, sys
    import numpy as np
    argv = sys.argv[1:]
    args = dict(zip(argv[2::2], argv[3::2]))
    paths = json.load(open(args["--input"]))
    with open({{log!r}}, "a") as f:
        f.write(json.dumps({{{{"argv": argv, "paths": paths}}}}) + "\\n")
    code = {{code}}
    if code:
        print("fake worker: failing on purpose", file=sys.stderr)
        sys.exit(code)
    ok = [p for p in paths if "bad" not in p]
    bad = [p for p in paths if "bad" in p]
    vectors = np.zeros((len(ok), 200), np.float32)
    vectors[:, 0] = [len(p) for p in ok]
    meta = {{{{"model": "MSD_musicnn", "layer": "penultimate", "dim": 200, "seconds": float(args["--seconds"])}}}}
    np.savez(args["--output"], paths=np.array(ok, dtype=str), vectors=vectors,
             failed_paths=np.array(bad, dtype=str), failed_reasons=np.array(["broken"] * len(bad), dtype=str),
             meta=np.array(json.dumps(meta)))
""")


def fake_python(tmp_path: Path, code: int = 0) -> tuple[Path, Path]:
    log = tmp_path / "calls.jsonl"
    exe = tmp_path / "fake-python"
    exe.write_text(FAKE.format(log=str(log), code=code))
    exe.chmod(0o755)
    return exe, log


def calls(log: Path) -> list[dict]:
    """The fake worker's calls: {"argv": [...], "paths": [the listing it was given]}."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def audio_files(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        path = folder / name
        path.write_bytes(b"x" * (100 + i))  # the fake worker never reads them
        out.append(str(path))
    return out


def test_file_key_is_real_path_size_mtime(tmp_path):
    (path,) = audio_files(tmp_path, ["a.wav"])
    link = tmp_path / "link.wav"
    link.symlink_to(path)
    key = ref.file_key(path)
    assert key == (os.path.realpath(path), 100, os.stat(path).st_mtime_ns)
    assert ref.file_key(link) == key  # the same file through a link: the same key
    os.utime(path, ns=(0, 10**9))
    assert ref.file_key(path) != key
    with pytest.raises(OSError):
        ref.file_key(tmp_path / "missing.wav")


def test_worker_contract_rows_failures_and_chunks(tmp_path):
    exe, log = fake_python(tmp_path)
    paths = audio_files(tmp_path / "music", ["a.wav", "bb.wav", "bad.wav", "ccc.wav", "dddd.wav"])
    missing = str(tmp_path / "music" / "missing.wav")
    vectors, info = ref.musicnn_vectors([*paths, missing, paths[0]], python=exe, chunk=2)
    assert vectors.shape == (7, 200) and vectors.dtype == np.float32
    # rows follow the input order; the duplicate is embedded once and filled twice
    assert vectors[[0, 1, 3, 4, 6], 0].tolist() == [float(len(os.path.realpath(p))) for p in
                                                     [paths[0], paths[1], paths[3], paths[4], paths[0]]]
    assert np.isnan(vectors[2]).all() and np.isnan(vectors[5]).all()
    failed = dict(info["failed"])
    assert failed[paths[2]] == "broken" and failed[missing].startswith("FileNotFoundError")
    assert info["computed"] == 5 and info["cached"] == 0 and info["dim"] == 200
    # 5 distinct existing tracks in chunks of 2: three isolated calls of the worker script
    runs = calls(log)
    assert [len(r["paths"]) for r in runs] == [2, 2, 1]
    assert sum((r["paths"] for r in runs), []) == [os.path.realpath(p) for p in paths]
    for argv in (r["argv"] for r in runs):
        assert argv[:2] == ["-I", str(ref.WORKER)]
        args = dict(zip(argv[2::2], argv[3::2], strict=False))
        assert args["--model"] == "MSD_musicnn" and float(args["--seconds"]) == 120.0
    assert ref.WORKER.is_file() and ref.WORKER.parent == Path(ref.__file__).resolve().parent


def test_cache_reuses_and_recomputes_changed_files(tmp_path):
    exe, log = fake_python(tmp_path)
    paths = audio_files(tmp_path / "music", ["a.wav", "b.wav", "bad.wav"])
    cache = tmp_path / "out" / "musicnn.npz"
    first, info = ref.musicnn_vectors(paths, python=exe, cache=cache)
    assert info["computed"] == 3 and len(calls(log)) == 1 and cache.exists()
    entries, meta = ref.load_cache(cache)
    assert set(entries) == {ref.file_key(p) for p in paths[:2]}  # failures are not cached
    assert meta["model"] == "MSD_musicnn"

    # everything cached but the failure: no venv needed for the rest, the failure is retried
    again, info = ref.musicnn_vectors(paths[:2], python=tmp_path / "absent-python", cache=cache)
    np.testing.assert_array_equal(again, first[:2])
    assert info["cached"] == 2 and info["computed"] == 0 and info["python"] is None
    _, info = ref.musicnn_vectors(paths, python=exe, cache=cache)
    assert calls(log)[-1]["paths"] == [os.path.realpath(paths[2])] and info["cached"] == 2

    # a changed file (size or mtime) is embedded again, the other one is not
    Path(paths[1]).write_bytes(b"y" * 500)
    n_calls = len(calls(log))
    _, info = ref.musicnn_vectors(paths[:2], python=exe, cache=cache)
    assert info["cached"] == 1 and info["computed"] == 1 and len(calls(log)) == n_calls + 1
    entries = ref.load_cache(cache)[0]
    assert ref.file_key(paths[1]) in entries and len(entries) == 2  # the old version's entry is gone


def test_cache_of_another_model_or_unreadable_is_ignored(tmp_path, caplog):
    cache = tmp_path / "musicnn.npz"
    ref.save_cache(cache, {("/x.wav", 1, 2): np.ones(200, np.float32)},
                   {"model": "MTT_musicnn", "layer": "penultimate", "seconds": 120.0, "dim": 200})
    assert ref.load_cache(cache) == ({}, {})
    cache.write_bytes(b"not an npz")
    assert ref.load_cache(cache) == ({}, {})
    assert "ignored" in caplog.text
    assert ref.load_cache(tmp_path / "absent.npz") == ({}, {})


def test_missing_venv_is_a_clear_error(tmp_path, monkeypatch):
    (path,) = audio_files(tmp_path, ["a.wav"])
    with pytest.raises(ref.MusicnnUnavailable, match=r"install_musicnn\.sh") as err:
        ref.musicnn_vectors([path], python=tmp_path / "no-venv" / "bin" / "python")
    assert "no-venv" in str(err.value)
    monkeypatch.setenv(ref.ENV_PYTHON, str(tmp_path / "env-venv" / "bin" / "python"))
    with pytest.raises(ref.MusicnnUnavailable, match="SPOTIFAI_MUSICNN_PYTHON"):
        ref.musicnn_vectors([path])
    # default: .venv-musicnn beside the package's checkout, not any fixed folder
    monkeypatch.delenv(ref.ENV_PYTHON)
    assert ref.DEFAULT_PYTHON == Path(ref.__file__).resolve().parent.parent / ".venv-musicnn" / "bin" / "python"
    monkeypatch.setattr(ref, "DEFAULT_PYTHON", tmp_path / "default-venv" / "bin" / "python")
    with pytest.raises(ref.MusicnnUnavailable, match="default-venv"):
        ref.musicnn_vectors([path])


def test_worker_failures_raise(tmp_path):
    (path,) = audio_files(tmp_path, ["a.wav"])
    exe, _ = fake_python(tmp_path, code=3)
    with pytest.raises(ref.MusicnnUnavailable, match="lacks musicnn"):
        ref.musicnn_vectors([path], python=exe)
    exe, _ = fake_python(tmp_path, code=2)
    with pytest.raises(RuntimeError, match=r"(?s)exit 2.*failing on purpose"):
        ref.musicnn_vectors([path], python=exe)


# ---------------------------------------------------------------- real musicnn (skipped without its venv)

def _musicnn_python() -> Path | None:
    try:
        return ref.musicnn_python()
    except ref.MusicnnUnavailable:
        return None


MUSICNN = _musicnn_python()
needs_musicnn = pytest.mark.skipif(MUSICNN is None, reason=f"musicnn venv absent ({ref.SETUP})")


def synth(path: Path, seconds: float, seed: int, sr: int = 22050) -> str:
    """A few seconds of changing chords with noise bursts (so windows differ), as a WAV."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for start in np.arange(0, seconds, 1.5):
        on = (t >= start) & (t < start + 1.5)
        for f in rng.choice([110, 147, 196, 220, 262, 330, 392, 440, 523], 3):
            y[on] += 0.1 * np.sin(2 * np.pi * f * t[on])
    y += 0.05 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 1.7 * t) > 0.5)
    sf.write(path, y.astype(np.float32), sr)
    return str(path)


@pytest.mark.slow
@needs_musicnn
def test_worker_matches_musicnn_extractor(tmp_path):
    one = synth(tmp_path / "one.wav", 4.0, 0)  # one 3 s window
    three = synth(tmp_path / "three.wav", 10.0, 1)  # three windows
    script = textwrap.dedent(f"""
        import json, sys, warnings
        import numpy as np
        sys.path.insert(0, {str(ref.WORKER.parent)!r})
        warnings.simplefilter("ignore")
        import reference_musicnn as rm
        from musicnn.extractor import extractor
        net = rm.Musicnn("MSD_musicnn")
        out = {{}}
        for path in [{one!r}, {three!r}]:
            import librosa
            audio, _ = librosa.load(path, sr=16000, duration=120.0)
            pen, tags = net.activations(net.windows(net.log_mel(audio)), tags=True)
            vector, windows, _ = net.track(path, 120.0)
            taggram, _, feats = extractor(path, model="MSD_musicnn", extract_features=True)
            theirs = feats["penultimate"]
            out[path] = dict(windows=windows, shape=list(theirs.shape),
                             tags=float(np.abs(tags - taggram).max()),
                             first=float(np.abs(pen[0] - theirs[0]).max()),
                             mean=float(np.abs(vector - theirs.mean(0)).max()),
                             track=float(np.abs(vector - pen.mean(0)).max()),
                             theirs_repeat=float(np.abs(theirs - theirs[0]).max()),
                             ours_spread=float(np.abs(pen - pen[0]).max()))
        print(json.dumps(out))
    """)
    proc = subprocess.run([str(MUSICNN), "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for path, r in res.items():
        assert r["tags"] < 1e-5 and r["first"] < 1e-4 and r["track"] < 1e-6, (path, r)
    # one window: our vector is the mean of musicnn's features["penultimate"]
    assert res[one]["windows"] == 1 and res[one]["mean"] < 1e-4
    # three windows: the taggram agrees window by window, but musicnn 0.1.0 repeats the first window's
    # penultimate row (its batch loop concatenates `penultimate_` of the first batch), so its mean differs
    assert res[three]["windows"] == 3 and res[three]["shape"] == [3, 200]
    assert res[three]["theirs_repeat"] == 0.0 and res[three]["ours_spread"] > 0.01


@pytest.mark.slow
@needs_musicnn
def test_real_worker_end_to_end_and_bad_checkpoints(tmp_path):
    good = [synth(tmp_path / f"t{i}.wav", 7.0, i) for i in range(2)]
    short = synth(tmp_path / "short.wav", 2.0, 5)
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS but not really")
    cache = tmp_path / "musicnn.npz"
    vectors, info = ref.musicnn_vectors([good[0], short, str(broken), good[1]], cache=cache)
    assert vectors.shape == (4, 200)
    assert np.isfinite(vectors[[0, 3]]).all() and np.isnan(vectors[[1, 2]]).all()
    assert not np.allclose(vectors[0], vectors[3])
    assert "shorter than one 3 s window" in dict(info["failed"])[short]
    assert info["meta"]["versions"]["musicnn"] == "0.1.0" and info["meta"]["checkpoint"] == "MSD_musicnn/"

    # a missing checkpoint and one of another architecture: errors (status 2), never random weights
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(good[:1]))
    pkg = subprocess.run([str(MUSICNN), "-I", "-c", "import musicnn, os; print(os.path.dirname(musicnn.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    for prefix, message in [(str(tmp_path / "nowhere" / ""), "FileNotFoundError"),
                            (os.path.join(pkg, "MTT_vgg", ""), "not found in checkpoint")]:
        out = tmp_path / "x.npz"
        proc = subprocess.run([str(MUSICNN), "-I", str(ref.WORKER), "--input", str(listing), "--output",
                               str(out), "--checkpoint", prefix], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert not out.exists()
