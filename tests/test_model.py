"""Encoder: shapes, any length, config round trip, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from spotifai.model import AudioEncoder, EncoderConfig, calibrate_norms, sinusoids

SMALL = EncoderConfig(n_mels=16, n_frames=64, model_dim=32, projection_dim=24, n_layers=2, n_heads=4)


def test_shapes_and_outputs():
    torch.manual_seed(0)
    model = AudioEncoder(SMALL)
    mel = torch.randn(5, 16, 64)
    feats, proj = model(mel)
    assert feats.shape == (5, 32) and proj.shape == (5, 24)
    model.eval()
    assert model(mel, output="features").shape == (5, 32)
    assert model(mel, output="projections").shape == (5, 24)
    with pytest.raises(ValueError):
        model(mel, output="nope")
    with pytest.raises(ValueError):
        model(torch.randn(2, 15, 64))


@pytest.mark.parametrize("t", [1, 7, 63, 64, 65, 300])
def test_any_length(t):
    model = AudioEncoder(SMALL).eval()
    feats, proj = model(torch.randn(2, 16, t))
    assert feats.shape == (2, 32) and proj.shape == (2, 24)
    assert torch.isfinite(feats).all() and torch.isfinite(proj).all()


def test_positions_extend_consistently():
    table = sinusoids(500, 32)
    assert torch.allclose(table[:32], sinusoids(32, 32))
    model = AudioEncoder(SMALL)
    assert torch.allclose(model._positions(200, table), table[:200])


def test_config_round_trip_and_validation():
    cfg = EncoderConfig(
        n_mels=64, n_frames=512, model_dim=64, n_layers=4, n_heads=4, ff_dim=None, dropout=0.1
    )
    again = EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.feedforward_dim == 256
    with pytest.raises(ValueError, match="heads_count"):
        EncoderConfig.from_dict({**cfg.to_dict(), "heads_count": 2})
    with pytest.raises(ValueError, match="n_heads"):
        EncoderConfig(model_dim=30, n_heads=4)
    with pytest.raises(ValueError, match="n_layers"):
        EncoderConfig(n_layers=0)
    assert AudioEncoder(cfg).config is cfg


def test_eval_determinism_and_batch_independence():
    torch.manual_seed(1)
    model = AudioEncoder(SMALL).eval()
    mel = torch.randn(4, 16, 64)
    with torch.no_grad():
        a = model(mel)
        b = model(mel)
        single = model(mel[:1])
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert torch.allclose(single[0], a[0][:1], atol=1e-5) and torch.allclose(single[1], a[1][:1], atol=1e-5)


def test_backward_and_state_dict_round_trip():
    model = AudioEncoder(SMALL)
    feats, proj = model(torch.randn(3, 16, 40))
    (feats.sum() + proj.pow(2).mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    clone = AudioEncoder(SMALL)
    clone.load_state_dict(model.state_dict())
    mel = torch.randn(2, 16, 64)
    model.eval()
    clone.eval()
    assert torch.equal(model(mel, "projections"), clone(mel, "projections"))


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
@pytest.mark.parametrize("t", [8, 63, 64, 65, 300])
def test_time_stride_tokens(stride, t):
    """The stem turns ``t`` frames into ``config.tokens(t)`` tokens (stride 2 is the Whisper stem: ceil(t / 2)),
    and the model embeds any length of at least ``time_stride`` frames."""
    cfg = EncoderConfig(n_mels=16, n_frames=64, model_dim=32, projection_dim=24, n_layers=1, n_heads=4,
                        time_stride=stride)
    model = AudioEncoder(cfg).eval()
    mel = torch.randn(2, 16, t)
    stem = torch.nn.functional.gelu(model.conv2(torch.nn.functional.gelu(model.conv1(mel))))
    assert stem.shape[-1] == cfg.tokens(t)
    if stride == 2:
        assert cfg.tokens(t) == -(-t // 2) and model.conv2.kernel_size == (3,)
    with torch.no_grad():
        feats, proj = model(mel)
    assert feats.shape == (2, 32) and proj.shape == (2, 24) and torch.isfinite(proj).all()


def test_time_stride_defaults_and_limits():
    """Configs written before ``time_stride`` existed read as the Whisper stem; a too-short input is a clear
    error, not a convolution's."""
    old = {k: v for k, v in SMALL.to_dict().items() if k != "time_stride"}
    assert EncoderConfig.from_dict(old).time_stride == 2
    with pytest.raises(ValueError, match="time_stride"):
        EncoderConfig(n_frames=4, time_stride=8)
    with pytest.raises(ValueError, match="time_stride"):
        EncoderConfig(time_stride=0)
    model = AudioEncoder(EncoderConfig(n_mels=16, n_frames=64, model_dim=32, projection_dim=24, n_layers=1,
                                       n_heads=4, time_stride=8))
    with pytest.raises(ValueError, match="at least time_stride = 8 frames"):
        model(torch.randn(2, 16, 7))


def test_calibrate_norms_standardizes_eval_outputs_on_the_calibration_data():
    torch.manual_seed(0)
    cfg = EncoderConfig(n_mels=16, n_frames=64, model_dim=32, projection_dim=24, n_layers=1, n_heads=4)
    model = AudioEncoder(cfg)
    mel = torch.randn(48, 16, 64) * 3 + 1
    model.train()
    with torch.no_grad():
        model(torch.randn(48, 16, 64))  # one momentum update on other data: the running statistics are stale
    model.eval()
    with torch.no_grad():
        stale = model(mel, output="features")
    assert stale.mean(0).abs().max() > 0.1
    momenta = [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]

    assert calibrate_norms(model, [mel]) == 1
    assert not model.training  # the mode is restored
    assert [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)] == momenta
    with torch.no_grad():
        f, p = model(mel)
    # per dimension: mean 0, variance 1 (the running variance is unbiased: (n - 1) / n). The projections pass
    # the projector's own BatchNorm, whose eval scale differs from its training scale by the same factor
    # before a ReLU: near, not exact.
    for out, tol in ((f, 1e-3), (p, 0.05)):
        assert out.mean(0).abs().max() < tol
        torch.testing.assert_close(out.var(0, unbiased=False), torch.full((out.shape[1],), 47 / 48),
                                   atol=max(tol, 0.005), rtol=0)


def test_calibrate_norms_averages_batches_and_ignores_an_empty_iterable():
    torch.manual_seed(1)
    model = AudioEncoder(EncoderConfig(n_mels=8, n_frames=32, model_dim=16, projection_dim=8, n_layers=1,
                                       n_heads=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert calibrate_norms(model, iter(())) == 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    a, b = torch.randn(20, 8, 32), torch.randn(20, 8, 32) + 2
    inputs = []  # what feature_norm sees during the calibration
    hook = model.feature_norm.register_forward_hook(lambda _m, args, _out: inputs.append(args[0].detach()))
    assert calibrate_norms(model, [a, b]) == 2
    hook.remove()
    pre = torch.cat(inputs)
    assert pre.shape == (40, 16)
    # the cumulative average of the two batch means = the mean over both (equal batch sizes)
    torch.testing.assert_close(model.feature_norm.running_mean, pre.mean(0), atol=1e-5, rtol=1e-4)
    assert model.feature_norm.num_batches_tracked.item() == 2
