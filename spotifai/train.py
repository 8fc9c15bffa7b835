"""The training loop: experiment config, mixed precision, checkpoints, resume, history, validation, DDP.

An experiment is a folder ``experiments/<name>/``::

    config.json              the validated config (sections model, optimizer, training, data, progress)
    history.csv              step,split,loss  (split = train | validation)
    checkpoints/latest.pt    the newest checkpoint (every progress.save_period steps and at the end)
    checkpoints/step_NNNNNNN.pt  kept checkpoints (every progress.checkpoint_period steps and at the end)
    checkpoints/best.pt      the weights of the lowest validation loss (progress.keep_best; what embed uses)
    cache/                   the log-mel patch cache (data.cache_dir, when data.patch_cache is on)

Relative paths in config.json (data.database, data.cache_dir) resolve against the experiment folder.

Config keys (see :func:`default_config`; every key is required, unknown keys are errors):

* ``model``: :class:`spotifai.model.EncoderConfig` fields — n_mels (feature dim; = data.audio.n_mels),
  n_frames (time dim; = data.audio.patch_frames), model_dim, projection_dim, n_layers, n_heads, ff_dim, dropout.
* ``optimizer``: learning_rate (peak), weight_decay (AdamW), warmup_steps (linear warm-up, then cosine decay
  to 0 at training.steps), grad_clip (max gradient norm; 0 = off).
* ``training``: steps, batch_size (K patches per playlist, even, >= 2), buffer_size (P playlists per step and
  rank, >= 2), precision ("bf16" | "fp16" | "fp32"; fp16 uses a GradScaler and needs CUDA, on CPU it falls
  back to bf16), lambd (Barlow Twins off-diagonal weight), track_weight (weight of the same-track Barlow Twins
  term; > 0 makes each playlist give K/2 tracks cut twice, see :mod:`spotifai.sampling`; 0 = playlist
  positives only; a config written before this key existed reads as 0, how it was trained),
  max_nonfinite_steps (consecutive non-finite losses that stop training), augment (the view augmentations,
  :class:`spotifai.augment.AugmentConfig` fields; a config without it reads as no augmentation), compile
  (``torch.compile`` the encoder for training steps, with fixed shapes; null = on for CUDA, off on CPU; a config
  without the key reads as false; it changes speed, not what is trained, so an existing experiment may be
  given another value, like training.steps).
* ``data``: database, seed, validation_fraction, heldout_track_fraction, min_tracks (passed to
  :func:`spotifai.database.split`), audio (:class:`spotifai.audio.AudioConfig` fields), patch_cache (bool),
  cache_dir (str or null = "cache" in the experiment), num_workers (DataLoader workers per rank),
  validation_by ("tracks": validate on unseen tracks of the training playlists; "playlists": on unseen
  playlists, how configs without the key were trained).
* ``progress``: val_period (steps between validations; 0 = none), val_batches (fixed validation batches),
  save_period (steps between latest.pt), checkpoint_period (steps between kept checkpoints), loss_window (train
  loss rows average this many steps), keep_best (write checkpoints/best.pt at each new lowest validation loss;
  embedding then uses it; configs without the key read as false).

Resume: each checkpoint holds model, optimizer, scheduler, GradScaler and RNG states, the step, the config, the
history rows up to its step and the unfinished loss window. ``train_model(path)`` loads the newest readable
checkpoint, rewrites history.csv from it (atomically) and continues, so after a ``kill -9`` at any moment the
history has neither duplicated nor missing steps and the run ends at the same step as an uninterrupted one.
Batches are a function of (seed, step, rank) (see :mod:`spotifai.sampling`), so the resumed run also sees the
batches an uninterrupted run would have seen.

Multi-GPU / multi-process: ``torchrun --nproc_per_node=N -m spotifai.train EXPERIMENT`` runs
DistributedDataParallel (nccl on CUDA, gloo on CPU). Every rank makes its own batch of P playlists (different
playlists per rank), the projections are gathered across ranks with gradient
(``torch.distributed.nn.functional.all_gather``) and the loss is computed on the global batch; only rank 0
writes history and checkpoints. BatchNorm in the projector: on CUDA it is converted to SyncBatchNorm (global
batch statistics); PyTorch's SyncBatchNorm has no CPU kernel, so with gloo on CPU each rank normalizes its own
P*K patches (the loss itself always standardizes the gathered global batch).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from spotifai import atomic, cache_fill, database, sampling
from spotifai.audio import AudioConfig
from spotifai.augment import AugmentConfig, augment_view, step_generator
from spotifai.loss import playlist_and_track_loss
from spotifai.model import AudioEncoder, EncoderConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
PRECISIONS = ("bf16", "fp16", "fp32")
# Upper bounds of the sizes a config may ask for (far above any real use; they turn a typo such as 10**12 into a
# clear error instead of a sampler that allocates until the machine runs out of memory).
MAX_BATCH_SIZE = 4096  # training.batch_size: patches per playlist
MAX_BUFFER_SIZE = 4096  # training.buffer_size: playlists per step and rank
MAX_BATCH_GIB = 16.0  # one step's float32 patches (buffer_size x batch_size x n_mels x patch_frames)
MAX_NUM_WORKERS = 256  # data.num_workers
MAX_VAL_BATCHES = 100_000  # progress.val_batches
BEST_CHECKPOINT = "best"


class ConfigError(ValueError):
    """An invalid experiment config: the message names the file (when there is one) and the key."""


# ------------------------------------------------------------------------------------------------- config

# Types of the plain sections' keys: a tuple of accepted types (int is accepted where float is).
_SCHEMA: dict[str, dict[str, tuple]] = {
    "optimizer": {
        "learning_rate": (float,),
        "weight_decay": (float,),
        "warmup_steps": (int,),
        "grad_clip": (float,),
    },
    "training": {
        "steps": (int,),
        "batch_size": (int,),
        "buffer_size": (int,),
        "precision": (str,),
        "lambd": (float,),
        "track_weight": (float,),
        "max_nonfinite_steps": (int,),
        "augment": (dict,),
        "compile": (bool, type(None)),
    },
    "data": {
        "database": (str,),
        "seed": (int,),
        "validation_fraction": (float,),
        "heldout_track_fraction": (float,),
        "min_tracks": (int,),
        "audio": (dict,),
        "patch_cache": (bool,),
        "cache_dir": (str, type(None)),
        "num_workers": (int,),
        "validation_by": (str,),
    },
    "progress": {
        "val_period": (int,),
        "val_batches": (int,),
        "save_period": (int,),
        "checkpoint_period": (int,),
        "loss_window": (int,),
        "keep_best": (bool,),
    },
}
_SECTIONS = ("model", "optimizer", "training", "data", "progress")
# Keys added after experiments were first written, with the value that reproduces how those were trained
# (so an old experiment still loads, resumes and embeds exactly as before).
_LEGACY_DEFAULTS: dict[str, dict] = {
    "training": {"track_weight": 0.0, "augment": {}, "compile": False},
    "data": {"validation_by": "playlists"},
    "progress": {"keep_best": False},
}


def default_config(database: str | Path, **overrides) -> dict:
    """The default experiment config for the music DB at ``database`` (stored as an absolute path).

    ``overrides``: ``section={...}`` dicts merged into a section (``data={"audio": {...}}`` too), or single
    keys by name (``steps=100``, ``model_dim=64``). ``n_mels`` and ``patch_frames``/``n_frames`` set both the
    model and the audio settings. An unknown name is a :class:`ConfigError`.
    """
    audio = AudioConfig(n_mels=80, patch_frames=1024, max_time_padding=0.25)
    config = {
        "model": EncoderConfig(
            n_mels=audio.n_mels, n_frames=audio.patch_frames, model_dim=256, projection_dim=512,
            n_layers=8, n_heads=8, ff_dim=None, dropout=0.0,
        ).to_dict(),
        "optimizer": {"learning_rate": 3e-4, "weight_decay": 0.05, "warmup_steps": 500, "grad_clip": 1.0},
        "training": {
            "steps": 20000, "batch_size": 32, "buffer_size": 24, "precision": "bf16", "lambd": 5e-3,
            "track_weight": 2.0, "max_nonfinite_steps": 20, "augment": AugmentConfig().to_dict(),
            "compile": None,
        },
        "data": {
            "database": str(Path(database).resolve()),
            "seed": 0,
            "validation_fraction": 0.1,
            "heldout_track_fraction": 0.2,
            "min_tracks": 2,
            "audio": audio.to_dict(),
            "patch_cache": True,
            "cache_dir": None,
            "num_workers": 4,
            "validation_by": "tracks",
        },
        "progress": {"val_period": 500, "val_batches": 8, "save_period": 200, "checkpoint_period": 5000,
                     "loss_window": 50, "keep_best": True},
    }
    return _apply_overrides(config, overrides)


def demo_config(database: str | Path) -> dict:
    """The small config of the CPU demo chain: trains in a few minutes on 2 CPU cores (the one place to tune it).

    1200 steps of 16 playlists x 8 patches of 2.56 s (64 mels) through a 2-layer, 64-wide encoder with a
    128-d projection; the patch cache makes every pass after the first decode-free. Chosen on the demo corpus
    by held-out retrieval (see README): against 300 steps of 8 x 8 patches through a 3-layer, 96-wide encoder
    with a 512-d projection, 800 steps of this raised held-out playlist precision@10 from 0.35 to 0.43 and
    catalogue artist precision@10 from 0.18 to 0.30, and 1200 steps to 0.52 and 0.31 - more, smaller steps
    beat a bigger model at equal CPU time, and a Barlow Twins cross-correlation of 512 dimensions is too noisy
    to estimate from 32 rows per view. 24 playlists per step instead of 16 did not help (0.48 / 0.29).
    The same-track term (training.track_weight, see :func:`spotifai.loss.playlist_and_track_loss`) then took
    the 1200-step run from 0.49 / 0.32 (weight 0) to 0.54 / 0.39 (weight 1), 0.54 / 0.49 (weight 2) and 0.50 /
    0.47 (weight 4); held-out playlist / catalogue artist precision@10, log-mel baseline 0.26 / 0.34.
    """
    return default_config(
        database,
        n_mels=64,
        patch_frames=256,  # 2.56 s patches
        model={"model_dim": 64, "projection_dim": 128, "n_layers": 2, "n_heads": 4, "ff_dim": 128},
        optimizer={"learning_rate": 2e-3, "weight_decay": 0.05, "warmup_steps": 40, "grad_clip": 1.0},
        # fp32: bf16 autocast is about 2x slower than fp32 on this CPU (no AMX); on CUDA use bf16 or fp16
        training={"steps": 1200, "batch_size": 8, "buffer_size": 16, "precision": "fp32"},
        # the demo has 160 playlists: validation on unseen playlists, as the demo was tuned
        data={"patch_cache": True, "num_workers": 1, "validation_by": "playlists"},
        # keep_best off: the demo was tuned on its last step; 2 validation batches of unseen playlists are too
        # noisy to pick a step by (with best.pt the held-out step-600 model lost catalogue artist precision)
        progress={"val_period": 100, "val_batches": 2, "save_period": 50, "checkpoint_period": 200,
                  "loss_window": 20, "keep_best": False},
    )


def tiny_config(database: str | Path) -> dict:
    """A seconds-long config for smoke tests of the whole chain (not for results)."""
    return default_config(
        database,
        n_mels=32,
        patch_frames=128,
        model={"model_dim": 32, "projection_dim": 64, "n_layers": 1, "n_heads": 2, "ff_dim": 64},
        optimizer={"learning_rate": 1e-3, "weight_decay": 0.0, "warmup_steps": 2, "grad_clip": 1.0},
        training={"steps": 6, "batch_size": 4, "buffer_size": 4, "precision": "fp32"},
        data={"patch_cache": True, "num_workers": 0},
        progress={"val_period": 3, "val_batches": 1, "save_period": 3, "checkpoint_period": 6, "loss_window": 2},
    )


PRESETS = {"demo": demo_config, "full": default_config, "tiny": tiny_config}


def preset_config(
    preset: str, database: str | Path, *, steps: int | None = None, overrides: dict | None = None
) -> dict:
    """The config of a named preset ("demo": small CPU model; "full": the original's default size, for a GPU;
    "tiny": smoke tests) with ``steps`` and nested ``overrides`` ({section: {key: value}}) applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    config = PRESETS[preset](database)
    extra = dict(overrides or {})
    if steps is not None:
        extra.setdefault("training", {})
        extra["training"] = {**extra["training"], "steps": int(steps)}
    return _apply_overrides(config, extra)


