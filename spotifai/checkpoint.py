"""Checkpoint files of an experiment (``checkpoints/``) and loading a trained encoder for inference.

A training checkpoint holds model, optimizer, scheduler, GradScaler and RNG states, the step, the config
(:meth:`spotifai.experiment.ExperimentConfig.to_dict`), the history rows up to its step and the unfinished loss
window (see :mod:`spotifai.train`). ``best.pt`` holds only model, config, step, validation loss and probe mAP. Inference
(:func:`load_encoder`) reads only the ``model`` and ``data.audio`` sections of the stored config, so it needs
neither the trainer nor a valid optimizer / training / progress section.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from pathlib import Path

import numpy as np
import torch

from spotifai import atomic
from spotifai.configs import AudioConfig, EncoderConfig
from spotifai.experiment import BEST_CHECKPOINT, CHECKPOINT_DIR, ConfigError
from spotifai.model import AudioEncoder

log = logging.getLogger(__name__)

LATEST = "latest"


def folder(experiment: str | Path) -> Path:
    return Path(experiment) / CHECKPOINT_DIR


def checkpoint_file(experiment: str | Path, checkpoint: str | int) -> Path:
    """The file of ``checkpoint``: "latest", "best", a step number, a kept checkpoint's name or a .pt path."""
    if isinstance(checkpoint, int):
        return folder(experiment) / f"step_{checkpoint:07d}.pt"
    p = Path(checkpoint)
    if p.suffix == ".pt" and (p.is_absolute() or p.exists()):
        return p
    return folder(experiment) / f"{checkpoint}.pt"


def resolve(experiment: str | Path, checkpoint: str | int = "auto") -> str | int:
    """``"auto"`` (what inference uses by default): "best" when training kept ``checkpoints/best.pt``, else
    "latest"; anything else is returned as given."""
    if checkpoint != "auto":
        return checkpoint
    return BEST_CHECKPOINT if (folder(experiment) / f"{BEST_CHECKPOINT}.pt").is_file() else LATEST


def _bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save(experiment: str | Path, state: dict, kept: bool) -> None:
    """Write ``state`` as ``latest.pt`` and, when ``kept``, as ``step_NNNNNNN.pt`` too (atomically)."""
    data = _bytes(state)
    if kept:
        atomic.write_bytes(folder(experiment) / f"step_{state['step']:07d}.pt", data)
    atomic.write_bytes(folder(experiment) / f"{LATEST}.pt", data)


def save_best(experiment: str | Path, model_state_dict: dict, config: dict, step: int, validation_loss: float,
              validation_map: float | None = None) -> None:
    """``checkpoints/best.pt``: the weights of the best validation so far (``progress.best_by``: the lowest
    validation loss or the highest retrieval-probe mAP; for inference), with both scores."""
    state = {"model": model_state_dict, "config": config, "step": step, "validation_loss": validation_loss,
             "validation_map": validation_map}
    atomic.write_bytes(folder(experiment) / f"{BEST_CHECKPOINT}.pt", _bytes(state))


def model_state(state_dict: dict) -> dict:
    """A model state dict with the ``_orig_mod.`` prefixes of a ``torch.compile``-d module's keys removed, so
    weights saved from a compiled or an eager encoder load into either."""
    prefix = "_orig_mod."
    return {k.replace(prefix, ""): v for k, v in state_dict.items()}


