"""The fast data path and training.compile (issue 13), checked on CPU: float16 batches in shared memory, the
deferred loss reads of the CUDA path (forced on CPU with a fused AdamW), compile with inductor, checkpoints with
``_orig_mod.`` keys, and the two benchmarks' CPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synth_playlists import make_corpus

from spotifai import checkpoint as checkpoints
from spotifai import experiment as experiments
from spotifai import sampling, train
from spotifai.model import AudioEncoder, EncoderConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("gpu_path_corpus"), n_playlists=8, tracks_per_playlist=5, seconds=2.5)


def tiny(db, **sections) -> dict:
    """The tiny preset with the test corpus's shared cache, no loader workers and the given section updates."""
    cfg = experiments.preset_config("tiny", db)
    cfg["data"]["cache_dir"] = str(Path(db).parent / "cache")
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def _history(experiment: Path) -> list[tuple[int, str, float]]:
    return experiments.read_history(experiment)


# ------------------------------------------------------------------------------------------------- config


def test_compile_key_defaults_legacy_and_change_on_an_existing_experiment(corpus, tmp_path):
    assert experiments.default_config(corpus)["training"]["compile"] is None  # auto: on for CUDA, off on CPU
    old = tiny(corpus)
    del old["training"]["compile"]  # a config written before the key existed
    assert experiments.validate_config(old)["training"]["compile"] is False
    with pytest.raises(experiments.ConfigError, match="training.compile"):
        experiments.validate_config(tiny(corpus, training={"compile": "yes"}))
    exp = tmp_path / "exp"
    train.create_experiment(exp, tiny(corpus))
    written = json.loads((exp / "config.json").read_text())
    del written["training"]["compile"]
    (exp / "config.json").write_text(json.dumps(written))
    assert experiments.load_config(exp).training.compile is False
    cfg = train.create_experiment(exp, tiny(corpus, training={"compile": True}))  # speed only: no ConfigError
    assert cfg.training.compile is True and experiments.load_config(exp).training.compile is True


# --------------------------------------------------------------------------------------------- batches


def test_float16_batches_are_the_float32_batches_exactly(corpus, tmp_path):
    cfg = experiments.as_config(tiny(corpus))
    exp = tmp_path / "exp"
    plan = train.check_data(exp, train.create_experiment(exp, cfg))
    maker16 = train.batch_maker(exp, cfg, plan, "train")
    assert maker16.dtype == torch.float16  # the cache is on
    maker32 = sampling.BatchMaker(plan.train, plan.tracks, maker16.config, buffer_size=maker16.P,
                                  batch_size=maker16.K, seed=maker16.seed, cache_dir=maker16.cache_dir,
                                  same_track_views=maker16.same_track_views)
    for step in (1, 2, 7):
        a, b = maker16.batch(step), maker32.batch(step)
        assert a["mel_a"].dtype == torch.float16 and b["mel_a"].dtype == torch.float32
        for key in ("mel_a", "mel_b"):
            assert torch.equal(a[key].float(), b[key])
        for key in ("groups", "tracks_a", "tracks_b", "playlists"):
            assert torch.equal(a[key], b[key])
    uncached = experiments.as_config(tiny(corpus, data={"patch_cache": False}))
    assert train.batch_maker(exp, uncached, plan, "train").dtype == torch.float32


def test_worker_batches_come_in_shared_memory_and_equal_in_process_ones(corpus, tmp_path):
    cfg = experiments.as_config(tiny(corpus))
    exp = tmp_path / "exp"
    plan = train.check_data(exp, train.create_experiment(exp, cfg))
    maker = train.batch_maker(exp, cfg, plan, "train")
    from_workers = list(sampling.make_loader(maker, 3, 7, num_workers=2))
    assert [b["step"] for b in from_workers] == [3, 4, 5, 6]
    for b in from_workers:
        assert b["mel_a"].is_shared() and b["mel_a"].dtype == torch.float16
        here = maker.batch(b["step"])
        assert torch.equal(b["mel_a"], here["mel_a"]) and torch.equal(b["mel_b"], here["mel_b"])


# ------------------------------------------------------------------------------- deferred loss reads


def _force_deferred(monkeypatch):
    """The CUDA path's loss handling on CPU: losses read in batches, non-finite steps skipped by a fused AdamW."""
    monkeypatch.setattr(train, "_defer_loss_reads", lambda device, grad_scaler: not grad_scaler)


