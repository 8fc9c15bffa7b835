"""A trained encoder as one self-contained file: ``spotifai export EXPERIMENT model.pt``.

The file is a plain dict readable with ``torch.load(path, weights_only=True)``: the encoder's weights and
what is needed to use them, nothing of the training state (no optimizer, scheduler, RNG, history, paths)::

    {"format": "spotifai-model", "format_version": 1, "model": state_dict, "model_config": {...},
     "audio": {"n_mels", "patch_frames", "max_time_padding"}, "step": int, "checkpoint_id": str,
     "spotifai_version": str}

``checkpoint_id`` is the source checkpoint's (the one ``spotifai embed`` stores with the vectors), so a
model loaded from the file is known to match an experiment's index. :func:`spotifai.load` reads it
(:func:`read_model`) without the experiment folder.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_FORMAT = "spotifai-model"
MODEL_FORMAT_VERSION = 1


def check_experiment(experiment: str | Path) -> Path:
    """``experiment`` when it is an experiment folder (holds config.json); FileNotFoundError naming it else."""
    experiment = Path(experiment)
    if not experiment.is_dir():
        raise FileNotFoundError(f"{experiment}: no such experiment folder")
    if not (experiment / "config.json").is_file():
        raise FileNotFoundError(f"{experiment}: not an experiment folder (no config.json; train it first)")
    return experiment


def export_model(experiment: str | Path, out: str | Path, checkpoint: str | int = "auto") -> dict:
    """Write the experiment's encoder (``checkpoint`` as in :func:`spotifai.checkpoint.resolve`) to ``out`` atomically.
    Returns a summary (path, bytes, step, checkpoint_id, parameters)."""
    import torch

    from spotifai import __version__, atomic
    from spotifai import checkpoint as checkpoints

    experiment = check_experiment(experiment)
    encoder, info = checkpoints.load_encoder(experiment, checkpoints.resolve(experiment, checkpoint), device="cpu")
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "model": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
        "model_config": info["model"].to_dict(),
        "audio": info["audio"].to_dict(),
        "step": int(info["step"]),
        "checkpoint_id": str(info["checkpoint_id"]),
        "spotifai_version": __version__,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = atomic.write_bytes(out, buf.getvalue())
    return {
        "path": str(path),
        "bytes": len(buf.getvalue()),
        "step": payload["step"],
        "checkpoint_id": payload["checkpoint_id"],
        "parameters": int(sum(p.numel() for p in encoder.parameters())),
        "source": str(info["path"]),
    }


def is_exported(state: object) -> bool:
    return isinstance(state, dict) and state.get("format") == MODEL_FORMAT


def read_model(state: dict, source: str | Path, device: str = "cpu"):
    """(encoder in eval mode on ``device``, info dict with step, checkpoint_id, audio, model_config) from the
    dict of an exported file; ValueError naming ``source`` when it is not a usable one."""
    from spotifai.audio import AudioConfig
    from spotifai.model import AudioEncoder, EncoderConfig

    version = state.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ValueError(f"{source}: model file format version {version!r}, this spotifai reads "
                         f"{MODEL_FORMAT_VERSION}")
    try:
        encoder = AudioEncoder(EncoderConfig.from_dict(dict(state["model_config"])))
        encoder.load_state_dict(state["model"])
        audio = AudioConfig.from_dict(dict(state["audio"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{source}: not a valid spotifai model file ({type(exc).__name__}: {exc})") from exc
    encoder.to(device).eval()
    info = {
        "step": int(state.get("step", -1)),
        "checkpoint_id": str(state.get("checkpoint_id", "")),
        "audio": audio,
        "model_config": dict(state["model_config"]),
        "path": str(source),
    }
    return encoder, info