def _apply_overrides(config: dict, overrides: dict) -> dict:
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        if key in _SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, dict) and isinstance(config[key].get(sub), dict):  # data.audio, training.augment
                    config[key][sub].update(v)
                else:
                    config[key][sub] = v
        elif key == "n_mels":
            config["model"]["n_mels"] = config["data"]["audio"]["n_mels"] = value
        elif key in ("patch_frames", "n_frames"):
            config["model"]["n_frames"] = config["data"]["audio"]["patch_frames"] = value
        elif key == "max_time_padding":
            config["data"]["audio"]["max_time_padding"] = value
        else:
            owners = [s for s in _SECTIONS if key in config[s]]
            if len(owners) != 1:
                raise ConfigError(f"unknown config override {key!r}")
            config[owners[0]][key] = value
    return config


def _check_type(where: str, value, types: tuple) -> None:
    ok = any(
        (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t not in (int, float) and isinstance(value, t))
        for t in types
    )
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ConfigError(f"{where}: expected {names}, got {type(value).__name__} {value!r}")


def _check_keys(source: str, kind: str, prefix: str, have: dict, known: list[str]) -> None:
    """Raise :class:`ConfigError` on the first key of ``have`` not in ``known``, then on the first one missing.

    Keys are named ``<prefix><key>`` (``training.steps``), or quoted when there is no prefix (sections)."""

    def name(key: str) -> str:
        return f"{prefix}{key}" if prefix else repr(key)

    for key in have:
        if key not in known:
            raise ConfigError(f"{source}: unknown {kind} {name(key)} (known: {', '.join(known)})")
    for key in known:
        if key not in have:
            raise ConfigError(f"{source}: missing {kind} {name(key)}")