def newest(experiment: str | Path, repair: bool = False) -> tuple[dict, Path] | None:
    """The readable checkpoint with the highest step (latest.pt, else kept ones) as (state, path), or None.

    ``repair`` (the training process that writes the experiment): when that is a kept checkpoint because
    latest.pt is missing, unreadable or older, latest.pt is rewritten (atomically) as a copy of it, so that a
    finished run whose latest.pt was damaged leaves a readable one behind."""
    where = folder(experiment)
    if not where.exists():
        return None
    if repair:
        for stale in where.glob("*" + atomic.TMP_SUFFIX):  # from a run killed while writing
            stale.unlink(missing_ok=True)
    kept = sorted(where.glob("step_*.pt"), reverse=True)  # zero-padded names: newest first
    best: tuple[dict, Path] | None = None
    for path in [where / f"{LATEST}.pt", *kept]:
        if not path.exists():
            continue
        if best is not None and path.name.startswith("step_"):
            try:
                if int(path.stem.split("_")[1]) <= best[0]["step"]:
                    break
            except ValueError:
                continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file: try the next one
            log.warning("%s: unreadable checkpoint (%s), trying an older one", path, exc)
            continue
        if best is None or state["step"] > best[0]["step"]:
            best = (state, path)
        if path.name.startswith("step_"):
            break
    if repair and best is not None and best[1] != where / f"{LATEST}.pt":
        atomic.write_bytes(where / f"{LATEST}.pt", best[1].read_bytes())
        log.warning("%s: rewritten from %s (step %d), the newest readable checkpoint", where / f"{LATEST}.pt",
                    best[1].name, best[0]["step"])
    return best


def rng_state() -> dict:
    """The Python, NumPy, torch and CUDA random states (a training checkpoint's ``rng``)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def read(path: Path, device: str = "cpu") -> tuple[dict, bytes]:
    """(state, file bytes) of a checkpoint; FileNotFoundError / RuntimeError naming the path."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (train the experiment first)")
    data = path.read_bytes()
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True), data
    except Exception as exc:
        raise RuntimeError(f"{path}: unreadable checkpoint ({exc})") from exc


def stored_configs(state: dict, source: str) -> tuple[EncoderConfig, AudioConfig]:
    """The encoder and audio configs a checkpoint was trained with (its config's model and data.audio)."""
    try:
        model, audio = state["config"]["model"], state["config"]["data"]["audio"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: the checkpoint's config has no model or data.audio section") from exc
    configs = []
    for where, cls, d in (("model", EncoderConfig, model), ("data.audio", AudioConfig, audio)):
        try:
            configs.append(cls.from_dict(d))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {where}: {exc}") from exc
    return configs[0], configs[1]


def load_encoder(
    experiment_path: str | Path, checkpoint: str | int = LATEST, device: str = "cpu"
) -> tuple[AudioEncoder, dict]:
    """The trained encoder of an experiment, in eval mode on ``device``, and a dict with ``step``,
    ``checkpoint_id`` (first 16 hex digits of the checkpoint file's sha256), ``model``
    (:class:`EncoderConfig`), ``audio`` (:class:`AudioConfig`) and ``path``.

    ``checkpoint``: "latest", "best", a step number, a kept checkpoint's name ("step_0000100") or a .pt path.
    "latest" is the newest *readable* one: when latest.pt is missing or damaged, the newest readable kept
    checkpoint is used, with a warning (nothing is written: the next ``spotifai train`` repairs latest.pt).
    FileNotFoundError naming the path when it does not exist, RuntimeError when it cannot be read.
    """
    experiment = Path(experiment_path)
    path = checkpoint_file(experiment, checkpoint)
    try:
        state, data = read(path, device)
    except (FileNotFoundError, RuntimeError) as exc:
        found = newest(experiment) if checkpoint == LATEST else None  # reads, never writes
        if found is None:
            raise
        path = found[1]
        state, data = read(path, device)
        log.warning("%s; using %s (step %d), the newest readable kept checkpoint", exc, path.name, state["step"])
    model_config, audio = stored_configs(state, str(path))
    model = AudioEncoder(model_config)
    model.load_state_dict(model_state(state["model"]))
    model.to(device).eval()
    info = {
        "step": int(state["step"]),
        "checkpoint_id": hashlib.sha256(data).hexdigest()[:16],
        "model": model_config,
        "audio": audio,
        "path": str(path),
    }
    return model, info
