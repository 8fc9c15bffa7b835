"""An experiment: its folder, its files and its config (no torch: the CLI, the app and the notebooks read
experiments without loading the trainer).

An experiment is a folder ``experiments/<name>/``::

    config.json              the validated config (sections model, optimizer, training, data, progress)
    history.csv              step,split,loss  (split = train | validation | validation_map: the retrieval
                             probe's mAP, spotifai.probe)
    checkpoints/latest.pt    the newest checkpoint (every progress.save_period steps and at the end)
    checkpoints/step_NNNNNNN.pt  kept checkpoints (every progress.checkpoint_period steps and at the end)
    checkpoints/best.pt      the weights of the best validation (progress.keep_best, .best_by; what embed uses)
    cache/                   the log-mel patch cache (data.cache_dir, when data.patch_cache is on)
    embeddings.npz, evaluation.json, baselines.npz, figures/   written by embed, evaluate and the notebooks

Every file is written through :mod:`spotifai.atomic` (fsync, then rename; ``0o666 & ~umask``). Relative paths
in config.json (data.database, data.cache_dir) resolve against the experiment folder (``~`` is expanded).

The config is one :class:`ExperimentConfig` of five sections, every key required and unknown keys errors:

* ``model``: :class:`spotifai.configs.EncoderConfig` (n_mels = data.audio.n_mels, n_frames =
  data.audio.patch_frames).
* ``optimizer``: :class:`OptimizerConfig`; ``training``: :class:`TrainingConfig`; ``data``: :class:`DataConfig`
  (its ``audio`` is a :class:`spotifai.configs.AudioConfig`); ``progress``: :class:`ProgressConfig`.

Configs written before a key existed load with the value that reproduces how they were trained
(``_LEGACY_DEFAULTS``), and the old names ``training.batch_size`` / ``training.buffer_size`` read as
``training.patches_per_playlist`` / ``training.playlists_per_step`` (``_LEGACY_NAMES``), so an old experiment
loads, resumes and embeds exactly as before.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import sqlite3
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from spotifai import atomic, database
from spotifai.configs import AudioConfig, AugmentConfig, EncoderConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
PROBE_SPLIT = "validation_map"
"""The retrieval probe's rows in history.csv (split column; the value column holds its mAP, not a loss)."""
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best"
PRECISIONS = ("bf16", "fp16", "fp32")
# Upper bounds of the sizes a config may ask for (far above any real use; they turn a typo such as 10**12 into a
# clear error instead of a sampler that allocates until the machine runs out of memory).
MAX_PATCHES_PER_PLAYLIST = 4096
MAX_PLAYLISTS_PER_STEP = 4096  # per rank
MAX_BATCH_GIB = 16.0  # one step's float32 patches (playlists_per_step x patches_per_playlist x n_mels x frames)
MAX_NUM_WORKERS = 256  # data.num_workers
MAX_VAL_BATCHES = 100_000  # progress.val_batches and progress.calibration_batches
MAX_PROBE_PATCHES = 64  # progress.probe_patches (the probe keeps them in memory, spotifai.probe)
BEST_BY = ("loss", "retrieval")  # progress.best_by


class ConfigError(ValueError):
    """An invalid experiment config: the message names the file (when there is one) and the key."""


# ------------------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a linear warm-up, then cosine decay to 0 at training.steps."""

    learning_rate: float  # peak
    weight_decay: float  # AdamW, on weights of 2 or more dimensions
    warmup_steps: int
    grad_clip: float  # max gradient norm; 0 = off


@dataclass(frozen=True)
class TrainingConfig:
    """One step: ``playlists_per_step`` playlists (per rank) x ``patches_per_playlist`` patches."""

    steps: int
    patches_per_playlist: int  # even, >= 2 (with track_weight > 0: patches_per_playlist / 2 tracks, cut twice)
    playlists_per_step: int  # >= 2, per rank
    precision: str  # bf16 | fp16 | fp32 (fp16 needs CUDA; on CPU it falls back to bf16)
    lambd: float  # Barlow Twins off-diagonal weight
    track_weight: float  # weight of the same-track term (see spotifai.sampling); 0 = playlist positives only
    max_nonfinite_steps: int  # consecutive non-finite losses that stop training
    augment: AugmentConfig  # view augmentations
    compile: bool | None  # torch.compile the training steps; None = on for CUDA (speed only, may change)


