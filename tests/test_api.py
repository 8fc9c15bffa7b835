"""The Python API and the cold-start commands on a trained tiny experiment (real demo audio, real training,
real ChromaDB index, the real `spotifai` command in a subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import spotifai
from spotifai import database, embeddings_file

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spotifai.cli", *args], capture_output=True, text=True, timeout=300)


def test_similar_for_a_file_not_in_the_db(demo_experiment):
    model = spotifai.load(demo_experiment.experiment)
    new = demo_experiment.new_files[0]
    hits = model.similar(new, k=5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(h["title"] and h["artist"] and h["album"] for h in hits)
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    conn = database.connect(demo_experiment.database, readonly=True)
    try:
        paths = {r["audio_path"] for r in database.tracks(conn, with_audio=True)}
    finally:
        conn.close()
    assert str(new) not in paths and new.name not in {p.rsplit("/", 1)[-1] for p in paths}

    # `spotifai similar` prints the same ranking (JSON and text)
    out = _cli("similar", str(demo_experiment.experiment), str(new), "-k", "5", "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)["answers"][0]
    assert [h["track_id"] for h in answer["results"]] == [h["track_id"] for h in hits]
    text = _cli("similar", str(demo_experiment.experiment), str(new), "-k", "5")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if line.strip()[:2].rstrip(".").isdigit()]
    assert [int(line.rsplit("(track ", 1)[1].rstrip(")")) for line in lines] == [h["track_id"] for h in hits]


def test_waveform_vector_and_track_id_queries(demo_experiment):
    model = spotifai.load(demo_experiment.experiment)
    new = demo_experiment.new_files[0]
    from_file = model.embed_file(new)
    samples, sr = sf.read(new, dtype="float32", always_2d=True)  # (samples, channels)
    from_wave = model.embed_waveform(samples, sr)
    assert float(from_file @ from_wave) >= 0.999
    by_vector = model.similar(from_file, k=5)
    assert [h["track_id"] for h in by_vector] == [h["track_id"] for h in model.similar(new, k=5)]
    assert [h["track_id"] for h in model.similar(samples, k=5, sample_rate=sr)][:3] == [
        h["track_id"] for h in by_vector][:3]
    first = by_vector[0]["track_id"]
    neighbours = model.similar(first, k=4)
    assert len(neighbours) == 4 and first not in [h["track_id"] for h in neighbours]
    assert model.similar(by_vector[0]["track_id"], k=3, space="features")
    with pytest.raises(ValueError, match="not in the index"):
        model.similar(10**9, k=3)
    with pytest.raises(ValueError, match="shape"):
        model.similar(np.ones(3), k=3)


def test_bad_files_are_reported_not_fatal(demo_experiment, tmp_path):
    model = spotifai.load(demo_experiment.experiment)
    good = demo_experiment.new_files[0]
    bad = tmp_path / "not audio \x1b[2J.mp3"
    bad.write_bytes(b"this is not an mp3 file" * 100)
    missing = tmp_path / "gone.wav"
    out = model.embed_files([good, bad, missing], progress=False)
    assert out.paths == [str(good)] and out.projections.shape[0] == 1
    assert [f["path"] for f in out.failures] == [str(bad), str(missing)]
    with pytest.raises(spotifai.EmbeddingError, match="gone.wav"):
        model.embed_file(missing)
    run = _cli("similar", str(demo_experiment.experiment), str(good), str(bad), "-k", "3")
    assert run.returncode == 1
    assert "similar to" in run.stdout and "\x1b" not in run.stdout + run.stderr
    assert "\\x1b[2J.mp3" in run.stderr  # the bad file named, escaped


def test_export_gives_the_same_vectors(demo_experiment, tmp_path):
    out = tmp_path / "model.pt"
    run = _cli("export", str(demo_experiment.experiment), str(out))
    assert run.returncode == 0, run.stderr
    state = torch.load(out, weights_only=True)
    assert state["format"] == "spotifai-model"
    assert not {"optimizer", "scheduler", "rng", "history", "config"} & set(state)
    assert set(state["audio"]) == {"n_mels", "patch_frames", "max_time_padding"}
    moved = tmp_path / "elsewhere" / "model.pt"  # the experiment is not needed to embed
    moved.parent.mkdir()
    shutil.copy(out, moved)
    folder = spotifai.load(demo_experiment.experiment)
    alone = spotifai.load(moved)
    assert alone.experiment is None and alone.checkpoint_id == folder.checkpoint_id
    for path in demo_experiment.new_files:
        np.testing.assert_allclose(alone.embed_file(path), folder.embed_file(path), atol=1e-6)
        np.testing.assert_allclose(alone.embed_file(path, space="features"),
                                   folder.embed_file(path, space="features"), atol=1e-6)
    with pytest.raises(ValueError, match="needs the experiment"):
        alone.similar(demo_experiment.new_files[0], k=3)
    with_index = spotifai.load(moved, experiment=demo_experiment.experiment)
    new = demo_experiment.new_files[0]
    assert [h["track_id"] for h in with_index.similar(new, k=5)] == [h["track_id"] for h in folder.similar(new, k=5)]
    run = _cli("similar", str(demo_experiment.experiment), str(new), "-k", "5", "--json", "--model", str(moved))
    assert run.returncode == 0, run.stderr
    not_a_model = tmp_path / "x.pt"
    not_a_model.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.pt: not a spotifai model"):
        spotifai.load(not_a_model)


def test_file_vector_equals_the_stored_vector_once_ingested(demo_experiment, tmp_path):
    """Last of the module: ingests the new files into a copy of the experiment's DB and embeds them."""
    root = tmp_path / "copy"
    shutil.copytree(demo_experiment.root / "demo", root / "demo", ignore=shutil.ignore_patterns("audio"))
    shutil.copytree(demo_experiment.experiment, root / "experiments" / "tiny")
    experiment = root / "experiments" / "tiny"
    db = root / "demo" / "music.db"
    model = spotifai.load(demo_experiment.experiment)
    new = demo_experiment.new_files[0]
    run = _cli("ingest", "--database", str(db), "--folder", str(new.parent))
    assert run.returncode == 0, run.stdout + run.stderr
    run = _cli("embed", str(experiment), "--workers", "0")
    assert run.returncode == 0, run.stderr
    stored = embeddings_file.load_embeddings(experiment)
    conn = database.connect(db, readonly=True)
    try:
        tid = next(r["id"] for r in database.tracks(conn, with_audio=True) if r["audio_path"] == str(new))
    finally:
        conn.close()
    row = int(np.flatnonzero(stored.track_ids == tid)[0])
    assert float(stored.projections[row] @ model.embed_file(new)) >= 0.999
    assert float(stored.features[row] @ model.embed_file(new, space="features")) >= 0.999


def test_explore_notebook_runs_with_a_held_out_file(demo_experiment, tmp_path):
    import nbformat
    import papermill

    from spotifai import chain

    out = tmp_path / "08.ipynb"
    papermill.execute_notebook(
        str(chain.NOTEBOOK_DIR / "08_explore.ipynb"), str(out), cwd=str(chain.ROOT), progress_bar=False,
        kernel_name="python3",
        parameters={"experiment": str(demo_experiment.experiment), "held_out_dir": str(tmp_path / "held_out")},
    )
    executed = nbformat.read(out, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    players = [o for o in outputs if "text/html" in o.get("data", {}) and "<audio" in o["data"]["text/html"]]
    assert len(players) == 2 + 5  # the searched track, the new file, its 5 neighbours
    assert "neither it nor its artist is in the experiment's DB" in out.read_text()