def validate_config(config: dict, source: str = "config") -> dict:
    """Check keys, types and values of an experiment config (no data access); returns a normalized copy.

    Raises :class:`ConfigError` naming ``source`` and the key (``section.key``) on the first problem.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got {type(config).__name__}")
    cfg = copy.deepcopy(config)
    _check_keys(source, "section", "", cfg, _SECTIONS)
    for section in _SECTIONS:
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"{source}: {section}: expected an object, got {type(cfg[section]).__name__}")
    for section, defaults in _LEGACY_DEFAULTS.items():
        for key, value in defaults.items():
            cfg[section].setdefault(key, value)
    for section, keys in _SCHEMA.items():
        _check_keys(source, "key", f"{section}.", cfg[section], list(keys))
        for key, types in keys.items():
            _check_type(f"{source}: {section}.{key}", cfg[section][key], types)
    _check_finite(source, cfg)
    # model and audio: every dataclass field required, values checked by the dataclasses
    for where, cls, d in (("model", EncoderConfig, cfg["model"]), ("data.audio", AudioConfig, cfg["data"]["audio"])):
        _check_keys(source, "key", f"{where}.", d, sorted(cls().to_dict()))
        try:
            cls.from_dict(d)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {where}: {exc}") from exc
    m, a, t, o, d, p = (cfg["model"], cfg["data"]["audio"], cfg["training"], cfg["optimizer"], cfg["data"],
                        cfg["progress"])

    def bad(key: str, why: str):
        raise ConfigError(f"{source}: {key} = {_get(cfg, key)!r}: {why}")

    if m["n_mels"] != a["n_mels"]:
        bad("model.n_mels", f"must equal data.audio.n_mels ({a['n_mels']})")
    if m["n_frames"] != a["patch_frames"]:
        bad("model.n_frames", f"must equal data.audio.patch_frames ({a['patch_frames']})")
    if t["steps"] < 1:
        bad("training.steps", "must be >= 1")
    if t["batch_size"] < 2 or t["batch_size"] % 2 or t["batch_size"] > MAX_BATCH_SIZE:
        bad("training.batch_size", f"must be even, >= 2 and <= {MAX_BATCH_SIZE} (patches per playlist)")
    if not 2 <= t["buffer_size"] <= MAX_BUFFER_SIZE:
        bad("training.buffer_size", f"must be >= 2 and <= {MAX_BUFFER_SIZE} (playlists per step)")
    gib = t["buffer_size"] * t["batch_size"] * a["n_mels"] * a["patch_frames"] * 4 / 2**30
    if gib > MAX_BATCH_GIB:
        bad("training.batch_size", f"a step of training.buffer_size x batch_size = {t['buffer_size'] * t['batch_size']}"
            f" patches of {a['n_mels']} x {a['patch_frames']} would take {gib:.1f} GiB (at most {MAX_BATCH_GIB:g})")
    if t["precision"] not in PRECISIONS:
        bad("training.precision", f"must be one of {', '.join(PRECISIONS)}")
    if t["lambd"] < 0:
        bad("training.lambd", "must be >= 0")
    if t["track_weight"] < 0 or not math.isfinite(t["track_weight"]):
        bad("training.track_weight", "must be >= 0 (0 = playlist positives only)")
    try:
        t["augment"] = AugmentConfig.from_dict(t["augment"]).to_dict()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: training.augment: {exc}") from exc
    if t["max_nonfinite_steps"] < 1:
        bad("training.max_nonfinite_steps", "must be >= 1")
    if not o["learning_rate"] > 0 or not math.isfinite(o["learning_rate"]):
        bad("optimizer.learning_rate", "must be > 0")
    if o["weight_decay"] < 0:
        bad("optimizer.weight_decay", "must be >= 0")
    if o["warmup_steps"] < 0:
        bad("optimizer.warmup_steps", "must be >= 0")
    if o["grad_clip"] < 0:
        bad("optimizer.grad_clip", "must be >= 0 (0 = no clipping)")
    for key in ("validation_fraction", "heldout_track_fraction"):
        if not 0 <= d[key] < 1:
            bad(f"data.{key}", "must be in [0, 1)")
    if d["validation_by"] not in database.VALIDATION_RULES:
        bad("data.validation_by", f"must be one of {', '.join(database.VALIDATION_RULES)}")
    if d["validation_by"] == "tracks" and d["validation_fraction"] + d["heldout_track_fraction"] >= 1:
        bad("data.validation_fraction", "plus data.heldout_track_fraction must be < 1 with validation_by 'tracks'")
    if d["min_tracks"] < 2:
        bad("data.min_tracks", "must be >= 2 (two views need two tracks)")
    if not 0 <= d["num_workers"] <= MAX_NUM_WORKERS:
        bad("data.num_workers", f"must be >= 0 and <= {MAX_NUM_WORKERS}")
    if not d["database"]:
        bad("data.database", "must name the music database file")
    for key in ("val_period", "val_batches"):
        if p[key] < 0:
            bad(f"progress.{key}", "must be >= 0")
    if p["val_batches"] > MAX_VAL_BATCHES:
        bad("progress.val_batches", f"must be <= {MAX_VAL_BATCHES}")
    for key in ("save_period", "checkpoint_period", "loss_window"):
        if p[key] < 1:
            bad(f"progress.{key}", "must be >= 1")
    return cfg


def _check_finite(source: str, node, where: str = "") -> None:
    """:class:`ConfigError` naming the key of the first NaN or infinite number anywhere in the config (JSON files
    may hold ``NaN`` / ``Infinity``, and every comparison with NaN is false, so range checks alone let it pass)."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_finite(source, value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _check_finite(source, value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{source}: {where} = {node!r}: must be a finite number")


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _resolve(experiment: Path, path: str) -> Path:
    p = Path(path).expanduser()
    # lexical normalization: "exp/../db" must work before the experiment folder exists
    return p if p.is_absolute() else Path(os.path.normpath(experiment.absolute() / p))