@dataclass(frozen=True)
class DataConfig:
    """Where the playlists come from and how they are split (:meth:`split`), patched and loaded."""

    database: str  # the music DB (relative: to the experiment folder)
    seed: int
    validation_fraction: float
    heldout_track_fraction: float
    min_tracks: int
    audio: AudioConfig
    patch_cache: bool
    cache_dir: str | None  # None = "cache" in the experiment
    num_workers: int  # DataLoader workers per rank
    validation_by: str  # "tracks": unseen tracks of the training playlists; "playlists": unseen playlists

    @property
    def split_arguments(self) -> dict:
        """The keyword arguments of :func:`spotifai.database.split` (every stage splits with these)."""
        return {"seed": self.seed, "validation_fraction": self.validation_fraction,
                "heldout_track_fraction": self.heldout_track_fraction, "min_tracks": self.min_tracks,
                "validation_by": self.validation_by}

    def split(self, conn: sqlite3.Connection) -> database.Split:
        """The experiment's split of the playlists in ``conn`` (training, validation, held-out tracks)."""
        return database.split(conn, **self.split_arguments)


@dataclass(frozen=True)
class ProgressConfig:
    """When to validate, log and checkpoint."""

    val_period: int  # steps between validations; 0 = none
    val_batches: int  # fixed validation batches
    save_period: int  # steps between latest.pt
    checkpoint_period: int  # steps between kept checkpoints
    loss_window: int  # train loss rows average this many steps
    keep_best: bool  # write checkpoints/best.pt at each new best validation score (embedding then uses it)
    # training batches run through the model before each validation to recompute its normalization statistics
    # for the current weights (spotifai.model.calibrate_norms); 0 = keep the running averages
    calibration_batches: int
    # patches per track of the retrieval probe run at each validation (spotifai.probe: playlist mAP of the
    # validation tracks, history split "validation_map"); 0 = no probe
    probe_patches: int
    best_by: str  # what keep_best keeps: "loss" (lowest validation loss) or "retrieval" (highest probe mAP)


@dataclass(frozen=True)
class ExperimentConfig:
    """The validated config of an experiment (build it with :meth:`from_dict`; :meth:`to_dict` is config.json)."""

    model: EncoderConfig
    optimizer: OptimizerConfig
    training: TrainingConfig
    data: DataConfig
    progress: ProgressConfig

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict, source: str = "config") -> ExperimentConfig:
        """Check keys, types and values (no data access); :class:`ConfigError` naming ``source`` and the key
        (``section.key``) of the first problem."""
        return _parse(config, source)

    def with_training(self, **changes) -> ExperimentConfig:
        """A copy with ``training`` keys changed (``steps``, ``compile``: the ones an experiment may change)."""
        return replace(self, training=replace(self.training, **changes))


_SECTION_TYPES = {"model": EncoderConfig, "optimizer": OptimizerConfig, "training": TrainingConfig,
                  "data": DataConfig, "progress": ProgressConfig}
_SECTIONS = tuple(_SECTION_TYPES)
# the JSON types a field's annotation accepts (int is accepted where float is)
_JSON_TYPES = {"int": (int,), "float": (float,), "bool": (bool,), "str": (str,), "str | None": (str, type(None)),
               "bool | None": (bool, type(None)), "AugmentConfig": (dict,), "AudioConfig": (dict,)}
# Keys added after experiments were first written, with the value that reproduces how those were trained
# (so an old experiment still loads, resumes and embeds exactly as before).
_LEGACY_DEFAULTS: dict[str, dict] = {
    "model": {"time_stride": 2, "pooling": "mean"},
    "training": {"track_weight": 0.0, "augment": {}, "compile": False},
    "data": {"validation_by": "playlists"},
    "progress": {"keep_best": False, "calibration_batches": 0, "probe_patches": 0, "best_by": "loss"},
}
# Keys renamed since: old name -> new name (configs and checkpoints written before still load).
_LEGACY_NAMES: dict[str, dict[str, str]] = {
    "training": {"batch_size": "patches_per_playlist", "buffer_size": "playlists_per_step"},
}


