"""Audio processor: real WAV/FLAC/OGG/MP3 files, decode, resample, log-mel, patches, windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from spotifai import audio
from spotifai.audio import HOP_LENGTH, PAD_VALUE, SAMPLE_RATE, AudioConfig, AudioError, LogMel

FORMATS = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


def _signal(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """A chord with an amplitude envelope plus a little noise: (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    env = 0.5 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    cols = []
    for c in range(channels):
        f = 220.0 * (c + 1)
        x = env * (0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 3.1 * f * t))
        cols.append(x + 0.01 * rng.standard_normal(t.size))
    return np.stack(cols, axis=1).astype(np.float32)


def _write(path, sr, seconds, channels, fmt_ext):
    data = _signal(sr, seconds, channels)
    sf.write(str(path), data, sr, subtype=FORMATS[fmt_ext])
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> (path, sr, channels, seconds) for every format at several rates/channel counts."""
    d = tmp_path_factory.mktemp("audio")
    out = {}
    combos = [(44100, 2), (48000, 1), (22050, 1), (44100, 1), (16000, 2)]
    for ext in FORMATS:
        for sr, ch in combos:
            p = d / f"s_{sr}_{ch}.{ext}"
            _write(p, sr, 3.0, ch, ext)
            out[(ext, sr, ch)] = (p, sr, ch, 3.0)
    return out


@pytest.mark.parametrize("ext", list(FORMATS))
def test_decode_all_formats_rates(files, ext):
    for (e, _sr, _ch), (p, _, _, seconds) in files.items():
        if e != ext:
            continue
        wav = audio.load_audio(p)
        assert wav.dtype == torch.float32 and wav.dim() == 1
        # 16 kHz: length ~ seconds * 16000 (lossy decoders may add/trim a few ms)
        assert abs(wav.numel() - seconds * SAMPLE_RATE) < 0.08 * SAMPLE_RATE, (p, wav.numel())
        assert 0.05 < wav.abs().max() <= 1.0
        assert abs(audio.audio_duration(p) - seconds) < 0.08


def test_decode_matches_reference_resample(files):
    """WAV: our decode+mono+resample equals soundfile + torchaudio.functional.resample."""
    for sr, ch in [(44100, 2), (48000, 1), (22050, 1)]:
        p = files[("wav", sr, ch)][0]
        data, _ = sf.read(str(p), dtype="float32", always_2d=True)
        ref = torchaudio.functional.resample(torch.from_numpy(data.mean(axis=1)), sr, SAMPLE_RATE)
        ours = audio.load_audio(p)
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=2e-5)


def test_resample_arbitrary_rates_match_torchaudio():
    for sr in (8000, 11025, 22050, 32000, 44100, 48000, 96000):
        x = torch.randn(2, sr // 3 + 11)
        ref = torchaudio.functional.resample(x, sr, SAMPLE_RATE)
        out = audio.resample(x, sr)
        assert out.shape == ref.shape, sr
        assert torch.allclose(out, ref, atol=1e-4), sr


def test_logmel_shapes_ranges_and_batch():
    lm = LogMel(64)
    x = 0.5 * torch.randn(3, 16000)
    mel = lm(x)
    assert mel.shape == (3, 64, audio.n_frames(16000)) == (3, 64, 98)
    assert mel.min() >= -1.0 and mel.max() <= 1.0
    single = lm(x[1])
    assert single.shape == (64, 98)
    assert torch.allclose(single, mel[1], atol=1e-5)
    # silence is the floor, a full-scale sine stays below the ceiling
    assert torch.all(lm(torch.zeros(16000)) == PAD_VALUE)
    sine = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000)
    assert lm(sine).max() < 1.0
    # fixed constants: scaling the input by 10 adds 2 log10 units / 4 = 0.5 where unclamped
    quiet = lm(0.01 * sine)
    loud = lm(0.1 * sine)
    mask = (quiet > -0.99) & (loud < 0.99)
    assert mask.any() and torch.allclose((loud - quiet)[mask], torch.full_like(loud[mask], 0.5), atol=1e-3)


def test_logmel_equals_torchaudio_melspectrogram():
    x = 0.3 * torch.randn(2, 8000)
    ref_mel = torchaudio.transforms.MelSpectrogram(
        SAMPLE_RATE,
        n_fft=400,
        win_length=400,
        hop_length=160,
        n_mels=48,
        center=False,
        norm="slaney",
        mel_scale="slaney",
    )(x)
    ref = (ref_mel.clamp(min=10**audio.LOG_FLOOR).log10().clamp(max=audio.LOG_CEIL) - audio.LOG_CENTER) / 4
    assert torch.allclose(LogMel(48)(x), ref, atol=1e-4)


def test_parallel_decode_equals_sequential(tmp_path, monkeypatch):
    """Long reads are decoded, resampled and mel'ed in chunks by threads; the seams must be invisible."""
    cfg = AudioConfig(n_mels=32, patch_frames=64)
    for ext in FORMATS:
        for sr in (22050, 48000, 16000):
            p = tmp_path / f"long_{sr}.{ext}"
            _write(p, sr, 4.0, 2, ext)
            monkeypatch.setattr(audio, "DECODE_THREADS", 1)
            sequential = audio.load_audio(p)
            seq_patches = audio.track_patches(p, cfg)
            monkeypatch.setattr(audio, "DECODE_THREADS", 3)
            monkeypatch.setattr(audio, "PARALLEL_DECODE_MIN_SECONDS", 0.5)
            parallel = audio.load_audio(p)
            par_patches = audio.track_patches(p, cfg)
            monkeypatch.undo()
            assert parallel.shape == sequential.shape, (ext, sr)
            # libsndfile's MP3 path may differ by 1 ulp depending on read sizes; BLAS blocking by rounding
            assert torch.allclose(parallel, sequential, rtol=0, atol=1e-5), (ext, sr)
            assert par_patches.shape == seq_patches.shape
            assert torch.allclose(par_patches, seq_patches, rtol=0, atol=1e-4), (ext, sr)


