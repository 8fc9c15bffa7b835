"""View augmentations on log-mel batches: each equals (or approximates) the log-mel of the waveform operation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spotifai import audio
from spotifai.augment import NONE, AugmentConfig, augment_view, step_generator

N_MELS, FRAMES = 64, 256


def _tone_and_noise(seconds: float = 3.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * audio.SAMPLE_RATE)) / audio.SAMPLE_RATE
    return 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.02 * torch.randn(t.shape, generator=g)


def _mel(wav: torch.Tensor) -> torch.Tensor:
    return audio.LogMel(N_MELS)(wav)[:, :FRAMES]


def test_gain_equals_the_log_mel_of_the_scaled_waveform():
    wav = _tone_and_noise()
    mel = _mel(wav)[None].repeat(4, 1, 1)
    out = augment_view(mel, AugmentConfig(gain_db=6.0), step_generator(0, 1))
    gains_db = torch.rand((4, 1, 1), generator=step_generator(0, 1)) * 12 - 6  # the same draws
    expected = torch.stack([_mel(wav * 10 ** (float(g) / 20)) for g in gains_db.flatten()])
    assert torch.allclose(out, expected, atol=1e-5)


def test_mixing_approximates_the_log_mel_of_the_summed_waveforms():
    a, b = _tone_and_noise(seed=1), 0.5 * _tone_and_noise(seed=2).roll(4000)
    mel = torch.stack([_mel(a), _mel(b)])
    out = augment_view(mel, AugmentConfig(mix_db=6.0), step_generator(3, 7), mix_shift=1)
    level_db = float(torch.rand((2, 1, 1), generator=step_generator(3, 7))[0] * 10 + 6)
    # row 0 = a + b scaled to (mean power of a) - level dB: powers add for uncorrelated signals
    power = lambda m: 10 ** (m * audio.LOG_HALF_RANGE + audio.LOG_CENTER)  # noqa: E731
    scale = math.sqrt(float(power(mel[0]).mean() / power(mel[1]).mean()) * 10 ** (-level_db / 10))
    expected = _mel(a + scale * b)
    # frame by frame the cross term of the two signals is not zero: compare band energies over the patch
    assert torch.allclose(out[0].mean(dim=1), expected.mean(dim=1), atol=0.03)
    assert not torch.allclose(out[0], mel[0], atol=0.01)  # something was mixed in


def test_noise_lowers_the_dynamic_range_and_stays_in_range():
    mel = _mel(_tone_and_noise())[None]
    out = augment_view(mel, AugmentConfig(noise_snr_db=5.0), step_generator(0, 2))
    assert out.shape == mel.shape and float(out.min()) >= -1 and float(out.max()) <= 1
    assert float(out.min()) > float(mel.min())  # quiet bins are filled with noise


def test_masks_cover_at_most_the_configured_width():
    mel = _mel(_tone_and_noise())[None].repeat(8, 1, 1)
    out = augment_view(mel, AugmentConfig(freq_mask=10), step_generator(0, 3))
    changed_bins = (out != mel).all(dim=2).sum(dim=1)
    assert int(changed_bins.max()) <= 10
    out = augment_view(mel, AugmentConfig(time_mask=30), step_generator(0, 3))
    changed_frames = (out != mel).all(dim=1).sum(dim=1)
    assert int(changed_frames.max()) <= 30 and int(changed_frames.sum()) > 0


def test_deterministic_by_step_and_off_by_default():
    mel = _mel(_tone_and_noise())[None].repeat(4, 1, 1)
    cfg = AugmentConfig(gain_db=6, eq_db=6, noise_snr_db=10, mix_db=6, freq_mask=8, time_mask=20, probability=0.5)
    one = augment_view(mel, cfg, step_generator(0, 5), mix_shift=2)
    assert torch.equal(one, augment_view(mel, cfg, step_generator(0, 5), mix_shift=2))
    assert not torch.equal(one, augment_view(mel, cfg, step_generator(0, 6), mix_shift=2))
    assert augment_view(mel, NONE, step_generator(0, 5)) is mel
    assert not NONE.enabled and cfg.enabled


@pytest.mark.parametrize("bad", [{"gain_db": -1}, {"eq_db": float("nan")}, {"probability": 2}, {"freq_mask": 1.5},
                                 {"gain": 3}, {"noise_snr_db": float("inf")}])
def test_invalid_configs_are_errors(bad):
    with pytest.raises(ValueError):
        AugmentConfig.from_dict(bad)


def test_eq_curve_is_bounded():
    mel = torch.zeros((16, N_MELS, 8))  # mid-range log-mel: no clamping
    out = augment_view(mel, AugmentConfig(eq_db=6.0), step_generator(1, 1))
    shift_db = (out - mel) * audio.LOG_HALF_RANGE * 10
    assert float(shift_db.abs().max()) <= 6.0 + 1e-4
    assert np.ptp(shift_db[:, :, 0].numpy(), axis=1).min() > 0  # a curve, not a constant