def database_path(experiment_path: str | Path, config: dict) -> Path:
    """The music DB of an experiment (``data.database`` resolved against the experiment folder)."""
    return _resolve(Path(experiment_path), config["data"]["database"])


def cache_path(experiment_path: str | Path, config: dict) -> Path | None:
    """The patch cache folder of an experiment, or None when the cache is off."""
    if not config["data"]["patch_cache"]:
        return None
    return _resolve(Path(experiment_path), config["data"]["cache_dir"] or "cache")


def load_config(experiment_path: str | Path) -> dict:
    """The validated config of an experiment (``config.json`` in the folder); :class:`ConfigError` naming the
    file and key when invalid, FileNotFoundError when missing."""
    path = Path(experiment_path) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: experiment config not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return validate_config(config, str(path))


def _portable(experiment: Path, path: str | None) -> str | None:
    """An absolute path inside the same tree as the experiment is stored relative to it (movable repos)."""
    if path is None or not Path(path).is_absolute():
        return path
    try:
        return os.path.relpath(path, experiment.resolve())
    except ValueError:
        return path


def create_experiment(experiment_path: str | Path, config: dict) -> dict:
    """Validate ``config`` and write it as the experiment's ``config.json`` (atomically); returns it.

    A new experiment's data is checked first (:func:`check_data`). If config.json already exists it must hold
    the same config, except ``training.steps`` (which may be changed to extend or shorten a run) and
    ``training.compile``; anything else is a :class:`ConfigError` (use a new folder).
    """
    experiment = Path(experiment_path)
    cfg = validate_config(config, "config")
    cfg["data"]["database"] = _portable(experiment, cfg["data"]["database"])
    cfg["data"]["cache_dir"] = _portable(experiment, cfg["data"]["cache_dir"])
    target = experiment / CONFIG_FILE
    if target.exists():
        old = load_config(experiment)
        a, b = copy.deepcopy(old), copy.deepcopy(cfg)
        a["training"]["steps"] = b["training"]["steps"] = 0
        a["training"]["compile"] = b["training"]["compile"] = None  # speed only: the new value is taken
        for c in (a, b):  # compare paths by where they point
            c["data"]["database"] = str(database_path(experiment, c).resolve())
        if a != b:
            raise ConfigError(
                f"{target}: the experiment exists with a different config; resume it with config=None or "
                "use a new experiment folder"
            )
        if all(old["training"][k] == cfg["training"][k] for k in ("steps", "compile")):
            return old
        for k in ("steps", "compile"):
            if old["training"][k] != cfg["training"][k]:
                log.info("%s: training.%s %s -> %s", target, k, old["training"][k], cfg["training"][k])
                old["training"][k] = cfg["training"][k]
        cfg = old
    else:
        check_data(experiment, cfg)  # a new experiment with impossible data is not even created
    atomic.write_bytes(target, (json.dumps(cfg, indent=2) + "\n").encode())
    return cfg


def check_data(experiment_path: str | Path, config: dict, plan: sampling.Plan | None = None) -> sampling.Plan:
    """The data checks that need the database (before any training): the DB exists, some track is long
    enough for a patch, there are at least 2 training playlists with enough usable tracks. Returns the plan."""
    source = str(Path(experiment_path) / CONFIG_FILE)
    db = database_path(experiment_path, config)
    if not db.exists():
        raise ConfigError(f"{source}: data.database: {db}: music database not found")
    audio_cfg = AudioConfig.from_dict(config["data"]["audio"])
    d = config["data"]
    if plan is None:
        plan = sampling.build_plan(
            db, audio_cfg, seed=d["seed"], validation_fraction=d["validation_fraction"],
            heldout_track_fraction=d["heldout_track_fraction"], min_tracks=d["min_tracks"],
            validation_by=d["validation_by"],
        )
    if not plan.tracks and plan.short_tracks:
        raise ConfigError(
            f"{source}: data.audio.patch_frames = {audio_cfg.patch_frames}: a patch "
            f"({audio_cfg.patch_seconds:.2f} s) is longer than every track of the playlists in {db}"
        )
    if len(plan.train) < 2:
        raise ConfigError(
            f"{source}: data.min_tracks = {d['min_tracks']}: {db} has {len(plan.train)} training playlist(s) with "
            f"at least {max(2, d['min_tracks'])} usable tracks; at least 2 are needed (check data.database, "
            "data.validation_fraction, data.heldout_track_fraction and data.audio.patch_frames)"
        )
    t = config["training"]
    per_playlist = t["batch_size"] // 2 if t["track_weight"] > 0 else t["batch_size"]
    usable = len({tid for members in plan.train.values() for tid in members})
    if per_playlist > usable:
        raise ConfigError(
            f"{source}: training.batch_size = {t['batch_size']}: each playlist of a step gives {per_playlist} "
            f"distinct tracks{' (batch_size / 2, cut twice)' if t['track_weight'] > 0 else ''}, but the training "
            f"playlists of {db} hold {usable} usable tracks in all"
        )
    return plan


# --------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_dir(experiment: Path) -> Path:
    return experiment / CHECKPOINT_DIR


def _checkpoint_file(experiment: Path, checkpoint: str | int) -> Path:
    if isinstance(checkpoint, int):
        return _checkpoint_dir(experiment) / f"step_{checkpoint:07d}.pt"
    p = Path(checkpoint)
    if p.suffix == ".pt" and (p.is_absolute() or p.exists()):
        return p
    return _checkpoint_dir(experiment) / f"{checkpoint}.pt"


def _save_checkpoint(experiment: Path, state: dict, kept: bool) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    folder = _checkpoint_dir(experiment)
    if kept:
        atomic.write_bytes(folder / f"step_{state['step']:07d}.pt", data)
    atomic.write_bytes(folder / "latest.pt", data)