def test_to_patches_padding_rule():
    mel = torch.randn(8, 100)
    assert audio.to_patches(mel, 40, 0.25).shape == (2, 8, 40)  # 20 left < 30 -> dropped
    mel = torch.randn(8, 110)
    p = audio.to_patches(mel, 40, 0.25)  # 30 left >= 30 -> padded
    assert p.shape == (3, 8, 40)
    assert torch.equal(p[2, :, :30], mel[:, 80:]) and torch.all(p[2, :, 30:] == PAD_VALUE)
    assert torch.equal(p[1], mel[:, 40:80])
    assert audio.to_patches(torch.randn(8, 29), 40, 0.25).shape == (0, 8, 40)
    assert audio.to_patches(torch.randn(8, 30), 40, 0.25).shape == (1, 8, 40)
    assert audio.to_patches(torch.randn(8, 39), 40, 0.0).shape == (0, 8, 40)


def test_track_patches_and_config(files):
    cfg = AudioConfig(n_mels=32, patch_frames=100)
    assert cfg.patch_seconds == pytest.approx(1.0)
    p = files[("flac", 44100, 2)][0]
    patches = audio.track_patches(p, cfg)
    assert patches.shape == (3, 32, 100)  # 3 s -> 298 frames -> 2 full + 98 (>= 75) padded
    assert patches.min() >= -1 and patches.max() <= 1
    assert AudioConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        AudioConfig.from_dict({"n_mels": 3, "bogus": 1})
    wav, sr = sf.read(str(p), dtype="float32")
    direct = audio.waveform_patches(torch.from_numpy(wav.T.copy()), sr, cfg)
    assert torch.allclose(direct, patches, atol=1e-4)


