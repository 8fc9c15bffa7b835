"""The training loop: resume, mixed precision, validation, checkpoints, DDP.

``train_model(experiment, config=...)`` creates an experiment (:mod:`spotifai.experiment`: folder, config,
presets) and trains it; ``train_model(experiment)`` resumes it. One run reads top to bottom in
:meth:`_Runner.run`: for each batch, a step, then the loss log, a validation, a checkpoint and the progress bar
when they are due (:meth:`_Runner.after_step`); :mod:`spotifai.training_log` keeps history.csv and the patches
per second. Each validation calibrates the normalization statistics, computes the validation loss and, with
``progress.probe_patches``, the retrieval probe's playlist mAP (:mod:`spotifai.probe`); with
``progress.keep_best`` the weights of the best validation (``progress.best_by``: lowest loss or highest mAP) are
kept as ``checkpoints/best.pt``.

Resume: each checkpoint (:mod:`spotifai.checkpoint`) holds model, optimizer, scheduler, GradScaler and RNG
states, the step, the config, the history rows up to its step and the unfinished loss window.
``train_model(path)`` loads the newest readable checkpoint, rewrites history.csv from it (atomically) and
continues, so after a ``kill -9`` at any moment the history has neither duplicated nor missing steps and the
run ends at the same step as an uninterrupted one. Batches are a function of (seed, step, rank) (see
:mod:`spotifai.sampling`), so the resumed run also sees the batches an uninterrupted run would have seen.

Multi-GPU / multi-process: ``torchrun --nproc_per_node=N -m spotifai.train EXPERIMENT`` (the ``spotifai
train`` command line) runs DistributedDataParallel (nccl on CUDA, gloo on CPU). Every rank makes its own batch
of ``training.playlists_per_step`` playlists (different playlists per rank), the projections are gathered
across ranks with gradient (``torch.distributed.nn.functional.all_gather``) and the loss is computed on the
global batch; only rank 0 writes history and checkpoints. BatchNorm in the projector: on CUDA it is converted
to SyncBatchNorm (global batch statistics); PyTorch's SyncBatchNorm has no CPU kernel, so with gloo on CPU each
rank normalizes its own patches (the loss itself always standardizes the gathered global batch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from spotifai import cache_fill, checkpoint, sampling
from spotifai.augment import augment_view, step_generator
from spotifai.experiment import (
    CONFIG_FILE,
    ConfigError,
    ExperimentConfig,
    as_config,
    cache_path,
    database_path,
    load_config,
    preset_config,
    write_config,
)
from spotifai.loss import playlist_and_track_loss
from spotifai.model import AudioEncoder, calibrate_norms
from spotifai.probe import PROBE_SPLIT, RetrievalProbe, build_probe
from spotifai.training_log import History, Throughput

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ setup


def check_data(experiment_path: str | Path, config: ExperimentConfig,
               plan: sampling.Plan | None = None) -> sampling.Plan:
    """The data checks that need the database (before any training): the DB exists, some track is long
    enough for a patch, there are at least 2 training playlists with enough usable tracks. Returns the plan."""
    source = str(Path(experiment_path) / CONFIG_FILE)
    db = database_path(experiment_path, config)
    if not db.exists():
        raise ConfigError(f"{source}: data.database: {db}: music database not found")
    audio, d = config.data.audio, config.data
    if plan is None:
        plan = sampling.build_plan(db, audio, **d.split_arguments)
    if not plan.tracks and plan.short_tracks:
        raise ConfigError(
            f"{source}: data.audio.patch_frames = {audio.patch_frames}: a patch "
            f"({audio.patch_seconds:.2f} s) is longer than every track of the playlists in {db}"
        )
    if len(plan.train) < 2:
        raise ConfigError(
            f"{source}: data.min_tracks = {d.min_tracks}: {db} has {len(plan.train)} training playlist(s) with "
            f"at least {max(2, d.min_tracks)} usable tracks; at least 2 are needed (check data.database, "
            "data.validation_fraction, data.heldout_track_fraction and data.audio.patch_frames)"
        )
    t = config.training
    per_playlist = t.patches_per_playlist // 2 if t.track_weight > 0 else t.patches_per_playlist
    usable = len({tid for members in plan.train.values() for tid in members})
    if per_playlist > usable:
        raise ConfigError(
            f"{source}: training.patches_per_playlist = {t.patches_per_playlist}: each playlist of a step gives "
            f"{per_playlist} distinct tracks{' (patches_per_playlist / 2, cut twice)' if t.track_weight > 0 else ''}"
            f", but the training playlists of {db} hold {usable} usable tracks in all"
        )
    return plan


def create_experiment(experiment_path: str | Path, config: dict | ExperimentConfig) -> ExperimentConfig:
    """:func:`spotifai.experiment.write_config` with the data of a new experiment checked first
    (:func:`check_data`): an experiment with impossible data is not even created."""
    return write_config(experiment_path, config, check_new=check_data)


# ------------------------------------------------------------------------------------------------ the loop


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
    experiment: str | Path, config: ExperimentConfig | dict, plan: sampling.Plan, split: str, *, rank: int = 0, world: int = 1
) -> sampling.BatchMaker:
    """The :class:`spotifai.sampling.BatchMaker` training uses for ``split`` ("train" | "validation") of an
    experiment on ``rank`` of ``world`` (the loader benchmarks build theirs here too). With the patch cache on,
    batches are float16 (the cache's values, cast exactly to float32 on the training device), else float32."""
    config = as_config(config)
    t = config.training
    cache = cache_path(experiment, config)
    return sampling.BatchMaker(
        plan.train if split == "train" else plan.validation, plan.tracks, config.data.audio,
        buffer_size=t.playlists_per_step, batch_size=t.patches_per_playlist, seed=config.data.seed, split=split,
        rank=rank, world_size=world, cache_dir=cache, same_track_views=t.track_weight > 0,
        dtype=torch.float32 if cache is None else torch.float16,
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


class _Runner:
    """State of one training process (one rank)."""

    def __init__(self, experiment: Path, config: ExperimentConfig | dict, plan: sampling.Plan, device: str,
                 mixed_precision: bool, multi_processing: bool, rank: int, world: int):
        self.experiment, self.config, self.plan = experiment, as_config(config), plan
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        t, config = self.config.training, self.config
        precision = t.precision if mixed_precision else "fp32"
        if precision == "fp16" and self.device.type != "cuda":
            log.warning("training.precision = fp16 needs CUDA; using bf16 on %s", self.device)
            precision = "bf16"
        self.precision = precision
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.augment = t.augment
        self.num_workers = config.data.num_workers if multi_processing else 0
        torch.manual_seed(config.data.seed)
        self._build_model()
        self._build_optimizer()
        self.step = 0
        self.history = History(experiment, write=rank == 0)
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
        self.val_maker: sampling.BatchMaker | None = None
        self.train_maker: sampling.BatchMaker | None = None
        self.probe: RetrievalProbe | None = None
        self.probe_built = False

    def _build_model(self) -> None:
        """``raw_model`` (the encoder: validation, checkpoints) and ``model`` (what training steps run: DDP,
        compiled)."""
        self.raw_model = AudioEncoder(self.config.model).to(self.device)
        self.model = self.raw_model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if self.device.type == "cuda":
                self.raw_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.raw_model)
                self.model = DistributedDataParallel(self.raw_model, device_ids=[self.device.index])
            else:
                self.model = DistributedDataParallel(self.raw_model)
        # training.compile: the training steps run the compiled module (fixed shapes: every step's batch has
        # the same number of rows); validation and checkpoints use the eager raw_model (same weights)
        compile_ = self.config.training.compile
        self.compiled = self.device.type == "cuda" if compile_ is None else bool(compile_)
        if self.compiled:
            self.model = torch.compile(self.model, dynamic=False, backend=compile_backend())

    def _build_optimizer(self) -> None:
        o = self.config.optimizer
        decay = [p for n, p in self.raw_model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.raw_model.named_parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.learning_rate,
            fused=self.device.type == "cuda" or _defer_loss_reads(self.device, self.precision == "fp16"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(o.warmup_steps, self.config.training.steps)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    # -- pieces

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def maker(self, split: str) -> sampling.BatchMaker:
        return batch_maker(self.experiment, self.config, self.plan, split, rank=self.rank, world=self.world)

    def mels(self, batch: dict) -> torch.Tensor:
        """``mel_a`` then ``mel_b`` as one float32 tensor on the device (batches may be float16, see
        :func:`batch_maker`, and may already be on the device, see :func:`spotifai.sampling.prefetch_to_device`)."""
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
        groups = batch["groups"].to(self.device, non_blocking=self.device.type == "cuda") + self.rank * self.config.training.playlists_per_step
        with self.autocast():
            z = model(mel, output="projections")
        z = z.float()
        z_a, z_b = z[:n], z[n:]
        if self.world > 1:
            gather = _gather_with_grad if torch.is_grad_enabled() else _gather
            z_a, z_b, groups = gather(z_a), gather(z_b), _gather(groups)
        t = self.config.training
        return playlist_and_track_loss(z_a, z_b, groups, track_weight=t.track_weight, lambd=t.lambd)

    def note_skips(self, batch: dict) -> None:
        for tid, reason in batch["skipped_tracks"]:
            if tid not in self.skipped_tracks:
                self.skipped_tracks[tid] = reason
                log.warning("skipping track %d: %s", tid, reason)
        for pid in batch["skipped_playlists"]:
            if pid not in self.skipped_playlists:
                self.skipped_playlists.add(pid)
                log.warning("skipping playlist %d: fewer than 2 usable tracks", pid)

    def calibrate(self) -> int:
        """Recompute the model's normalization statistics (:func:`spotifai.model.calibrate_norms`) on the last
        ``progress.calibration_batches`` training batches (both views, unaugmented, remade from the batch maker:
        a function of the step, so a resumed run calibrates exactly as an uninterrupted one). Returns the number
        of batches used."""
        n = min(self.config.progress.calibration_batches, self.step)
        if n == 0 or self.train_maker is None:
            return 0

        batches = (self.mels(self.train_maker.batch(step)) for step in range(self.step - n + 1, self.step + 1))
        with self.autocast():
            return calibrate_norms(self.raw_model, batches)

    def validate(self) -> float | None:
        p = self.config.progress
        if not self.plan.validation or p.val_batches == 0:
            return None
        self.calibrate()
        maker = self.val_maker
        self.raw_model.eval()
        losses = []
        with torch.no_grad():
            for j in range(p.val_batches):
                batch = maker.batch(j)
                self.note_skips(batch)
                losses.append(float(self.loss(self.raw_model, batch)))
        self.raw_model.train()
        finite = [v for v in losses if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else float("nan")

    def probe_score(self) -> float | None:
        """Playlist mAP of the validation tracks (:mod:`spotifai.probe`, after :meth:`validate` calibrated the
        statistics), on rank 0 when ``progress.probe_patches`` > 0; None otherwise or without a usable probe.
        The probe's patches are read at its first use (the patch cache is warm by then)."""
        p = self.config.progress
        if self.rank != 0 or p.probe_patches == 0 or not self.plan.validation:
            return None
        if not self.probe_built:
            self.probe_built = True
            self.probe = build_probe(self.plan, self.config.data.audio, p.probe_patches, seed=self.config.data.seed,
                                     cache_dir=cache_path(self.experiment, self.config))
            if self.probe is None:
                log.warning("retrieval probe: fewer than two readable validation tracks; no probe")
        if self.probe is None:
            return None
        with self.autocast():
            return self.probe.score(self.raw_model, self.device)

    def is_best(self, loss: float | None, retrieval: float | None) -> bool:
        """Whether this validation's score beats every earlier one (``progress.best_by``); ties of the probe go
        to the later step."""
        if self.config.progress.best_by == "retrieval":
            best = max((v for _, sp, v in self.history.rows if sp == PROBE_SPLIT and math.isfinite(v)),
                       default=-math.inf)
            return retrieval is not None and math.isfinite(retrieval) and retrieval >= best
        return loss is not None and math.isfinite(loss) and loss < self.history.best_validation()

    def state(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "step": self.step,
            "config": self.config.to_dict(),
            "history": [list(r) for r in self.history.rows],
            "window": list(self.window),
            "skipped": {"tracks": {str(k): v for k, v in self.skipped_tracks.items()},
                        "playlists": sorted(self.skipped_playlists)},
        }

    def restore(self, state: dict) -> None:
        self.raw_model.load_state_dict(checkpoint.model_state(state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.rank == 0:
            checkpoint.set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.config.data.seed + 7919 * self.rank + state["step"])
        self.step = int(state["step"])
        self.history.rows = [(int(s), str(sp), float(v)) for s, sp, v in state["history"]]
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
        gen = step_generator(self.config.data.seed, batch["step"], self.rank, device=self.device)
        # rows per playlist in a view: shifting by it mixes in another playlist's patch
        half = self.config.training.patches_per_playlist // 2
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
            clip = self.config.optimizer.grad_clip
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.window.append(value)
        else:
            (loss * 0.0).backward()  # keeps DDP's reducer in step on every rank; the grads are discarded
            self.count_nonfinite(batch.get("step", self.step + 1), value)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.last_loss = value
        return value

    def _deferred_step(self, loss: torch.Tensor, step: int) -> float:
        """:meth:`train_step` without reading the loss back: the update of a non-finite loss is skipped by the
        fused AdamW on the device (``found_inf``, as a GradScaler does), its clipped NaN gradients are dropped."""
        detached = loss.detach()
        loss.backward()
        clip = self.config.optimizer.grad_clip
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
        if len(self.pending) >= self.config.training.max_nonfinite_steps:
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
            self.count_nonfinite(step, value)

    def count_nonfinite(self, step: int, value: float) -> None:
        """A skipped step; RuntimeError at ``training.max_nonfinite_steps`` of them in a row."""
        self.nonfinite += 1
        log.warning("step %d: non-finite loss (%s), step skipped (%d in a row)", step, value, self.nonfinite)
        if self.nonfinite >= self.config.training.max_nonfinite_steps:
            advice = "lower optimizer.learning_rate" + (
                "" if self.precision == "fp32" else f" or train in fp32 (this run uses {self.precision})")
            raise RuntimeError(f"{self.experiment}: {self.nonfinite} non-finite losses in a row at step {step}; {advice}")

    # -- the loop

    def run(self) -> dict:
        """Resume, then for each batch: step -> log -> maybe validate -> maybe checkpoint -> progress."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        resumed_from = self.resume()
        total = self.config.training.steps
        self.val_maker = self.maker("validation") if self.plan.validation else None
        self.train_maker = train_maker = self.maker("train")
        speed = Throughput(train_maker.P * self.config.training.patches_per_playlist * self.world)
        loader = batches = iter(())
        if self.step < total:
            loader = batches = iter(sampling.make_loader(
                train_maker, self.step + 1, total + 1, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
            ))
            if self.device.type == "cuda":
                batches = sampling.prefetch_to_device(loader, self.device)
        bar = tqdm(total=total, initial=self.step, desc=f"train {self.experiment.name}", unit="step",
                   disable=self.rank != 0, dynamic_ncols=True)
        try:
            with self.history:
                speed.paused()
                for batch in batches:
                    assert batch["step"] == self.step + 1, (batch["step"], self.step)
                    self.note_skips(batch)
                    value = self.train_step(batch)
                    self.step = batch["step"]
                    speed.step()
                    self.after_step(value, speed, bar)
        finally:
            bar.close()
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        return {
            "experiment": str(self.experiment),
            "steps": self.step,
            "resumed_from": resumed_from,
            "final_train_loss": self.history.last("train"),
            "last_validation_loss": self.history.last("validation"),
            "skipped_tracks": len(self.skipped_tracks),
            "skipped_playlists": len(self.skipped_playlists),
            "patches_per_second": speed.steady,
            "precision": self.precision,
            "world_size": self.world,
            "seconds": time.perf_counter() - t0,
        }

    def resume(self) -> int:
        """Restore the newest readable checkpoint (rank 0 repairs latest.pt); returns its step (0: none)."""
        found = checkpoint.newest(self.experiment, repair=self.rank == 0)
        if found is not None:
            state, path = found
            self.restore(state)
            log.info("%s: resuming from step %d", path, self.step)
        return self.step

    def after_step(self, value: float, speed: Throughput, bar) -> None:
        """What is due after a step: the train loss row, a validation, a checkpoint, the progress bar."""
        p, step = self.config.progress, self.step
        final = step == self.config.training.steps
        kept = step % p.checkpoint_period == 0 or final
        saves = kept or step % p.save_period == 0
        validates = bool(p.val_period and step % p.val_period == 0) or final
        logs = step % p.loss_window == 0 or final
        if logs or saves or validates:
            self.flush()  # deferred losses are read where the window, a checkpoint or the log needs them
            value = self.last_loss
        if logs:
            if self.window:
                self.history.add(step, "train", sum(self.window) / len(self.window))
            self.window = []
        if validates:
            v = self.validate()
            r = self.probe_score() if v is not None else None
            if v is not None:
                if self.rank == 0 and p.keep_best and self.is_best(v, r):
                    checkpoint.save_best(self.experiment, self.raw_model.state_dict(), self.config.to_dict(), step, v,
                                         validation_map=r)
                self.history.add(step, "validation", v)
                if r is not None:
                    self.history.add(step, PROBE_SPLIT, r)
            speed.paused()
        if self.rank == 0 and saves:
            checkpoint.save(self.experiment, self.state(), kept=kept)
            speed.paused()
        if self.rank == 0:
            post = {"loss": f"{value:.4g}", "patches/s": f"{speed.rate:.0f}"}
            last_val = self.history.last("validation")
            if last_val is not None:
                post["val"] = f"{last_val:.4g}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)


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
    config: dict | ExperimentConfig | None = None,
) -> dict:
    """Train (or resume) the experiment in ``experiment_path``.

    ``config``: a new experiment's config (see :func:`spotifai.experiment.preset_config`), written to config.json; ``None``
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
                cache_fill.fill_cache(plan, cfg.data.audio, cache, workers=None if multi_processing else 0)
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


def train_command(
    experiment: str | Path,
    *,
    database: str | Path | None = None,
    preset: str = "full",
    device: str = "cpu",
    mixed_precision: bool = True,
    multi_processing: bool = True,
    steps: int | None = None,
) -> dict:
    """What ``spotifai train`` does: create the experiment from ``database`` with the named ``preset``'s config
    (:data:`spotifai.experiment.PRESETS`) when it has no config.json yet, else resume it; ``steps`` overrides
    training.steps."""
    experiment = Path(experiment)
    config = None
    if not (experiment / CONFIG_FILE).exists():
        if database is None:
            raise FileNotFoundError(
                f"{experiment / CONFIG_FILE}: no experiment there; pass --database DB to create one"
            )
        config = preset_config(preset, database)
    elif database is not None:
        log.info("%s exists: resuming it (--database ignored)", experiment / CONFIG_FILE)
    if steps is not None:
        config = (config or load_config(experiment).to_dict())
        config["training"]["steps"] = int(steps)
    return train_model(experiment, device=device, mixed_precision=mixed_precision,
                       multi_processing=multi_processing, config=config)


def main(argv: list[str] | None = None) -> int:
    """``python -m spotifai.train EXPERIMENT [...]`` (also under ``torchrun --nproc_per_node=N``): ``spotifai
    train`` (:mod:`spotifai.cli` defines the arguments)."""
    from spotifai import cli

    return cli.main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