def _save_best(experiment: Path, model: torch.nn.Module, config: dict, step: int, validation_loss: float) -> None:
    """``checkpoints/best.pt``: the weights with the lowest validation loss so far (model, config, step, loss;
    no optimizer state: it is for inference, see :func:`load_encoder` and ``progress.keep_best``)."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "config": config, "step": step, "validation_loss": validation_loss}, buf)
    atomic.write_bytes(_checkpoint_dir(experiment) / f"{BEST_CHECKPOINT}.pt", buf.getvalue())


def model_state(state_dict: dict) -> dict:
    """A model state dict with the ``_orig_mod.`` prefixes of a ``torch.compile``-d module's keys removed, so
    weights saved from a compiled or an eager encoder load into either."""
    prefix = "_orig_mod."
    return {k.replace(prefix, ""): v for k, v in state_dict.items()}


def _load_state(path: Path, device: str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)


def _newest_checkpoint(experiment: Path, repair: bool = False) -> tuple[dict, Path] | None:
    """The readable checkpoint with the highest step (latest.pt, else kept ones), or None.

    ``repair`` (the training process that writes the experiment): when that is a kept checkpoint because
    latest.pt is missing, unreadable or older, latest.pt is rewritten (atomically) as a copy of it, so that a
    finished run whose latest.pt was damaged leaves a readable one behind."""
    folder = _checkpoint_dir(experiment)
    if not folder.exists():
        return None
    if repair:
        for stale in folder.glob("*" + atomic.TMP_SUFFIX):  # from a run killed while writing
            stale.unlink(missing_ok=True)
    kept = sorted(folder.glob("step_*.pt"), reverse=True)  # zero-padded names: newest first
    best: tuple[dict, Path] | None = None
    for path in [folder / "latest.pt", *kept]:
        if not path.exists():
            continue
        if best is not None and path.name.startswith("step_"):
            try:
                if int(path.stem.split("_")[1]) <= best[0]["step"]:
                    break
            except ValueError:
                continue
        try:
            state = _load_state(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file: try the next one
            log.warning("%s: unreadable checkpoint (%s), trying an older one", path, exc)
            continue
        if best is None or state["step"] > best[0]["step"]:
            best = (state, path)
        if path.name.startswith("step_"):
            break
    if repair and best is not None and best[1] != folder / "latest.pt":
        atomic.write_bytes(folder / "latest.pt", best[1].read_bytes())
        log.warning("%s: rewritten from %s (step %d), the newest readable checkpoint", folder / "latest.pt",
                    best[1].name, best[0]["step"])
    return best


def _read_checkpoint(path: Path, device: str) -> tuple[dict, bytes]:
    """(state, file bytes) of a checkpoint; FileNotFoundError / RuntimeError naming the path."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (train the experiment first)")
    data = path.read_bytes()
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True), data
    except Exception as exc:
        raise RuntimeError(f"{path}: unreadable checkpoint ({exc})") from exc


def load_encoder(
    experiment_path: str | Path, checkpoint: str | int = "latest", device: str = "cpu"
) -> tuple[AudioEncoder, dict]:
    """The trained encoder of an experiment, in eval mode on ``device``, and a dict with ``step``,
    ``checkpoint_id`` (first 16 hex digits of the checkpoint file's sha256), ``config`` (the experiment
    config), ``audio`` (:class:`AudioConfig`) and ``path``.

    ``checkpoint``: "latest", a step number, a kept checkpoint's name ("step_0000100") or a .pt path.
    "latest" is the newest *readable* one: when latest.pt is missing or damaged, the newest readable kept
    checkpoint is used, with a warning (nothing is written: the next ``spotifai train`` repairs latest.pt).
    FileNotFoundError naming the path when it does not exist, RuntimeError when it cannot be read.
    """
    experiment = Path(experiment_path)
    path = _checkpoint_file(experiment, checkpoint)
    try:
        state, data = _read_checkpoint(path, device)
    except (FileNotFoundError, RuntimeError) as exc:
        found = _newest_checkpoint(experiment) if checkpoint == "latest" else None  # reads, never writes
        if found is None:
            raise
        path = found[1]
        state, data = _read_checkpoint(path, device)
        log.warning("%s; using %s (step %d), the newest readable kept checkpoint", exc, path.name, state["step"])
    config = validate_config(state["config"], str(path))
    model = AudioEncoder(EncoderConfig.from_dict(config["model"]))
    model.load_state_dict(model_state(state["model"]))
    model.to(device).eval()
    info = {
        "step": int(state["step"]),
        "checkpoint_id": hashlib.sha256(data).hexdigest()[:16],
        "config": config,
        "audio": AudioConfig.from_dict(config["data"]["audio"]),
        "path": str(path),
    }
    return model, info


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ------------------------------------------------------------------------------------------------- history


def _format_row(row: tuple) -> str:
    step, split, loss = row
    return f"{int(step)},{split},{float(loss):.6g}\n"


def _write_history(experiment: Path, rows: list) -> None:
    text = "step,split,loss\n" + "".join(_format_row(r) for r in rows)
    atomic.write_bytes(experiment / HISTORY_FILE, text.encode())


def read_history(experiment_path: str | Path) -> list[tuple[int, str, float]]:
    """The rows of an experiment's history.csv as (step, split, loss) tuples."""
    path = Path(experiment_path) / HISTORY_FILE
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [(int(r["step"]), r["split"], float(r["loss"])) for r in csv.DictReader(fh)]


# ---------------------------------------------------------------------------------------------- the loop


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:  # step = number of optimizer steps taken so far
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API that gloo lacks
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x))


def _gather(x: torch.Tensor) -> torch.Tensor:
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def batch_maker(
    experiment: str | Path, config: dict, plan: sampling.Plan, split: str, *, rank: int = 0, world: int = 1
) -> sampling.BatchMaker:
    """The :class:`spotifai.sampling.BatchMaker` training uses for ``split`` ("train" | "validation") of an
    experiment on ``rank`` of ``world`` (the loader benchmarks build theirs here too). With the patch cache on,
    batches are float16 (the cache's values, cast exactly to float32 on the training device), else float32."""
    t, d = config["training"], config["data"]
    cache = cache_path(Path(experiment), config)
    return sampling.BatchMaker(
        plan.train if split == "train" else plan.validation,
        plan.tracks, AudioConfig.from_dict(d["audio"]), buffer_size=t["buffer_size"], batch_size=t["batch_size"],
        seed=d["seed"], split=split, rank=rank, world_size=world, cache_dir=cache,
        same_track_views=t["track_weight"] > 0, dtype=torch.float32 if cache is None else torch.float16,
    )


def compile_backend() -> str:
    """The ``torch.compile`` backend of ``training.compile``: "inductor", or the ``SPOTIFAI_COMPILE_BACKEND``
    environment variable (e.g. "aot_eager": the same graphs without generated kernels, for quick checks)."""
    return os.environ.get("SPOTIFAI_COMPILE_BACKEND", "inductor")


def _defer_loss_reads(device: torch.device, grad_scaler: bool) -> bool:
    """Whether training steps leave the loss on the device (see ``_Runner.flush``): on CUDA without a GradScaler
    (fp16 keeps reading it at every step). The optimizer is then the fused AdamW, which can skip an update on
    the device."""
    return device.type == "cuda" and not grad_scaler