@pytest.mark.parametrize("ext,tol", [("wav", 1e-4), ("flac", 1e-4), ("ogg", 0.05), ("mp3", 0.08)])
def test_windowed_read_equals_whole_file(files, ext, tol):
    cfg = AudioConfig(n_mels=40, patch_frames=64)
    for sr, ch in [(44100, 2), (48000, 1), (22050, 1), (16000, 2)]:
        p = files[(ext, sr, ch)][0]
        whole = LogMel(40)(audio.load_audio(p))
        for offset in (0.0, 0.37, 1.5, 2.3):
            f0 = round(offset * 100)
            patch = audio.read_patch(p, offset, cfg)
            assert patch.shape == (40, 64)
            ref = whole[:, f0 : f0 + 64]
            diff = (patch[:, : ref.shape[1]] - ref).abs()
            assert diff.mean() < tol, (p, offset, diff.mean())
        # raw samples of a window equal the same samples of the whole file
        w = audio.load_audio(p, offset=1.0, duration=0.5)
        full = audio.load_audio(p)
        assert w.numel() == 8000
        if ext in ("wav", "flac"):
            assert torch.allclose(w, full[16000:24000], atol=1e-4), p


def test_window_past_end(files):
    cfg = AudioConfig(n_mels=16, patch_frames=100, max_time_padding=0.25)
    p = files[("wav", 44100, 2)][0]
    patch = audio.read_patch(p, 2.2, cfg)  # 80 frames left -> padded
    assert patch.shape == (16, 100) and torch.all(patch[:, -10:] == PAD_VALUE)
    with pytest.raises(AudioError, match="frames"):
        audio.read_patch(p, 2.5, cfg)
    with pytest.raises(AudioError, match="beyond the end"):
        audio.read_patch(p, 10.0, cfg)


def test_errors_name_the_file(tmp_path):
    cfg = AudioConfig(n_mels=16, patch_frames=100)
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError) as e:
        audio.load_audio(missing)
    assert e.value.path == str(missing) and str(missing) in str(e.value) and "not found" in e.value.reason

    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as e:
        audio.track_patches(empty, cfg)
    assert str(empty) in str(e.value)

    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="unreadable") as e:
        audio.track_patches(garbage, cfg)
    assert str(garbage) in str(e.value)

    good = tmp_path / "good.wav"
    _write(good, 22050, 1.0, 1, "wav")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError) as e:
        audio.load_audio(truncated)
    assert str(truncated) in str(e.value)

    no_samples = tmp_path / "nosamples.wav"
    sf.write(str(no_samples), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples|unreadable"):
        audio.load_audio(no_samples)

    silent = tmp_path / "silent.flac"
    sf.write(str(silent), np.zeros((32000, 2), np.float32), 44100)
    with pytest.raises(AudioError, match="silent") as e:
        audio.track_patches(silent, cfg)
    assert str(silent) in str(e.value)

    short = tmp_path / "short.ogg"
    sf.write(str(short), _signal(44100, 0.5, 2), 44100)
    with pytest.raises(AudioError, match="too short") as e:
        audio.track_patches(short, cfg)
    assert str(short) in str(e.value) and e.value.reason.startswith("too short")


def test_fallback_decoder_for_m4a(tmp_path):
    """Formats libsndfile cannot read go through torchcodec (FFmpeg)."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = tmp_path / "src.wav"
    _write(src, 44100, 2.0, 2, "wav")
    m4a = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(m4a)], check=True)
    wav = audio.load_audio(m4a)
    assert abs(wav.numel() - 32000) < 0.1 * SAMPLE_RATE
    assert abs(audio.audio_duration(m4a) - 2.0) < 0.1
    win = audio.load_audio(m4a, offset=0.5, duration=0.5)
    assert win.numel() == 8000
    ref = audio.load_audio(src)
    assert (LogMel(32)(wav[:16000]) - LogMel(32)(ref[:16000])).abs().mean() < 0.1


def test_audio_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(AudioError("/x.wav", "silent audio")))
    assert err.path == "/x.wav" and err.reason == "silent audio" and str(err) == "/x.wav: silent audio"


def test_logmel_window_alignment_constant():
    assert HOP_LENGTH * 100 == SAMPLE_RATE
