"""The plain config dataclasses of the encoder, the audio patches and the view augmentations.

They import no torch (the experiment config, :mod:`spotifai.experiment`, is read without it); the modules that
use them (:mod:`spotifai.model`, :mod:`spotifai.audio`, :mod:`spotifai.augment`) import them from here. Each
round-trips through JSON via ``to_dict`` / ``from_dict`` (unknown keys are errors) and checks its values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

SAMPLE_RATE = 16000
"""Target sample rate (Hz)."""
HOP_LENGTH = 160
"""STFT hop, samples (10 ms at 16 kHz): 100 frames per second."""


class _SectionConfig:
    """``to_dict`` / strict ``from_dict`` of a config dataclass (an unknown key is a ValueError naming it)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(f"unknown {cls.__name__} key {key!r} (known: {', '.join(sorted(known))})")
        return cls(**d)


@dataclass
class EncoderConfig(_SectionConfig):
    """Encoder hyper-parameters (plain data; round-trips through JSON via to_dict/from_dict)."""

    n_mels: int = 80
    n_frames: int = 1024
    model_dim: int = 256
    projection_dim: int = 512
    n_layers: int = 8
    n_heads: int = 8
    ff_dim: int | None = None  # None -> 4 * model_dim
    dropout: float = 0.0
    time_stride: int = 2  # frames per token after the stem (Whisper: 2); see spotifai.model
    pooling: str = "mean"  # patch vectors -> a song's vector: "mean" (of unit vectors) or "max"; see spotifai.embed

    def __post_init__(self) -> None:
        for name in ("n_mels", "n_frames", "model_dim", "projection_dim", "n_layers", "n_heads", "time_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
        if self.ff_dim is not None and (
            isinstance(self.ff_dim, bool) or not isinstance(self.ff_dim, int) or self.ff_dim <= 0
        ):
            raise ValueError(f"EncoderConfig.ff_dim must be a positive int or None, got {self.ff_dim!r}")
        if self.model_dim % self.n_heads:
            raise ValueError(
                f"EncoderConfig.n_heads ({self.n_heads}) must divide model_dim ({self.model_dim})"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"EncoderConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pooling not in ("mean", "max"):
            raise ValueError(f"EncoderConfig.pooling must be 'mean' or 'max', got {self.pooling!r}")
        if self.time_stride > self.n_frames:
            raise ValueError(
                f"EncoderConfig.time_stride ({self.time_stride}) must not exceed n_frames ({self.n_frames})"
            )

    @property
    def feedforward_dim(self) -> int:
        return self.ff_dim if self.ff_dim is not None else 4 * self.model_dim

    def tokens(self, frames: int) -> int:
        """Tokens the transformer sees for a ``frames``-frame input (the stem's output length)."""
        if self.time_stride <= 2:
            return -(-frames // self.time_stride)
        return (frames - self.time_stride) // self.time_stride + 1


@dataclass(frozen=True)
class AudioConfig(_SectionConfig):
    """Spectrogram/patch settings.  ``n_mels`` mel bands; ``patch_frames`` frames per patch (10 ms each);
    ``max_time_padding`` the largest padded fraction allowed for the last patch of a track."""

    n_mels: int = 80
    patch_frames: int = 1024
    max_time_padding: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.n_mels, int) or self.n_mels <= 0:
            raise ValueError(f"AudioConfig.n_mels must be a positive int, got {self.n_mels!r}")
        if not isinstance(self.patch_frames, int) or self.patch_frames <= 0:
            raise ValueError(f"AudioConfig.patch_frames must be a positive int, got {self.patch_frames!r}")
        if not 0.0 <= float(self.max_time_padding) < 1.0:
            raise ValueError(f"AudioConfig.max_time_padding must be in [0, 1), got {self.max_time_padding!r}")

    @property
    def patch_seconds(self) -> float:
        """Duration of one patch in seconds."""
        return self.patch_frames * HOP_LENGTH / SAMPLE_RATE


@dataclass(frozen=True)
class AugmentConfig(_SectionConfig):
    """Strengths of the view augmentations (every 0 = off; :data:`NONE` switches all off).

    ``gain_db``: gain drawn uniformly in ``[-gain_db, +gain_db]`` dB. ``eq_db``: largest boost or cut of the
    random EQ curve, dB. ``noise_snr_db``: lowest signal-to-noise ratio of the added noise, dB (drawn up to 20 dB
    higher; 0 = no noise). ``mix_db``: how much quieter, at least, the mixed-in patch of another playlist is, dB
    (drawn up to 10 dB quieter still; 0 = no mixing). ``freq_mask`` / ``time_mask``: largest masked band, mel
    bins / frames (0 = none). ``probability``: chance that a row is augmented at all (each row independently).
    """

    gain_db: float = 0.0
    eq_db: float = 0.0
    noise_snr_db: float = 0.0
    mix_db: float = 0.0
    freq_mask: int = 0
    time_mask: int = 0
    probability: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = int if f.type in (int, "int") else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
                raise ValueError(f"AugmentConfig.{f.name} must be a {kind.__name__}, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"AugmentConfig.{f.name} must be finite and >= 0, got {value!r}")
        if self.probability > 1:
            raise ValueError(f"AugmentConfig.probability must be in [0, 1], got {self.probability!r}")
        if self.gain_db > 40 or self.eq_db > 40:
            raise ValueError("AugmentConfig.gain_db and eq_db must be <= 40 dB")

    @property
    def enabled(self) -> bool:
        return self.probability > 0 and any(
            getattr(self, f.name) > 0 for f in fields(self) if f.name != "probability"
        )

