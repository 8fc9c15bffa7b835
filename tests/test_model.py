"""Encoder: shapes, any length, config round trip, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from spotifai.model import AudioEncoder, EncoderConfig, sinusoids

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