def test_deferred_loss_reads_give_the_same_history(corpus, tmp_path, monkeypatch):
    cfg = tiny(corpus, training={"steps": 8}, progress={"val_period": 4, "loss_window": 3, "save_period": 4})
    train.train_model(tmp_path / "now", config=cfg, multi_processing=False)
    _force_deferred(monkeypatch)
    summary = train.train_model(tmp_path / "deferred", config=cfg, multi_processing=False)
    assert summary["steps"] == 8
    now, deferred = _history(tmp_path / "now"), _history(tmp_path / "deferred")
    assert [(s, sp) for s, sp, _ in now] == [(s, sp) for s, sp, _ in deferred]
    for (_, _, a), (_, _, b) in zip(now, deferred, strict=True):  # fused vs for-each AdamW: rounding only
        assert b == pytest.approx(a, rel=1e-3)
    # resume in the deferred mode: the checkpoint's loss window was complete when written
    summary = train.train_model(tmp_path / "deferred", multi_processing=False, config={
        **cfg, "training": {**cfg["training"], "steps": 10}})
    assert summary["resumed_from"] == 8 and summary["steps"] == 10


def test_deferred_nonfinite_step_is_skipped_on_the_device(corpus, tmp_path, monkeypatch):
    _force_deferred(monkeypatch)
    cfg = experiments.as_config(tiny(corpus))
    exp = tmp_path / "exp"
    plan = train.check_data(exp, train.create_experiment(exp, cfg))
    runner = train._Runner(exp, cfg, plan, "cpu", True, False, 0, 1)
    assert runner.deferred
    batch = runner.maker("train").batch(1)
    before = [p.detach().clone() for p in runner.raw_model.parameters()]
    bad = {**batch, "mel_a": torch.full_like(batch["mel_a"], float("nan"))}
    runner.train_step(bad)
    assert all(torch.equal(a, p) for a, p in zip(before, runner.raw_model.parameters(), strict=True))
    assert runner.pending and runner.nonfinite == 0  # not read yet
    runner.flush()
    assert runner.nonfinite == 1 and runner.window == [] and not runner.pending
    runner.train_step(batch)
    runner.flush()
    assert runner.nonfinite == 0 and len(runner.window) == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, runner.raw_model.parameters(), strict=True))


def test_deferred_nonfinite_losses_still_stop_training(corpus, tmp_path, monkeypatch):
    _force_deferred(monkeypatch)
    calls = {"n": 0}

    def sometimes_nan(z_a, z_b, groups, track_weight, lambd):
        calls["n"] += 1
        value = (z_a.sum() + z_b.sum()) * 0.0 + 1.0
        return value * float("nan") if calls["n"] > 2 else value

    monkeypatch.setattr(train, "playlist_and_track_loss", sometimes_nan)
    cfg = tiny(corpus, training={"steps": 20, "max_nonfinite_steps": 3}, progress={"val_period": 0})
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row at step 5"):
        train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)


# --------------------------------------------------------------------------------------------- compile


@pytest.mark.slow
def test_compiled_training_on_cpu_compiles_once_and_loads_eagerly(corpus, tmp_path, monkeypatch):
    """Inductor on CPU (needs a C++ compiler; gcc here): 3 steps with a validation in the middle and at the end,
    one graph, no recompilation; the checkpoint loads into an eager encoder."""
    from torch._dynamo.utils import counters

    monkeypatch.delenv("SPOTIFAI_COMPILE_BACKEND", raising=False)
    torch._dynamo.reset()
    counters.clear()
    cfg = tiny(corpus, training={"steps": 3, "compile": True},
               progress={"val_period": 2, "save_period": 2, "loss_window": 1})
    summary = train.train_model(tmp_path / "compiled", config=cfg, multi_processing=False)
    assert summary["steps"] == 3
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert sum(counters["recompiles"].values()) == 0, dict(counters["recompiles"])
    eager_cfg = {**cfg, "training": {**cfg["training"], "compile": False}}
    train.train_model(tmp_path / "eager", config=eager_cfg, multi_processing=False)
    compiled, eager = _history(tmp_path / "compiled"), _history(tmp_path / "eager")
    assert [(s, sp) for s, sp, _ in compiled] == [(s, sp) for s, sp, _ in eager]
    for (_, _, a), (_, _, b) in zip(compiled, eager, strict=True):  # generated kernels round differently
        assert a == pytest.approx(b, rel=1e-2)
    model, info = checkpoints.load_encoder(tmp_path / "compiled")
    assert info["step"] == 3 and not any("_orig_mod" in k for k in model.state_dict())