# ------------------------------------------------------------------------------------------------ presets


def default_config(database: str | Path, **overrides) -> dict:
    """The default ("full") experiment config for the music DB at ``database`` (stored as an absolute path), as
    the dict config.json holds.

    ``overrides``: ``section={...}`` dicts merged into a section (``data={"audio": {...}}`` too), or single
    keys by name (``steps=100``, ``model_dim=64``). ``n_mels`` and ``patch_frames``/``n_frames`` set both the
    model and the audio settings. An unknown name is a :class:`ConfigError`.
    """
    audio = AudioConfig(n_mels=80, patch_frames=1024, max_time_padding=0.25)
    config = {
        "model": EncoderConfig(
            n_mels=audio.n_mels, n_frames=audio.patch_frames, model_dim=256, projection_dim=512,
            n_layers=8, n_heads=8, ff_dim=None, dropout=0.0, pooling="max",
        ).to_dict(),
        "optimizer": {"learning_rate": 3e-4, "weight_decay": 0.05, "warmup_steps": 500, "grad_clip": 1.0},
        "training": {
            "steps": 20000, "patches_per_playlist": 32, "playlists_per_step": 24, "precision": "bf16",
            "lambd": 5e-3, "track_weight": 2.0, "max_nonfinite_steps": 20, "augment": AugmentConfig().to_dict(),
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
                     "loss_window": 50, "keep_best": True, "calibration_batches": 4, "probe_patches": 4,
                     "best_by": "retrieval"},
    }
    return _apply_overrides(config, overrides)


def demo_config(database: str | Path) -> dict:
    """The small config of the CPU demo chain, sized to train in minutes on 2 CPU cores (the one place to tune
    it; how it was chosen, with the measurements: README, "Tuning on the demo")."""
    return default_config(
        database,
        n_mels=64,
        patch_frames=256,  # 2.56 s patches
        # mean pooling: on the demo corpus's 2.56 s patches max pooling lost (README, "Real music")
        model={"model_dim": 64, "projection_dim": 128, "n_layers": 2, "n_heads": 4, "ff_dim": 128, "pooling": "mean"},
        optimizer={"learning_rate": 2e-3, "weight_decay": 0.05, "warmup_steps": 40, "grad_clip": 1.0},
        # fp32: bf16 autocast is slower than fp32 on a CPU without AMX; on CUDA use bf16 or fp16
        training={"steps": 1200, "patches_per_playlist": 8, "playlists_per_step": 16, "precision": "fp32"},
        # the demo has 160 playlists: validation on unseen playlists, as the demo was tuned
        data={"patch_cache": True, "num_workers": 1, "validation_by": "playlists"},
        # keep_best off: the demo was tuned on its last step; 2 validation batches of unseen playlists are too
        # noisy to pick a step by
        progress={"val_period": 100, "val_batches": 2, "save_period": 50, "checkpoint_period": 200,
                  "loss_window": 20, "keep_best": False, "calibration_batches": 0, "probe_patches": 0,
                  "best_by": "loss"},
    )


def cpu_config(database: str | Path) -> dict:
    """A real-music config sized for half an hour of 2 CPU cores: the full preset's long patches (10.24 s, 64
    mels) through a middle-sized encoder whose stem turns every 8 frames into one token (128 tokens per patch
    instead of the full preset's 512). Why these sizes, and what they measured: README, "Real music"."""
    return default_config(
        database,
        n_mels=64,
        patch_frames=1024,
        model={"model_dim": 192, "projection_dim": 512, "n_layers": 4, "n_heads": 4, "ff_dim": 768,
               "time_stride": 8},
        optimizer={"learning_rate": 5e-4, "weight_decay": 0.05, "warmup_steps": 40, "grad_clip": 1.0},
        training={"steps": 480, "patches_per_playlist": 16, "playlists_per_step": 16, "precision": "fp32"},
        data={"patch_cache": True, "num_workers": 1},
        # keep_best by the retrieval probe, not the loss: with calibrated statistics the validation loss is lowest
        # early (step 80) while the probe's mAP and the album precision of held-out songs keep rising (README,
        # "Real music")
        progress={"val_period": 40, "val_batches": 4, "save_period": 40, "checkpoint_period": 1000,
                  "loss_window": 20, "keep_best": True, "probe_patches": 4, "best_by": "retrieval"},
    )


