"""The training loop: config validation, learning, checkpoints, resume after SIGKILL, DDP (gloo), bad audio."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synth_playlists import make_corpus

from spotifai import checkpoint as checkpoints
from spotifai import experiment as experiments
from spotifai import train
from spotifai.model import AudioEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("train_corpus"), n_playlists=10, tracks_per_playlist=5, seconds=2.5)


def tiny_config(db, **sections) -> dict:
    """A model and run small enough for a loaded 2-core machine."""
    cfg = experiments.default_config(
        db,
        n_mels=32,
        patch_frames=64,
        model={"model_dim": 32, "projection_dim": 64, "n_layers": 1, "n_heads": 2, "ff_dim": 64},
        optimizer={"learning_rate": 2e-3, "warmup_steps": 3},
        training={"steps": 10, "patches_per_playlist": 4, "playlists_per_step": 4},
        data={"validation_fraction": 0.25, "heldout_track_fraction": 0.1, "num_workers": 0,
              "cache_dir": str(Path(db).parent / "cache")},  # shared by the tests: decode each file once
        progress={"val_period": 5, "val_batches": 1, "save_period": 5, "checkpoint_period": 10, "loss_window": 5},
    )
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def _check_history(experiment: Path, steps: int, window: int, val_period: int) -> None:
    rows = experiments.read_history(experiment)
    train_steps = [s for s, split, _ in rows if split == "train"]
    val_steps = [s for s, split, _ in rows if split == "validation"]
    assert train_steps == sorted(set(range(window, steps + 1, window)) | {steps})
    assert val_steps == sorted(set(range(val_period, steps + 1, val_period)) | {steps})


# --------------------------------------------------------------------------------------------- config


def _set(cfg: dict, dotted: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *path, last = dotted.split(".")
    node = cfg
    for part in path:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.epochz", 3, "unknown key training.epochz"),
        ("optimizer.grad_clip", _DELETE, "missing key optimizer.grad_clip"),
        ("progress", _DELETE, "missing section 'progress'"),
        ("extra", {}, "unknown section 'extra'"),
        ("training.steps", "100", "training.steps: expected int"),
        ("data.patch_cache", 1, "data.patch_cache: expected bool"),
        ("training.patches_per_playlist", 3, "training.patches_per_playlist"),
        ("training.patches_per_playlist", 0, "training.patches_per_playlist"),
        ("training.playlists_per_step", 1, "training.playlists_per_step"),
        ("training.precision", "fp8", "training.precision"),
        ("data.validation_fraction", 1.5, "data.validation_fraction"),
        ("model.n_heads", 3, "model"),
        ("model.n_mels", 40, "model.n_mels"),
        ("data.audio.hop", 3, "data.audio.hop"),
        ("progress.save_period", 0, "progress.save_period"),
        ("progress.best_by", "accuracy", "progress.best_by"),
        ("progress.probe_patches", -1, "progress.probe_patches"),
        ("progress.probe_patches", 0, "progress.best_by"),  # "retrieval" needs the probe
    ],
)
def test_invalid_config_fails_before_training_naming_the_key(corpus, tmp_path, key, value, message):
    bad = _set(tiny_config(corpus), key, value)
    with pytest.raises(experiments.ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        train.train_model(tmp_path / "exp", config=bad)
    assert not (tmp_path / "exp" / "config.json").exists()
    # the same config in a config.json: the message names the file too
    (tmp_path / "exp2").mkdir()
    (tmp_path / "exp2" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(experiments.ConfigError, match="config.json") as info:
        experiments.load_config(tmp_path / "exp2")
    assert key.split(".")[-1] in str(info.value)


def test_impossible_data_fails_before_training(corpus, tmp_path):
    long_patch = tiny_config(corpus)
    long_patch["model"]["n_frames"] = long_patch["data"]["audio"]["patch_frames"] = 1000  # 10 s > 2.5 s tracks
    with pytest.raises(experiments.ConfigError, match="data.audio.patch_frames"):
        train.train_model(tmp_path / "a", config=long_patch, multi_processing=False)
    assert not (tmp_path / "a" / "checkpoints").exists() and not (tmp_path / "a" / "config.json").exists()
    few = make_corpus(tmp_path / "few", n_playlists=1, tracks_per_playlist=3)
    with pytest.raises(experiments.ConfigError, match="data.min_tracks"):
        train.train_model(tmp_path / "b", config=tiny_config(few), multi_processing=False)
    missing = tiny_config(corpus)
    missing["data"]["database"] = str(tmp_path / "nope.db")
    with pytest.raises(experiments.ConfigError, match="data.database"):
        train.train_model(tmp_path / "c", config=missing, multi_processing=False)
    with pytest.raises(FileNotFoundError, match="config.json"):
        train.train_model(tmp_path / "d")


def test_overrides():
    cfg = experiments.default_config("x.db", steps=7, model_dim=48, n_mels=40, patch_frames=100)
    assert cfg["training"]["steps"] == 7 and cfg["model"]["model_dim"] == 48
    assert cfg["model"]["n_mels"] == cfg["data"]["audio"]["n_mels"] == 40
    assert cfg["model"]["n_frames"] == cfg["data"]["audio"]["patch_frames"] == 100
    with pytest.raises(experiments.ConfigError, match="bogus"):
        experiments.default_config("x.db", bogus=1)
    experiments.validate_config(experiments.demo_config("x.db"))
    for name in experiments.PRESETS:
        experiments.validate_config(experiments.preset_config(name, "x.db"))
    cpu = experiments.as_config(experiments.preset_config("cpu", "x.db")).model
    assert cpu.time_stride == 8 and cpu.tokens(cpu.n_frames) == 128  # 10.24 s patches as 128 tokens


def test_config_written_before_track_weight_reads_as_playlist_only():
    old = experiments.default_config("x.db")
    del old["training"]["track_weight"]
    assert experiments.validate_config(old)["training"]["track_weight"] == 0.0
    assert experiments.default_config("x.db")["training"]["track_weight"] > 0
    with pytest.raises(experiments.ConfigError, match="training.track_weight"):
        experiments.validate_config(_set(old, "training.track_weight", -1.0))


# ------------------------------------------------------------------------------------------ training


def test_run_writes_history_checkpoints_and_extends(corpus, tmp_path):
    exp = tmp_path / "exp"
    summary = train.train_model(exp, config=tiny_config(corpus), multi_processing=False)
    assert summary["steps"] == 10 and summary["resumed_from"] == 0
    assert summary["final_train_loss"] is not None and summary["last_validation_loss"] is not None
    assert (exp / "checkpoints" / "latest.pt").exists() and (exp / "checkpoints" / "step_0000010.pt").exists()
    assert not (exp / "checkpoints" / "step_0000005.pt").exists()  # save_period only updates latest.pt
    assert not list(exp.rglob("*.tmp"))
    _check_history(exp, 10, 5, 5)
    config = json.loads((exp / "config.json").read_text())
    assert not Path(config["data"]["database"]).is_absolute()  # relative to the experiment folder
    assert (exp / config["data"]["database"]).resolve() == corpus.resolve()

    model, info = checkpoints.load_encoder(exp)
    assert isinstance(model, AudioEncoder) and not model.training
    assert info["step"] == 10 and len(info["checkpoint_id"]) == 16 and info["audio"].n_mels == 32
    with torch.no_grad():
        feats, proj = model(torch.zeros(2, 32, 64))
    assert feats.shape == (2, 32) and proj.shape == (2, 64)
    _, info10 = checkpoints.load_encoder(exp, 10)
    assert info10["checkpoint_id"] == info["checkpoint_id"]
    with pytest.raises(FileNotFoundError, match="step_0000007"):
        checkpoints.load_encoder(exp, 7)

    # same config again: nothing to do; more steps: continues from 10
    assert train.train_model(exp, multi_processing=False)["steps"] == 10
    longer = tiny_config(corpus, training={"steps": 13})
    summary = train.train_model(exp, config=longer, multi_processing=False)
    assert summary["steps"] == 13 and summary["resumed_from"] == 10
    steps = [(s, split) for s, split, _ in experiments.read_history(exp)]
    # the tiny preset inherits the full preset's retrieval probe: each validation also writes its mAP row
    assert len(steps) == len(set(steps))
    assert steps[-3:] == [(13, "train"), (13, "validation"), (13, experiments.PROBE_SPLIT)]
    changed = tiny_config(corpus, optimizer={"learning_rate": 0.1})
    with pytest.raises(experiments.ConfigError, match="different config"):
        train.train_model(exp, config=changed)


def test_cli_train(corpus, tmp_path, capsys):
    from spotifai import cli

    exp = tmp_path / "exp"
    train.create_experiment(exp, tiny_config(corpus, training={"steps": 2}))
    assert cli.main(["train", str(exp), "--no-multi-processing", "--no-mixed-precision"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["precision"] == "fp32"
    assert cli.main(["train", str(exp), "--no-multi-processing", "--steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from"] == 2
    assert experiments.load_config(exp).training.steps == 3
    # a new experiment with the default config: 10 s patches are longer than the 2.5 s tracks
    assert cli.main(["train", str(tmp_path / "new"), "--database", str(corpus)]) == 2
    assert "data.audio.patch_frames" in capsys.readouterr().err
    assert not (tmp_path / "new" / "config.json").exists()
    assert cli.main(["train", str(tmp_path / "none")]) == 2
    assert "--database" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("track_weight", [0.0, 2.0])
def test_short_training_lowers_the_loss(corpus, tmp_path, track_weight):
    # all training playlists in every step: with the same-track term a step of 4 playlists x 2 tracks gives
    # 8 rows per view, too few to estimate a 64-d cross-correlation, and the loss barely moves in 60 steps
    cfg = tiny_config(corpus, training={"steps": 60, "playlists_per_step": 8, "track_weight": track_weight},
                      progress={"loss_window": 10, "val_period": 30})
    summary = train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    losses = [loss for _, split, loss in experiments.read_history(tmp_path / "exp") if split == "train"]
    assert len(losses) == 6
    assert min(losses[-2:]) < 0.85 * losses[0], losses
    assert summary["patches_per_second"] > 0


def test_nonfinite_losses_skip_then_stop(corpus, tmp_path, monkeypatch, caplog):
    calls = {"n": 0}

    def sometimes_nan(z_a, z_b, groups, track_weight, lambd):
        calls["n"] += 1
        value = (z_a.sum() + z_b.sum()) * 0.0 + 1.0
        return value * float("nan") if calls["n"] > 2 else value

    monkeypatch.setattr(train, "playlist_and_track_loss", sometimes_nan)
    cfg = tiny_config(corpus, training={"steps": 20, "max_nonfinite_steps": 3}, progress={"val_period": 0})
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row at step 5"):
        train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    assert "non-finite loss" in caplog.text


def test_corrupt_audio_is_skipped_and_counted(tmp_path):
    db = make_corpus(tmp_path / "c", n_playlists=4, tracks_per_playlist=3, seconds=2.0, corrupt=1)
    cfg = tiny_config(db, training={"steps": 4, "patches_per_playlist": 4},
                      data={"validation_fraction": 0.0, "heldout_track_fraction": 0.0})
    summary = train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    assert summary["steps"] == 4 and summary["skipped_tracks"] == 1 and summary["skipped_playlists"] == 0


# ---------------------------------------------------------------------------------- resume and DDP


@pytest.mark.slow
def test_resume_after_sigkill_gives_consistent_history(corpus, tmp_path):
    exp = tmp_path / "exp"
    steps = 100
    cfg = tiny_config(corpus, training={"steps": steps},
                      progress={"loss_window": 3, "save_period": 5, "checkpoint_period": 50, "val_period": 10})
    train.create_experiment(exp, cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotifai.train", str(exp), "--no-multi-processing"],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not (exp / "checkpoints" / "latest.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere between two checkpoints, maybe while writing one
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    killed_at = max(s for s, _, _ in experiments.read_history(exp))
    summary = train.train_model(exp, multi_processing=False)
    assert 0 < summary["resumed_from"] < steps, (summary, killed_at)
    assert summary["steps"] == steps
    _check_history(exp, steps, 3, 10)
    assert (exp / "checkpoints" / f"step_{steps:07d}.pt").exists()
    assert checkpoints.load_encoder(exp)[1]["step"] == steps


@pytest.mark.slow
def test_torchrun_two_gloo_processes(corpus, tmp_path):
    exp = tmp_path / "exp"
    train.create_experiment(exp, tiny_config(corpus, training={"steps": 6}, progress={"val_period": 3}))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "spotifai.train", str(exp), "--no-multi-processing"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])  # `spotifai train` prints the summary
    assert summary["world_size"] == 2 and summary["steps"] == 6
    _check_history(exp, 6, 5, 3)
    # rank 0 alone writes: the newest, the kept and the best-validation checkpoint (progress.keep_best)
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["best.pt", "latest.pt", "step_0000006.pt"]
    assert len(list(exp.glob("history*"))) == 1


_DDP_GRAD_SCRIPT = """
import sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from spotifai.loss import playlist_and_track_loss
from spotifai.model import AudioEncoder, EncoderConfig
from spotifai.train import _gather, _gather_with_grad
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
cfg = EncoderConfig(n_mels=16, n_frames=32, model_dim=16, projection_dim=24, n_layers=1, n_heads=2)
model = AudioEncoder(cfg).double().eval()  # eval: BatchNorm uses running stats, the same on every rank
g = torch.Generator().manual_seed(1)
xa, xb = (torch.randn(12, 16, 32, generator=g, dtype=torch.float64) for _ in range(2))
groups = torch.arange(6).repeat_interleave(2)
playlist_and_track_loss(model(xa, output="projections"), model(xb, output="projections"), groups, 1.0).backward()
reference = [p.grad.clone() for p in model.parameters()]
model.zero_grad()
ddp = DistributedDataParallel(model)
rows = slice(rank * 6, rank * 6 + 6)  # each rank holds half of the global batch
z = ddp(torch.cat([xa[rows], xb[rows]]), output="projections")
playlist_and_track_loss(_gather_with_grad(z[:6]), _gather_with_grad(z[6:]), _gather(groups[rows]), 1.0).backward()
err = max(float((p.grad - q).abs().max() / q.abs().max()) for p, q in zip(model.parameters(), reference))
# one file per rank: two processes printing to one pipe can merge their lines
open(f"{sys.argv[1]}/relerr_{rank}", "w").write(repr(err))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_gradient_of_the_gathered_loss_equals_the_single_process_gradient(tmp_path):
    script = tmp_path / "ddp_grad.py"
    script.write_text(_DDP_GRAD_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = [float(p.read_text()) for p in sorted(tmp_path.glob("relerr_*"))]
    assert len(errors) == 2 and max(errors) < 1e-9, errors


def test_keep_best_saves_the_lowest_validation_loss_and_embed_uses_it(corpus, tmp_path):
    from spotifai import embed

    exp = tmp_path / "exp"
    cfg = tiny_config(corpus, training={"steps": 8}, progress={"val_period": 2, "keep_best": True, "best_by": "loss"})
    train.train_model(exp, config=cfg, multi_processing=False)
    validation = [(s, v) for s, sp, v in experiments.read_history(exp) if sp == "validation"]
    best_step, best_loss = min(validation, key=lambda row: row[1])
    state = torch.load(exp / "checkpoints" / "best.pt", weights_only=True)
    assert state["step"] == best_step and state["validation_loss"] == pytest.approx(best_loss, rel=1e-5)
    assert "optimizer" not in state  # for inference only
    summary = embed.embed_experiment(exp, batch_size=16, num_workers=0, progress=False)
    assert summary["step"] == best_step
    assert embed.embed_experiment(exp, checkpoint="latest", batch_size=16, num_workers=0, progress=False,
                                  force=True)["step"] == 8
    # an old config without the key reads as keep_best false: no best.pt
    legacy = tiny_config(corpus, training={"steps": 4}, progress={"val_period": 2})
    del legacy["progress"]["keep_best"]
    train.train_model(tmp_path / "legacy", config=legacy, multi_processing=False)
    assert not (tmp_path / "legacy" / "checkpoints" / "best.pt").exists()


def test_the_retrieval_probe_keeps_the_best_validation_map_as_evaluation_would_score_it(corpus, tmp_path):
    from spotifai import embed, evaluate

    exp = tmp_path / "probe"
    cfg = tiny_config(corpus, training={"steps": 8},
                      progress={"val_period": 2, "keep_best": True, "best_by": "retrieval", "probe_patches": 2})
    train.train_model(exp, config=cfg, multi_processing=False)
    rows = experiments.read_history(exp)
    scores = [(s, v) for s, sp, v in rows if sp == experiments.PROBE_SPLIT]
    assert [s for s, _ in scores] == [s for s, sp, _ in rows if sp == "validation"] == [2, 4, 6, 8]
    assert all(0 < v <= 1 for _, v in scores)
    best = max(v for _, v in scores)
    best_step = max(s for s, v in scores if v == best)  # ties go to the later step
    state = torch.load(exp / "checkpoints" / "best.pt", weights_only=True)
    assert state["step"] == best_step and state["validation_map"] == pytest.approx(best, rel=1e-5)

    # the same number from the inference path: embed the probe's tracks with best.pt (2 evenly spaced patches,
    # the model's pooling) and score the validation tracks with the evaluation's own metric
    config = experiments.as_config(cfg)
    plan = train.check_data(exp, config)
    val = sorted({t for tids in plan.validation.values() for t in tids})
    items = [(t, plan.tracks[t][0]) for t in sorted(set(val) | {t for tids in plan.train.values() for t in tids})]
    encoder, _ = checkpoints.load_encoder(exp, checkpoints.resolve(exp, "best"))
    res = embed.embed_tracks(encoder, items, config.data.audio, max_patches_per_track=2, progress=False,
                             cache_dir=experiments.cache_path(exp, config))
    ids = res.track_ids.tolist()
    sets = [{p for p, tids in (*plan.train.items(), *plan.validation.items()) if t in tids} for t in ids]
    q = [ids.index(t) for t in val]
    exclude = torch.zeros(len(q), len(ids), dtype=torch.bool)
    exclude[range(len(q)), q] = True
    ap = evaluate.per_query_metrics(res.projections[q], res.projections, {"playlist": evaluate.set_relevance(
        [sets[i] for i in q], sets)}, exclude=exclude.numpy())["playlist_map"]
    assert float(ap.mean()) == pytest.approx(best, abs=1e-4)

    # the loss-curve figure draws the probe on its own axis
    import pandas as pd

    from spotifai import plots

    fig = plots.loss_curves(pd.DataFrame(rows, columns=["step", "split", "loss"]))
    assert len(fig.axes) == 2 and "mAP" in fig.axes[1].get_ylabel()


def test_a_config_written_before_the_probe_reads_as_no_probe_and_best_by_loss(corpus):
    legacy = tiny_config(corpus)
    for key in ("probe_patches", "best_by"):
        del legacy["progress"][key]
    progress = experiments.as_config(legacy).progress
    assert (progress.probe_patches, progress.best_by) == (0, "loss")


def test_validation_calibrates_the_norms_on_the_last_training_batches(corpus, tmp_path):
    from spotifai.model import calibrate_norms

    def norm_buffers(model):
        return {k: v for k, v in model.state_dict().items() if "running" in k}

    exp = tmp_path / "calibrated"
    cfg = tiny_config(corpus, training={"steps": 4}, progress={"val_period": 4, "save_period": 4,
                                                                "calibration_batches": 2})
    train.train_model(exp, config=cfg, multi_processing=False)
    state = torch.load(exp / "checkpoints" / "latest.pt", weights_only=True)  # saved right after the validation
    model = AudioEncoder(checkpoints.stored_configs(state, "latest.pt")[0])
    model.load_state_dict(checkpoints.model_state(state["model"]))
    saved = norm_buffers(model)
    maker = train.batch_maker(exp, cfg, train.check_data(exp, experiments.as_config(cfg)), "train")
    mels = [torch.cat([b["mel_a"], b["mel_b"]]).float() for b in (maker.batch(3), maker.batch(4))]
    assert calibrate_norms(model, mels) == 2
    for key, value in norm_buffers(model).items():  # the same weights and batches give the same statistics
        torch.testing.assert_close(value, saved[key], atol=1e-4, rtol=1e-4)

    off = tmp_path / "momentum"  # calibration off: the momentum averages of training, which differ
    train.train_model(off, config={**cfg, "progress": {**cfg["progress"], "calibration_batches": 0}},
                      multi_processing=False)
    state = torch.load(off / "checkpoints" / "latest.pt", weights_only=True)
    mean = checkpoints.model_state(state["model"])["feature_norm.running_mean"]
    assert not torch.allclose(mean, saved["feature_norm.running_mean"], atol=1e-3)


def test_augmented_training_is_deterministic_and_changes_the_run(corpus, tmp_path):
    augment = {"gain_db": 6, "eq_db": 6, "noise_snr_db": 10, "mix_db": 6, "freq_mask": 4, "time_mask": 8}
    runs = {}
    for name, aug in (("a", augment), ("b", augment), ("plain", {})):
        cfg = tiny_config(corpus, training={"steps": 4, "augment": aug}, progress={"val_period": 2})
        train.train_model(tmp_path / name, config=cfg, multi_processing=False)
        runs[name] = experiments.read_history(tmp_path / name)
    assert runs["a"] == runs["b"]  # augmentation draws are a function of (seed, step, rank)
    assert runs["a"] != runs["plain"]
    with pytest.raises(experiments.ConfigError, match="training.augment"):
        experiments.validate_config(tiny_config(corpus, training={"augment": {"gain_db": -3}}))


def test_augmentation_draws_on_the_training_device(corpus, tmp_path, monkeypatch):
    # the step's random numbers (noise: rows x mels x frames values) must come from a generator on the
    # training device: drawn on the host and copied, an augmented CUDA step ran about 10x slower
    import torch

    devices = []
    real = train.step_generator

    def spy(*args, **kwargs):
        devices.append(kwargs.get("device", "host default"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "step_generator", spy)
    cfg = tiny_config(corpus, training={"steps": 2, "augment": {"noise_snr_db": 10}}, progress={"val_period": 2})
    train.train_model(tmp_path / "exp", config=cfg, device="cpu", multi_processing=False)
    assert devices and all(d == torch.device("cpu") for d in devices)
