"""An experiment written before the config names changed (``training.batch_size`` / ``training.buffer_size``)
loads, embeds and resumes exactly as it did with the code that wrote it.

``fixtures/old_experiment`` was made by the code of commit d7c23a2: the tiny preset trained 2 steps on
``make_corpus(n_playlists=6, tracks_per_playlist=4, seconds=2.0)`` (config.json, history.csv, checkpoints/latest.pt
and best.pt; the step_0000002.pt copy of latest.pt left out). ``fixtures/old_experiment_expected.npz`` holds what
that code gave: the embeddings of the 2-step experiment and the history after resuming it to step 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synth_playlists import make_corpus

from spotifai import checkpoint as checkpoints
from spotifai import embed, train
from spotifai import experiment as experiments

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def old_experiment(tmp_path) -> Path:
    make_corpus(tmp_path / "corpus", n_playlists=6, tracks_per_playlist=4, seconds=2.0)  # config: ../corpus/music.db
    exp = tmp_path / "old_experiment"
    shutil.copytree(FIXTURES / "old_experiment", exp)
    return exp


def test_old_format_fixture_is_old():
    config = json.loads((FIXTURES / "old_experiment" / "config.json").read_text())
    training = config["training"]
    assert training["batch_size"] == 4 and training["buffer_size"] == 4
    assert "time_stride" not in config["model"]  # written before the stem's stride was a key (reads as 2)


def test_old_experiment_loads_embeds_and_resumes_as_before(old_experiment):
    expected = np.load(FIXTURES / "old_experiment_expected.npz")
    config = experiments.load_config(old_experiment)
    assert config.training.steps == 2 and config.training.patches_per_playlist == 4
    assert config.training.playlists_per_step == 4
    model, info = checkpoints.load_encoder(old_experiment)
    assert info["step"] == 2 and info["model"] == config.model and info["audio"] == config.data.audio

    embed.embed_experiment(old_experiment, batch_size=16, num_workers=0, progress=False)
    got = np.load(old_experiment / "embeddings.npz")
    np.testing.assert_array_equal(got["track_ids"], expected["track_ids"])
    np.testing.assert_allclose(got["features"], expected["features"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["projections"], expected["projections"], rtol=1e-4, atol=1e-5)

    summary = train.train_model(old_experiment, config=config.with_training(steps=3), multi_processing=False)
    assert summary["resumed_from"] == 2 and summary["steps"] == 3
    rows = experiments.read_history(old_experiment)
    assert [(s, sp) for s, sp, _ in rows] == list(zip(expected["resumed_steps"].tolist(),
                                                      expected["resumed_splits"].tolist(), strict=True))
    np.testing.assert_allclose([v for _, _, v in rows], expected["resumed_history"], rtol=1e-4)
