"""Audio augmentations of the two views, applied to batches of normalized log-mel patches.

Why on log-mel patches and not on waveforms: the trainer reads patches from the log-mel cache, so after the
first pass no audio is decoded; every augmentation here is the log-mel of a waveform operation (up to the
mel filters' averaging), computed on the batch tensor on the training device in a few element-wise ops:

* **gain**: the signal scaled by ``g`` dB adds ``g / 10`` to every log10 power;
* **EQ**: a random smooth filter adds a smooth curve (a sum of three cosines over the mel axis, at most
  ``eq_db`` dB) to every frame;
* **noise**: stationary noise at a signal-to-noise ratio drawn from ``[noise_snr_db, noise_snr_db + 20]`` dB
  adds power (flat over mel bands, with the per-bin fluctuation of noise averaged by a mel filter);
* **mixing**: a patch of *another* playlist of the batch, ``mix_db`` to ``mix_db + 10`` dB quieter, adds its
  power (a second song leaking in, as in a DJ transition or a noisy room);
* **frequency / time masking** (SpecAugment): one band of up to ``freq_mask`` mel bins and one stretch of up
  to ``time_mask`` frames set to the patch's mean.

Powers are added in the linear domain (``10 ** log10_power``) and the result is clamped and normalized
exactly as :class:`spotifai.audio.LogMel` does. Every row is augmented independently; the random numbers come
from a ``torch.Generator`` seeded by the caller (the trainer uses ``(seed, step)``), so a resumed run augments
its batches exactly as an uninterrupted one. Validation batches are never augmented.
"""

from __future__ import annotations

import math

import torch

from spotifai.audio import LOG_CEIL, LOG_CENTER, LOG_FLOOR, LOG_HALF_RANGE
from spotifai.configs import AugmentConfig

NONE = AugmentConfig()


def _to_log10_power(x: torch.Tensor) -> torch.Tensor:
    return x * LOG_HALF_RANGE + LOG_CENTER


def _normalized(log10_power: torch.Tensor) -> torch.Tensor:
    return (log10_power.clamp(LOG_FLOOR, LOG_CEIL) - LOG_CENTER) / LOG_HALF_RANGE


def _uniform(shape, low: float, high: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(like.device, like.dtype) * (high - low) + low


def _band_mask(n: int, max_width: int, rows: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(rows, n) bool: one band of width uniform in [0, max_width] at a uniform position per row."""
    width = torch.randint(0, max_width + 1, (rows, 1), generator=gen, device=gen.device).to(like.device)
    start = (torch.rand((rows, 1), generator=gen, device=gen.device).to(like.device) * (n - width + 1)).long()
    pos = torch.arange(n, device=like.device)[None, :]
    return (pos >= start) & (pos < start + width)


def augment_view(
    mel: torch.Tensor, config: AugmentConfig, generator: torch.Generator, *, mix_shift: int = 1
) -> torch.Tensor:
    """An augmented copy of ``mel`` (B, n_mels, frames), normalized log-mel as :class:`spotifai.audio.LogMel`
    gives it. ``mix_shift``: row ``i`` is mixed with row ``(i + mix_shift) % B`` (the trainer passes the rows of
    one playlist, so the partner comes from another playlist). The input is not modified."""
    if not config.enabled:
        return mel
    b, n_mels, frames = mel.shape
    x = mel.float()
    log_p = _to_log10_power(x)
    shift = torch.zeros((b, 1, 1), device=x.device)
    if config.gain_db > 0:
        shift = shift + _uniform((b, 1, 1), -config.gain_db, config.gain_db, generator, x) / 10
    if config.eq_db > 0:
        m = torch.linspace(0, math.pi, n_mels, device=x.device)[None, :, None]
        curve = torch.zeros((b, n_mels, 1), device=x.device)
        for j in range(1, 4):
            amp = _uniform((b, 1, 1), -1.0, 1.0, generator, x) / j
            phase = _uniform((b, 1, 1), 0.0, 2 * math.pi, generator, x)
            curve = curve + amp * torch.cos(j * m + phase)
        peak = curve.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)
        curve = curve / peak * _uniform((b, 1, 1), 0.0, config.eq_db, generator, x)
        shift = shift + curve / 10
    log_p = log_p + shift
    if config.noise_snr_db > 0 or config.mix_db > 0:
        power = torch.pow(10.0, log_p)
        mean_power = power.mean(dim=(1, 2), keepdim=True)
        if config.mix_db > 0:
            level = _uniform((b, 1, 1), config.mix_db, config.mix_db + 10, generator, x)
            partner = torch.roll(torch.pow(10.0, _to_log10_power(x)), shifts=-mix_shift, dims=0)
            partner_mean = partner.mean(dim=(1, 2), keepdim=True).clamp_min(10.0**LOG_FLOOR)
            power = power + partner * (mean_power / partner_mean) * torch.pow(10.0, -level / 10)
        if config.noise_snr_db > 0:
            snr = _uniform((b, 1, 1), config.noise_snr_db, config.noise_snr_db + 20, generator, x)
            # a mel band averages many FFT bins of noise: its power fluctuates around the mean by about
            # 1/sqrt(8) (the spread of a chi-square with 16 degrees of freedom, approximated as a normal)
            noise = torch.randn((b, n_mels, frames), generator=generator, device=generator.device).to(x.device)
            fluct = (1 + noise / math.sqrt(8)).clamp_min(0.05)
            power = power + mean_power * torch.pow(10.0, -snr / 10) * fluct
        log_p = torch.log10(power.clamp_min(10.0**LOG_FLOOR))
    out = _normalized(log_p)
    if config.freq_mask > 0 or config.time_mask > 0:
        fill = out.mean(dim=(1, 2), keepdim=True)
        if config.freq_mask > 0:
            out = torch.where(_band_mask(n_mels, min(config.freq_mask, n_mels), b, generator, x)[:, :, None], fill, out)
        if config.time_mask > 0:
            out = torch.where(_band_mask(frames, min(config.time_mask, frames), b, generator, x)[:, None, :], fill, out)
    if config.probability < 1:
        keep = torch.rand((b, 1, 1), generator=generator, device=generator.device).to(x.device) >= config.probability
        out = torch.where(keep, x, out)
    return out.to(mel.dtype)


def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of a training step's augmentations on ``device``: a function of (seed, step, rank) only."""
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + int(rank)) % (2**63 - 1))
    return gen
