"""The Whisper-inspired audio encoder (patch -> **features**) and the projector (features -> **projections**).

Shapes (B = batch, M = n_mels, T = frames of 10 ms, D = model_dim, P = projection_dim)::

    mel (B, M, T)
      -> Conv1d(M -> D, k=3, pad 1) + GELU                  (B, D, T)
      -> Conv1d(D -> D, k=3, stride 2, pad 1) + GELU        (B, D, T' = ceil(T / 2))
         (time_stride s: k=3 pad 1 for s <= 2; k=s pad 0, T' = floor(T / s), for s > 2)
      -> transpose + sinusoidal positions                   (B, T', D)
      -> n_layers x pre-norm transformer block              (B, T', D)
           x = x + Attn(LN(x))   (multi-head, scaled_dot_product_attention, batch-first)
           x = x + MLP(LN(x))    (Linear D -> ff_dim, GELU, Linear ff_dim -> D)
      -> LayerNorm, mean over time                          (B, D)        = features
      -> Linear(D -> P), BatchNorm1d(P), ReLU, Linear(P -> P) (B, P)      = projections

Nothing is tied to T: the sinusoidal table is computed for any length (``n_frames`` only sizes the cached table)
and pooling over time is a mean, so a model trained on 5 s patches embeds longer windows unchanged.  The projector
has BatchNorm, and both outputs are standardized per dimension by affine-free BatchNorm: call ``.eval()`` for
inference (running statistics). Running averages lag the weights while the learning rate is high, so a
mid-training checkpoint standardizes with stale statistics; :func:`calibrate_norms` recomputes them for the
current weights (the trainer does it before each validation with ``progress.calibration_batches``).

``time_stride`` > 2 makes the second convolution a non-overlapping patchify (kernel = stride, as in AST/ViT):
the transformer's cost per patch falls by about s / 2, so long patches fit a CPU budget (the ``cpu`` preset of
:mod:`spotifai.experiment`).  The default 2 is the Whisper stem, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from spotifai.configs import EncoderConfig

_OUTPUTS = ("both", "features", "projections")


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table, (length, channels): [sin | cos] halves (odd channels get a zero)."""
    half = channels // 2
    inv = torch.exp(-math.log(max_timescale) / max(half - 1, 1) * torch.arange(half, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    table = torch.cat([torch.sin(t), torch.cos(t)], dim=1)
    if channels % 2:
        table = F.pad(table, (0, 1))
    return table


class Block(nn.Module):
    """Pre-norm transformer block on (B, T, D)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        # (B, T, 3, H, d_h) -> (B, H, 3, T, d_h) -> three strided (B, H, T, d_h) views.  unbind (rather than
        # indexing a permuted tensor) matters: its backward is one stack instead of three zero-fill + copy
        # passes, and the CPU flash kernel reads the strided views directly (~9x faster attention fwd+bwd).
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, d // h).transpose(1, 3).unbind(2)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(b, t, d)
        x = x + F.dropout(self.out(a), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))


class AudioEncoder(nn.Module):
    """Whisper-style encoder + projector.  ``forward(mel (B, n_mels, T), output="both")`` ->
    ``(features (B, model_dim), projections (B, projection_dim))``; ``output="features"``/``"projections"``
    returns just that tensor (``"features"`` skips the projector)."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EncoderConfig()
        d = config.model_dim
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        s = config.time_stride
        self.conv2 = nn.Conv1d(d, d, kernel_size=3 if s <= 2 else s, stride=s, padding=1 if s <= 2 else 0)
        self.register_buffer("positions", sinusoids(config.tokens(config.n_frames), d), persistent=False)
        self.blocks = nn.ModuleList(
            Block(d, config.n_heads, config.feedforward_dim, config.dropout) for _ in range(config.n_layers)
        )
        self.ln_post = nn.LayerNorm(d)
        p = config.projection_dim
        self.projector = nn.Sequential(
            nn.Linear(d, p), nn.BatchNorm1d(p), nn.ReLU(inplace=True), nn.Linear(p, p)
        )
        # Standardize features and projections per dimension (batch statistics in training, running statistics
        # at inference). The loss only sees standardized projections, so their raw mean is arbitrary; without
        # this every track vector shares one large common component and all cosine similarities are ~1.
        # No affine parameters: these layers change the geometry of the outputs, not what the model can learn.
        self.feature_norm = nn.BatchNorm1d(d, affine=False)
        self.projection_norm = nn.BatchNorm1d(p, affine=False)

    def _positions(self, length: int, like: torch.Tensor) -> torch.Tensor:
        if length > self.positions.shape[0]:
            return sinusoids(length, self.config.model_dim).to(device=like.device, dtype=like.dtype)
        return self.positions[:length].to(like.dtype)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) -> (B, model_dim) features."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"expected mel of shape (B, {self.config.n_mels}, T), got {tuple(mel.shape)}")
        if self.config.tokens(mel.shape[2]) < 1:  # fewer frames than one token of the stem
            raise ValueError(
                f"expected at least time_stride = {self.config.time_stride} frames, got {mel.shape[2]}"
            )
        x = F.gelu(self.conv1(mel))
        # (B, T', D) made contiguous once: otherwise the residual stream keeps the conv's channel-first memory
        # layout and every LayerNorm/Linear of every block (and its backward) pays a hidden copy.
        x = F.gelu(self.conv2(x)).transpose(1, 2).contiguous()
        x = x + self._positions(x.shape[1], x)
        for block in self.blocks:
            x = block(x)
        return self.feature_norm(self.ln_post(x).mean(dim=1))

    def forward(self, mel: torch.Tensor, output: str = "both"):
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        features = self.features(mel)
        if output == "features":
            return features
        projections = self.projection_norm(self.projector(features))
        if output == "projections":
            return projections
        return features, projections


def calibrate_norms(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Recompute the running mean and variance of every BatchNorm in ``model`` as the plain average of the batch
    statistics that its current weights give on ``batches`` (each (B, n_mels, T), on the model's device), as
    "precise BatchNorm" does (Wu & Johnson, 2021); no gradients, no change to the weights. The model's
    train/eval mode and each BatchNorm's momentum are restored. Returns the number of batches used; with none,
    nothing changes.

    Why: eval-mode outputs are standardized with these statistics, and the momentum averages of training lag
    the weights while the learning rate is high; the offset matters as soon as a song's vector takes a maximum
    over its patches (README, "Real music", has the measurement)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    used = 0
    try:
        with torch.no_grad():
            for mel in batches:
                if used == 0:
                    model.train()
                    for m in norms:
                        m.reset_running_stats()
                        m.momentum = None  # cumulative average over the batches
                model(mel)
                used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used