def _prefetch_to_device(batches, device: torch.device):
    """The batches of ``batches`` with their tensors on the CUDA ``device``, each copied (non-blocking, from the
    loader's pinned memory, on a side stream) while the previous step runs."""
    stream = torch.cuda.Stream(device)
    keys = ("mel_a", "mel_b", "groups")

    def upload(batch: dict) -> dict:
        with torch.cuda.stream(stream):
            return {**batch, **{k: batch[k].to(device, non_blocking=True) for k in keys}}

    it = iter(batches)
    nxt = next(it, None)
    nxt = None if nxt is None else upload(nxt)
    while nxt is not None:
        current = torch.cuda.current_stream(device)
        current.wait_stream(stream)
        for k in keys:
            nxt[k].record_stream(current)  # the copy's memory belongs to the compute stream from here on
        batch, nxt = nxt, next(it, None)
        nxt = None if nxt is None else upload(nxt)
        yield batch


class _Runner:
    """State of one training process (one rank)."""

    def __init__(self, experiment: Path, config: dict, plan: sampling.Plan, device: str, mixed_precision: bool,
                 multi_processing: bool, rank: int, world: int):
        self.experiment, self.config, self.plan = experiment, config, plan
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        t, o, d = config["training"], config["optimizer"], config["data"]
        self.P, self.K = t["buffer_size"], t["batch_size"]
        precision = t["precision"] if mixed_precision else "fp32"
        if precision == "fp16" and self.device.type != "cuda":
            log.warning("training.precision = fp16 needs CUDA; using bf16 on %s", self.device)
            precision = "bf16"
        self.precision = precision
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.audio = AudioConfig.from_dict(d["audio"])
        self.augment = AugmentConfig.from_dict(t["augment"])
        self.cache = cache_path(experiment, config)
        self.num_workers = d["num_workers"] if multi_processing else 0

        torch.manual_seed(d["seed"])
        self.raw_model = AudioEncoder(EncoderConfig.from_dict(config["model"])).to(self.device)
        self.model = self.raw_model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if self.device.type == "cuda":
                self.raw_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.raw_model)
                self.model = DistributedDataParallel(self.raw_model, device_ids=[self.device.index])
            else:
                self.model = DistributedDataParallel(self.raw_model)
        # training.compile: the training steps run the compiled module (fixed shapes: every step's batch has
        # the same P*K rows); validation and checkpoints use the eager raw_model (same weights, no recompiling)
        self.compiled = self.device.type == "cuda" if t["compile"] is None else bool(t["compile"])
        if self.compiled:
            self.model = torch.compile(self.model, dynamic=False, backend=compile_backend())
        decay = [p for n, p in self.raw_model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.raw_model.named_parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o["learning_rate"],
            fused=self.device.type == "cuda" or _defer_loss_reads(self.device, precision == "fp16"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(o["warmup_steps"], t["steps"])
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.step = 0
        self.history: list[tuple[int, str, float]] = []
        self.window: list[float] = []
        self.skipped_tracks: dict[int, str] = dict(plan.short_tracks)
        self.skipped_playlists: set[int] = set(plan.dropped_playlists)
        self.nonfinite = 0
        # On CUDA without a GradScaler the loss is not read back at every step (that would make the host wait for
        # the device): a non-finite loss skips the fused optimizer's update on the device (found_inf), and the
        # losses are read in one go when the loop needs them (see flush).
        self.deferred = _defer_loss_reads(self.device, self.scaler.is_enabled())
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last_loss = math.nan

    # -- pieces

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def maker(self, split: str) -> sampling.BatchMaker:
        return batch_maker(self.experiment, self.config, self.plan, split, rank=self.rank, world=self.world)

    def mels(self, batch: dict) -> torch.Tensor:
        """``mel_a`` then ``mel_b`` as one float32 tensor on the device (batches may be float16, see
        :func:`batch_maker`, and may already be on the device, see :func:`_prefetch_to_device`)."""
        a, b = batch["mel_a"], batch["mel_b"]
        nb = self.device.type == "cuda"
        out = torch.empty((a.shape[0] + b.shape[0], *a.shape[1:]), dtype=torch.float32, device=self.device)
        out[: a.shape[0]].copy_(a, non_blocking=nb)
        out[a.shape[0]:].copy_(b, non_blocking=nb)
        return out

    def loss(self, model, batch: dict) -> torch.Tensor:
        """The Barlow Twins loss of the global batch (gathered over ranks) as a float32 scalar."""
        n = batch["mel_a"].shape[0]
        mel = self.mels(batch)
        groups = batch["groups"].to(self.device, non_blocking=self.device.type == "cuda") + self.rank * self.P
        with self.autocast():
            z = model(mel, output="projections")
        z = z.float()
        z_a, z_b = z[:n], z[n:]
        if self.world > 1:
            gather = _gather_with_grad if torch.is_grad_enabled() else _gather
            z_a, z_b, groups = gather(z_a), gather(z_b), _gather(groups)
        t = self.config["training"]
        return playlist_and_track_loss(z_a, z_b, groups, track_weight=t["track_weight"], lambd=t["lambd"])

    def note_skips(self, batch: dict) -> None:
        for tid, reason in batch["skipped_tracks"]:
            if tid not in self.skipped_tracks:
                self.skipped_tracks[tid] = reason
                log.warning("skipping track %d: %s", tid, reason)
        for pid in batch["skipped_playlists"]:
            if pid not in self.skipped_playlists:
                self.skipped_playlists.add(pid)
                log.warning("skipping playlist %d: fewer than 2 usable tracks", pid)

    def validate(self) -> float | None:
        p = self.config["progress"]
        if not self.plan.validation or p["val_batches"] == 0:
            return None
        maker = self.val_maker
        self.raw_model.eval()
        losses = []
        with torch.no_grad():
            for j in range(p["val_batches"]):
                batch = maker.batch(j)
                self.note_skips(batch)
                losses.append(float(self.loss(self.raw_model, batch)))
        self.raw_model.train()
        finite = [v for v in losses if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else float("nan")

    def best_validation(self) -> float:
        """The lowest finite validation loss in the history so far (inf when there is none)."""
        return min((v for _, sp, v in self.history if sp == "validation" and math.isfinite(v)), default=math.inf)

    def state(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "step": self.step,
            "config": self.config,
            "history": [list(r) for r in self.history],
            "window": list(self.window),
            "skipped": {"tracks": {str(k): v for k, v in self.skipped_tracks.items()},
                        "playlists": sorted(self.skipped_playlists)},
        }

    def restore(self, state: dict) -> None:
        self.raw_model.load_state_dict(model_state(state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.rank == 0:
            _set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.config["data"]["seed"] + 7919 * self.rank + state["step"])
        self.step = int(state["step"])
        self.history = [(int(s), str(sp), float(v)) for s, sp, v in state["history"]]
        self.window = [float(v) for v in state["window"]]
        self.skipped_tracks.update({int(k): v for k, v in state["skipped"]["tracks"].items()})
        self.skipped_playlists.update(int(p) for p in state["skipped"]["playlists"])

    def augmented(self, batch: dict) -> dict:
        """``batch`` with both views augmented (training.augment; see :mod:`spotifai.augment`); the random
        numbers are a function of (seed, step, rank), so a resumed run augments exactly as an uninterrupted one."""
        if not self.augment.enabled:
            return batch
        # the generator lives on the training device: on CUDA, drawing the noise of 2 x 512 x 80 x 1024 values on
        # the host and copying it over made an augmented step about 10x slower than a plain one (H200 run of
        # scripts/gpu_real_music.py). The draws are a function of (seed, step, rank) for a given device type.
        gen = step_generator(self.config["data"]["seed"], batch["step"], self.rank, device=self.device)
        half = self.K // 2  # rows per playlist in a view: shifting by it mixes in another playlist's patch
        nb = self.device.type == "cuda"
        a, b = (batch[k].to(self.device, non_blocking=nb).float() for k in ("mel_a", "mel_b"))  # float32 views
        return {**batch, "mel_a": augment_view(a, self.augment, gen, mix_shift=half),
                "mel_b": augment_view(b, self.augment, gen, mix_shift=half)}

    def train_step(self, batch: dict) -> float:
        """One optimizer step on ``batch``; returns the loss (a non-finite loss skips the update, and
        ``training.max_nonfinite_steps`` of them in a row raise RuntimeError). With ``self.deferred`` the loss
        stays on the device until :meth:`flush` and the last flushed loss is returned."""
        loss = self.loss(self.model, self.augmented(batch))
        if self.deferred:
            return self._deferred_step(loss, batch.get("step", self.step + 1))
        value = float(loss.detach())
        if math.isfinite(value):
            self.nonfinite = 0
            self.scaler.scale(loss).backward()
            clip = self.config["optimizer"]["grad_clip"]
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.window.append(value)
        else:
            self.nonfinite += 1
            step = batch.get("step", self.step + 1)
            log.warning("step %d: non-finite loss (%s), step skipped (%d in a row)", step, value, self.nonfinite)
            (loss * 0.0).backward()  # keeps DDP's reducer in step on every rank; the grads are discarded
            if self.nonfinite >= self.config["training"]["max_nonfinite_steps"]:
                advice = "lower optimizer.learning_rate" + (
                    "" if self.precision == "fp32" else f" or train in fp32 (this run uses {self.precision})")
                raise RuntimeError(
                    f"{self.experiment}: {self.nonfinite} non-finite losses in a row at step {step}; {advice}"
                )
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.last_loss = value
        return value

    def _deferred_step(self, loss: torch.Tensor, step: int) -> float:
        """:meth:`train_step` without reading the loss back: the update of a non-finite loss is skipped by the
        fused AdamW on the device (``found_inf``, as a GradScaler does), its clipped NaN gradients are dropped."""
        detached = loss.detach()
        loss.backward()
        clip = self.config["optimizer"]["grad_clip"]
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip)
        self.optimizer.found_inf = (~torch.isfinite(detached)).float()
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.pending.append((step, detached))
        if len(self.pending) >= self.config["training"]["max_nonfinite_steps"]:
            self.flush()
        return self.last_loss

    def flush(self) -> None:
        """Read the pending losses of deferred steps (one device sync): finite ones join the loss window,
        non-finite ones are counted (RuntimeError at ``training.max_nonfinite_steps`` in a row)."""
        if not self.pending:
            return
        values = torch.stack([v for _, v in self.pending]).tolist()
        steps = [s for s, _ in self.pending]
        self.pending = []
        for step, value in zip(steps, values, strict=True):
            if math.isfinite(value):
                self.nonfinite = 0
                self.window.append(value)
                self.last_loss = value
                continue
            self.nonfinite += 1
            log.warning("step %d: non-finite loss (%s), step skipped (%d in a row)", step, value, self.nonfinite)
            if self.nonfinite >= self.config["training"]["max_nonfinite_steps"]:
                advice = "lower optimizer.learning_rate" + (
                    "" if self.precision == "fp32" else f" or train in fp32 (this run uses {self.precision})")
                raise RuntimeError(
                    f"{self.experiment}: {self.nonfinite} non-finite losses in a row at step {step}; {advice}"
                )

    # -- the loop

    def run(self) -> dict:
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        t, p = self.config["training"], self.config["progress"]
        total = t["steps"]
        main = self.rank == 0
        found = _newest_checkpoint(self.experiment, repair=main)
        resumed_from = 0
        if found is not None:
            state, path = found
            self.restore(state)
            resumed_from = self.step
            log.info("%s: resuming from step %d", path, self.step)
        if main:
            _write_history(self.experiment, self.history)  # drops rows after the checkpoint
        self.val_maker = self.maker("validation") if self.plan.validation else None
        last_val = next((v for s, sp, v in reversed(self.history) if sp == "validation"), None)
        last_train = next((v for s, sp, v in reversed(self.history) if sp == "train"), None)
        rate, measured_patches, measured_time, t_first = 0.0, 0, 0.0, None

        history_fh = (self.experiment / HISTORY_FILE).open("a", encoding="utf-8") if main else None

        def add_row(row: tuple) -> None:
            self.history.append(row)
            if history_fh is not None:
                history_fh.write(_format_row(row))
                history_fh.flush()

        loader = batches = iter(())
        train_maker = self.maker("train")
        patches_per_step = train_maker.P * self.K * self.world
        if self.step < total:
            loader = batches = iter(sampling.make_loader(
                train_maker, self.step + 1, total + 1, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
            ))
            if self.device.type == "cuda":
                batches = _prefetch_to_device(loader, self.device)
        bar = tqdm(total=total, initial=self.step, desc=f"train {self.experiment.name}", unit="step",
                   disable=not main, dynamic_ncols=True)
        try:
            t_prev = time.perf_counter()
            for batch in batches:
                step = batch["step"]
                assert step == self.step + 1, (step, self.step)
                self.note_skips(batch)
                value = self.train_step(batch)
                self.step = step

                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                else:
                    measured_patches += patches_per_step
                    measured_time += now - t_prev
                rate = patches_per_step / max(now - t_prev, 1e-9) if rate == 0 else (
                    0.9 * rate + 0.1 * patches_per_step / max(now - t_prev, 1e-9))
                t_prev = now

                final = step == total
                kept = step % p["checkpoint_period"] == 0 or final
                if (step % p["loss_window"] == 0 or kept or step % p["save_period"] == 0
                        or (p["val_period"] and step % p["val_period"] == 0)):
                    self.flush()  # deferred losses are read where the window, a checkpoint or the log needs them
                    value = self.last_loss
                if step % p["loss_window"] == 0 or final:
                    if self.window:
                        last_train = sum(self.window) / len(self.window)
                        add_row((step, "train", last_train))
                    self.window = []
                if (p["val_period"] and step % p["val_period"] == 0) or final:
                    v = self.validate()
                    if v is not None:
                        if main and p["keep_best"] and math.isfinite(v) and v < self.best_validation():
                            _save_best(self.experiment, self.raw_model, self.config, step, v)
                        last_val = v
                        add_row((step, "validation", v))
                    t_prev = time.perf_counter()
                if main and (kept or step % p["save_period"] == 0):
                    _save_checkpoint(self.experiment, self.state(), kept=kept)
                    t_prev = time.perf_counter()
                if main:
                    post = {"loss": f"{value:.4g}", "patches/s": f"{rate:.0f}"}
                    if last_val is not None:
                        post["val"] = f"{last_val:.4g}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
        finally:
            bar.close()
            if history_fh is not None:
                history_fh.close()
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        return {
            "experiment": str(self.experiment),
            "steps": self.step,
            "resumed_from": resumed_from,
            "final_train_loss": last_train,
            "last_validation_loss": last_val,
            "skipped_tracks": len(self.skipped_tracks),
            "skipped_playlists": len(self.skipped_playlists),
            "patches_per_second": measured_patches / measured_time if measured_time > 0 else None,
            "precision": self.precision,
            "world_size": self.world,
            "seconds": time.perf_counter() - t0,
        }


def _distributed(device: str) -> tuple[int, int, bool, str]:
    """(rank, world size, whether this call initialized the process group, device) from torchrun's env."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False, device
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), True, device


def train_model(
    experiment_path: str | Path,
    device: str = "cpu",
    mixed_precision: bool = True,
    multi_processing: bool = True,
    config: dict | None = None,
) -> dict:
    """Train (or resume) the experiment in ``experiment_path``.

    ``config``: a new experiment's config (see :func:`default_config`), written to config.json; ``None``
    resumes the experiment in the folder (from its newest checkpoint, or from step 0 when it has none).
    ``device``: "cpu" or "cuda"; ``mixed_precision``: False forces fp32 whatever training.precision says;
    ``multi_processing``: False makes batches in this process (no DataLoader workers).
    Under ``torchrun`` (WORLD_SIZE > 1) this runs DistributedDataParallel; only rank 0 writes files.

    Returns a summary dict: experiment, steps, resumed_from, final_train_loss, last_validation_loss,
    skipped_tracks, skipped_playlists (counts), patches_per_second (steady state, global), precision,
    world_size, seconds. Config problems raise :class:`ConfigError` before any training.
    """
    experiment = Path(experiment_path)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{experiment}: device {device!r} requested but CUDA is not available")
    rank, world, owns_group, device = _distributed(device)
    try:
        error = None
        if rank == 0:
            try:
                experiment.mkdir(parents=True, exist_ok=True)
                if config is not None:
                    create_experiment(experiment, config)
                elif not (experiment / CONFIG_FILE).exists():
                    raise FileNotFoundError(
                        f"{experiment / CONFIG_FILE}: experiment config not found (pass config= to create one)"
                    )
            except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = exc
        if world > 1:
            message = [None if error is None else f"{type(error).__name__}: {error}"]
            dist.broadcast_object_list(message, src=0)
            if rank != 0 and message[0] is not None:
                raise RuntimeError(f"rank 0 failed to set up {experiment}: {message[0]}")
        if error is not None:
            raise error
        cfg = load_config(experiment)
        plan = check_data(experiment, cfg)
        cache = cache_path(experiment, cfg)
        if cache is not None:  # decode every track once, on all cores, before step 1 (cheap when the cache is warm)
            if rank == 0:
                cache_fill.fill_cache(plan, AudioConfig.from_dict(cfg["data"]["audio"]), cache,
                                      workers=None if multi_processing else 0)
            if world > 1:
                dist.barrier()
        runner = _Runner(experiment, cfg, plan, device, mixed_precision, multi_processing, rank, world)
        summary = runner.run()
        if rank == 0:
            log.info("%s: %s", experiment, json.dumps(summary, default=str))
        return summary
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------------------- command line


def train_command(
    experiment: str | Path,
    *,
    database: str | Path | None = None,
    demo: bool = False,
    device: str = "cpu",
    mixed_precision: bool = True,
    multi_processing: bool = True,
    steps: int | None = None,
) -> dict:
    """What ``spotifai train`` does: create the experiment from ``database`` (default or, with ``demo``, the
    demo config) when it has no config.json yet, else resume it; ``steps`` overrides training.steps."""
    experiment = Path(experiment)
    config = None
    if not (experiment / CONFIG_FILE).exists():
        if database is None:
            raise FileNotFoundError(
                f"{experiment / CONFIG_FILE}: no experiment there; pass --database DB to create one"
            )
        config = demo_config(database) if demo else default_config(database)
    elif database is not None:
        log.info("%s exists: resuming it (--database ignored)", experiment / CONFIG_FILE)
    if steps is not None:
        config = config or load_config(experiment)
        config["training"]["steps"] = int(steps)
    return train_model(experiment, device=device, mixed_precision=mixed_precision,
                       multi_processing=multi_processing, config=config)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``spotifai train`` / ``python -m spotifai.train``."""
    p.add_argument("experiment", type=Path, help="experiment folder (experiments/<name>)")
    p.add_argument("--database", type=Path, default=None, help="music DB; creates the experiment if new")
    p.add_argument("--demo", action="store_true", help="with --database: use the small CPU demo config")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_false", help="train in fp32")
    p.add_argument("--no-multi-processing", dest="multi_processing", action="store_false",
                   help="no DataLoader worker processes")
    p.add_argument("--steps", type=int, default=None, help="override training.steps (extends a finished run)")


def run_arguments(args: argparse.Namespace) -> dict:
    return train_command(
        args.experiment, database=args.database, demo=args.demo, device=args.device,
        mixed_precision=args.mixed_precision, multi_processing=args.multi_processing, steps=args.steps,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m spotifai.train EXPERIMENT`` (also under ``torchrun --nproc_per_node=N``)."""
    parser = argparse.ArgumentParser(prog="python -m spotifai.train", description="Train or resume an experiment.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from spotifai.printable import configure_logging, error_line

    rank = int(os.environ.get("RANK", "0"))
    configure_logging(logging.INFO if rank == 0 else logging.WARNING, f"%(levelname)s [rank {rank}] %(name)s: %(message)s")
    try:
        summary = run_arguments(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(error_line("spotifai train", exc), file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