def test_checkpoints_with_compiled_module_keys_load(corpus, tmp_path):
    exp = tmp_path / "exp"
    cfg = tiny(corpus, training={"steps": 2}, progress={"val_period": 0})
    train.train_model(exp, config=cfg, multi_processing=False)
    latest = exp / "checkpoints" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    wrapped = torch.compile(AudioEncoder(EncoderConfig.from_dict(state["config"]["model"])))
    assert all(k.startswith("_orig_mod.") for k in wrapped.state_dict())  # what a compiled module saves
    state["model"] = {f"_orig_mod.{k}": v for k, v in state["model"].items()}
    torch.save(state, latest)
    model, info = checkpoints.load_encoder(exp)
    assert info["step"] == 2
    summary = train.train_model(exp, multi_processing=False, config={**cfg, "training": {**cfg["training"],
                                                                                          "steps": 3}})
    assert summary["resumed_from"] == 2 and summary["steps"] == 3


# ------------------------------------------------------------------------------------------- benchmarks


def _bench(args: list[str], tmp_path: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    result = subprocess.run([sys.executable, *args, "--cache-dir", str(tmp_path / "cache")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_gpu_train_bench_runs_on_cpu(corpus, tmp_path):
    out = _bench(["bench/gpu_train.py", "--database", str(corpus), "--steps", "2", "--warmup", "1",
                  "--loop-steps", "3", "--workers", "1", "--loader-steps", "3", "--compile-backend", "aot_eager",
                  "--out", str(tmp_path / "gpu_train.json")], tmp_path)
    assert out["bench"] == "gpu_train" and out["device"] == "cpu" and out["preset"] == "tiny"
    assert json.loads((tmp_path / "gpu_train.json").read_text()) == out
    sections = [*out["loader"], *out["model_alone"].values(), *out["loop"].values()]
    assert all("error" not in s and "skipped" not in s for s in sections), sections
    assert out["model_alone"]["compiled"]["compiled"] and not out["model_alone"]["eager"]["compiled"]
    assert all(s["patches_per_s"] > 0 for s in sections)
    assert set(out["ratios"]) >= {"loop_over_model_eager", "loop_over_model_compiled"}
    # the model alone runs the batch the loader makes, and the JSON says its size (not just the configured one)
    assert {s["patches_per_step"] for s in (*out["loader"], *out["model_alone"].values())} == {
        out["config"]["patches_per_step"]}
    assert out["config"]["patches_per_step"] <= out["config"]["configured_patches_per_step"]


@pytest.mark.slow
def test_data_pipeline_bench_runs(corpus, tmp_path):
    out = _bench(["bench/data_pipeline.py", "--database", str(corpus), "--preset", "tiny", "--workers", "0,1",
                  "--steps", "4"], tmp_path)
    assert [r["workers"] for r in out["runs"]] == [0, 1]
    worker_run = out["runs"][1]
    assert worker_run["batch_dtype"] == "float16" and worker_run["patches_per_worker_cpu_s"] > 0


# ------------------------------------------------------------------------------------ sharded embedding


@pytest.mark.slow
def test_torchrun_two_processes_embed_like_one_and_shards_resume(corpus, tmp_path):
    import shutil

    import numpy as np

    from spotifai import embed, embed_shards, embeddings_file

    one = tmp_path / "one"
    train.train_model(one, config=tiny(corpus, training={"steps": 2}, progress={"val_period": 0}),
                      multi_processing=False)
    two, three = tmp_path / "two", tmp_path / "three"
    shutil.copytree(one, two)
    shutil.copytree(one, three)
    embed.embed_experiment(one, progress=False, num_workers=0)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "spotifai.embed", str(two), "--workers", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    a, b = embeddings_file.load_embeddings(one), embeddings_file.load_embeddings(two)
    assert summary["embedded"] == summary["total"] == len(a) > 0 and summary["failed"] == 0
    assert np.array_equal(a.track_ids, b.track_ids) and a.checkpoint_id == b.checkpoint_id
    for space in ("features", "projections"):
        assert (a.vectors(space) * b.vectors(space)).sum(axis=1).min() >= 0.9999
    assert not list(two.glob(embed_shards.PART_GLOB))
    # an interrupted sharded run leaves shard files: the next run (any number of processes) keeps their rows
    half = len(a) // 2
    embeddings_file.write_embeddings_file(embed_shards.part_path(three, 1), embeddings_file.Embeddings(
        a.track_ids[:half], a.features[:half], a.projections[:half], a.checkpoint_id, a.step))
    again = embed.embed_experiment(three, progress=False, num_workers=0)
    assert again["embedded"] == len(a) - half and again["total"] == len(a)
    c = embeddings_file.load_embeddings(three)
    assert np.array_equal(c.track_ids, a.track_ids) and not list(three.glob(embed_shards.PART_GLOB))