def tiny_config(database: str | Path) -> dict:
    """A seconds-long config for smoke tests of the whole chain (not for results)."""
    return default_config(
        database,
        n_mels=32,
        patch_frames=128,
        model={"model_dim": 32, "projection_dim": 64, "n_layers": 1, "n_heads": 2, "ff_dim": 64},
        optimizer={"learning_rate": 1e-3, "weight_decay": 0.0, "warmup_steps": 2, "grad_clip": 1.0},
        training={"steps": 6, "patches_per_playlist": 4, "playlists_per_step": 4, "precision": "fp32"},
        data={"patch_cache": True, "num_workers": 0},
        progress={"val_period": 3, "val_batches": 1, "save_period": 3, "checkpoint_period": 6, "loss_window": 2},
    )


PRESETS = {"demo": demo_config, "cpu": cpu_config, "full": default_config, "tiny": tiny_config}


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


# ------------------------------------------------------------------------------------------------ loading


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


def _plain(source: str, where: str, cls, d: dict):
    """``cls.from_dict(d)`` of a plain config dataclass (every field required), errors as :class:`ConfigError`."""
    _check_keys(source, "key", f"{where}.", d, [f.name for f in fields(cls)])
    try:
        return cls.from_dict(d)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc


def _parse(config: dict, source: str) -> ExperimentConfig:
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got {type(config).__name__}")
    cfg = copy.deepcopy(config)
    _check_keys(source, "section", "", cfg, list(_SECTIONS))
    for section in _SECTIONS:
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"{source}: {section}: expected an object, got {type(cfg[section]).__name__}")
    for section, names in _LEGACY_NAMES.items():
        for old, new in names.items():
            if old in cfg[section] and new not in cfg[section]:
                cfg[section] = {new if k == old else k: v for k, v in cfg[section].items()}
    for section, defaults in _LEGACY_DEFAULTS.items():
        for key, value in defaults.items():
            cfg[section].setdefault(key, value)
    for section, cls in _SECTION_TYPES.items():
        if cls is EncoderConfig:
            continue
        _check_keys(source, "key", f"{section}.", cfg[section], [f.name for f in fields(cls)])
        for f in fields(cls):
            _check_type(f"{source}: {section}.{f.name}", cfg[section][f.name], _JSON_TYPES[f.type])
    _check_finite(source, cfg)
    model = _plain(source, "model", EncoderConfig, cfg["model"])
    audio = _plain(source, "data.audio", AudioConfig, cfg["data"]["audio"])
    try:
        augment = AugmentConfig.from_dict(cfg["training"]["augment"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: training.augment: {exc}") from exc
    parsed = ExperimentConfig(
        model=model,
        optimizer=OptimizerConfig(**cfg["optimizer"]),
        training=TrainingConfig(**{**cfg["training"], "augment": augment}),
        data=DataConfig(**{**cfg["data"], "audio": audio}),
        progress=ProgressConfig(**cfg["progress"]),
    )
    _check_values(parsed, source)
    return parsed


def _check_values(c: ExperimentConfig, source: str) -> None:  # noqa: C901 - one flat list of rules
    m, a, t, o, d, p = c.model, c.data.audio, c.training, c.optimizer, c.data, c.progress

    def bad(key: str, why: str):
        section, *rest = key.split(".")
        value = getattr(getattr(c, section), rest[0])
        raise ConfigError(f"{source}: {key} = {value!r}: {why}")

    if m.n_mels != a.n_mels:
        bad("model.n_mels", f"must equal data.audio.n_mels ({a.n_mels})")
    if m.n_frames != a.patch_frames:
        bad("model.n_frames", f"must equal data.audio.patch_frames ({a.patch_frames})")
    if t.steps < 1:
        bad("training.steps", "must be >= 1")
    if t.patches_per_playlist < 2 or t.patches_per_playlist % 2 or t.patches_per_playlist > MAX_PATCHES_PER_PLAYLIST:
        bad("training.patches_per_playlist", f"must be even, >= 2 and <= {MAX_PATCHES_PER_PLAYLIST}")
    if not 2 <= t.playlists_per_step <= MAX_PLAYLISTS_PER_STEP:
        bad("training.playlists_per_step", f"must be >= 2 and <= {MAX_PLAYLISTS_PER_STEP}")
    patches = t.playlists_per_step * t.patches_per_playlist
    gib = patches * a.n_mels * a.patch_frames * 4 / 2**30
    if gib > MAX_BATCH_GIB:
        bad("training.patches_per_playlist", f"a step of training.playlists_per_step x patches_per_playlist = "
            f"{patches} patches of {a.n_mels} x {a.patch_frames} would take {gib:.1f} GiB (at most {MAX_BATCH_GIB:g})")
    if t.precision not in PRECISIONS:
        bad("training.precision", f"must be one of {', '.join(PRECISIONS)}")
    if t.lambd < 0:
        bad("training.lambd", "must be >= 0")
    if t.track_weight < 0:
        bad("training.track_weight", "must be >= 0 (0 = playlist positives only)")
    if t.max_nonfinite_steps < 1:
        bad("training.max_nonfinite_steps", "must be >= 1")
    if not o.learning_rate > 0:
        bad("optimizer.learning_rate", "must be > 0")
    for key in ("weight_decay", "warmup_steps"):
        if getattr(o, key) < 0:
            bad(f"optimizer.{key}", "must be >= 0")
    if o.grad_clip < 0:
        bad("optimizer.grad_clip", "must be >= 0 (0 = no clipping)")
    for key in ("validation_fraction", "heldout_track_fraction"):
        if not 0 <= getattr(d, key) < 1:
            bad(f"data.{key}", "must be in [0, 1)")
    if d.validation_by not in database.VALIDATION_RULES:
        bad("data.validation_by", f"must be one of {', '.join(database.VALIDATION_RULES)}")
    if d.validation_by == "tracks" and d.validation_fraction + d.heldout_track_fraction >= 1:
        bad("data.validation_fraction", "plus data.heldout_track_fraction must be < 1 with validation_by 'tracks'")
    if d.min_tracks < 2:
        bad("data.min_tracks", "must be >= 2 (two views need two tracks)")
    if not 0 <= d.num_workers <= MAX_NUM_WORKERS:
        bad("data.num_workers", f"must be >= 0 and <= {MAX_NUM_WORKERS}")
    if not d.database:
        bad("data.database", "must name the music database file")
    for key in ("val_period", "val_batches", "calibration_batches"):
        if getattr(p, key) < 0:
            bad(f"progress.{key}", "must be >= 0")
    for key in ("val_batches", "calibration_batches"):
        if getattr(p, key) > MAX_VAL_BATCHES:
            bad(f"progress.{key}", f"must be <= {MAX_VAL_BATCHES}")
    for key in ("save_period", "checkpoint_period", "loss_window"):
        if getattr(p, key) < 1:
            bad(f"progress.{key}", "must be >= 1")
    if not 0 <= p.probe_patches <= MAX_PROBE_PATCHES:
        bad("progress.probe_patches", f"must be >= 0 and <= {MAX_PROBE_PATCHES}")
    if p.best_by not in BEST_BY:
        bad("progress.best_by", f"must be one of {', '.join(BEST_BY)}")
    if p.best_by == "retrieval" and p.probe_patches == 0:
        bad("progress.best_by", "'retrieval' needs the retrieval probe (progress.probe_patches >= 1)")


def validate_config(config: dict | ExperimentConfig, source: str = "config") -> dict:
    """The normalized config.json dict of ``config`` (see :meth:`ExperimentConfig.from_dict`)."""
    return as_config(config, source).to_dict()


def as_config(config: dict | ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """``config`` as an :class:`ExperimentConfig` (a dict is validated, naming ``source`` in errors)."""
    return config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config, source)


def load_config(experiment_path: str | Path) -> ExperimentConfig:
    """The validated config of an experiment (``config.json`` in the folder); :class:`ConfigError` naming the
    file and key when invalid, FileNotFoundError when missing."""
    path = Path(experiment_path) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: experiment config not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return ExperimentConfig.from_dict(config, str(path))


# -------------------------------------------------------------------------------------------------- paths


def resolve(experiment_path: str | Path, path: str | Path) -> Path:
    """``path`` of an experiment's config: ``~`` expanded, relative paths against the experiment folder. When the
    folder exists the result is resolved through it (``../music.db`` from a symlinked experiment is next to the
    link's target); before it exists, normalized lexically (``exp/../db`` then still works)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    experiment = Path(experiment_path)
    if experiment.exists():
        return (experiment / p).resolve()
    return Path(os.path.normpath(experiment.absolute() / p))


def database_path(experiment_path: str | Path, config: ExperimentConfig) -> Path:
    """The music DB of an experiment (``data.database`` resolved against the experiment folder)."""
    return resolve(experiment_path, config.data.database)


def cache_path(experiment_path: str | Path, config: ExperimentConfig) -> Path | None:
    """The patch cache folder of an experiment, or None when the cache is off."""
    if not config.data.patch_cache:
        return None
    return resolve(experiment_path, config.data.cache_dir or "cache")


def _portable(experiment: Path, path: str | None) -> str | None:
    """An absolute path inside the same tree as the experiment is stored relative to it (movable repos)."""
    if path is None or not Path(path).is_absolute():
        return path
    try:
        return os.path.relpath(path, experiment.resolve())
    except ValueError:
        return path


def write_config(experiment_path: str | Path, config: dict | ExperimentConfig, check_new=None) -> ExperimentConfig:
    """Validate ``config`` and write it as the experiment's ``config.json`` (atomically); returns it.

    ``check_new(experiment, config)`` is called before a new experiment is written (the trainer's data checks).
    If config.json already exists it must hold the same config, except ``training.steps`` (which may be changed
    to extend or shorten a run) and ``training.compile``; anything else is a :class:`ConfigError`.
    """
    experiment = Path(experiment_path)
    cfg = as_config(config, "config")
    cfg = replace(cfg, data=replace(cfg.data, database=_portable(experiment, cfg.data.database),
                                    cache_dir=_portable(experiment, cfg.data.cache_dir)))
    target = experiment / CONFIG_FILE
    if target.exists():
        old = load_config(experiment)

        def comparable(c: ExperimentConfig) -> ExperimentConfig:  # paths compared by where they point
            c = c.with_training(steps=0, compile=None)
            return replace(c, data=replace(c.data, database=str(database_path(experiment, c).resolve())))

        if comparable(old) != comparable(cfg):
            raise ConfigError(
                f"{target}: the experiment exists with a different config; resume it with config=None or "
                "use a new experiment folder"
            )
        changed = {k: getattr(cfg.training, k) for k in ("steps", "compile")
                   if getattr(old.training, k) != getattr(cfg.training, k)}
        if not changed:
            return old
        for k, v in changed.items():
            log.info("%s: training.%s %s -> %s", target, k, getattr(old.training, k), v)
        cfg = old.with_training(**changed)
    elif check_new is not None:
        check_new(experiment, cfg)  # a new experiment with impossible data is not even created
    atomic.write_text(target, json.dumps(cfg.to_dict(), indent=2) + "\n")
    return cfg


# ------------------------------------------------------------------------------------------------ history


def format_history_row(row: tuple) -> str:
    """One line of history.csv."""
    step, split, loss = row
    return f"{int(step)},{split},{float(loss):.6g}\n"


def write_history(experiment_path: str | Path, rows: list) -> None:
    """Replace history.csv (atomically) with ``rows`` of (step, split, loss)."""
    text = "step,split,loss\n" + "".join(format_history_row(r) for r in rows)
    atomic.write_text(Path(experiment_path) / HISTORY_FILE, text)


def read_history(experiment_path: str | Path) -> list[tuple[int, str, float]]:
    """The rows of an experiment's history.csv as (step, split, loss) tuples."""
    path = Path(experiment_path) / HISTORY_FILE
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [(int(r["step"]), r["split"], float(r["loss"])) for r in csv.DictReader(fh)]
