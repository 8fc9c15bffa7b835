"""The method-study script's paired comparisons (scripts/real_music_sweep.py --compare / --pooled) agree with
what evaluate writes for the same experiments, on a tiny corpus with a labels file."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from retrieval_corpus import build_corpus, train_tiny_experiment

from spotifai import database, embed, embeddings_file, evaluate

ROOT = Path(__file__).resolve().parents[1]


def _sweep():
    spec = importlib.util.spec_from_file_location("real_music_sweep", ROOT / "scripts" / "real_music_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    corpus = build_corpus(root / "corpus", n_tracks=24)
    conn = database.connect(corpus.db)
    try:
        rows = database.tracks(conn, corpus.track_ids)
        with (corpus.db.parent / evaluate.LABELS_FILE).open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["path", "album", "composer"])
            for r in rows:
                out.writerow([r["audio_path"], r["album"], r["genre"]])
    finally:
        conn.close()
    exps = []
    for name in ("a", "b"):
        exp = train_tiny_experiment(root / name, corpus.db, steps=1)
        embed.embed_experiment(exp, batch_size=16, num_workers=0, progress=False)
        if name == "b":  # another space on the same split: random unit vectors (the arithmetic is what is tested)
            emb = embeddings_file.load_embeddings(exp)
            rng = np.random.default_rng(5)
            vectors = {k: evaluate.normalize_rows(rng.standard_normal(getattr(emb, k).shape)).astype(np.float32)
                       for k in ("features", "projections")}
            embeddings_file.save_embeddings(exp, embeddings_file.Embeddings(emb.track_ids, vectors["features"], vectors["projections"],
                                                        emb.checkpoint_id, emb.step))
        evaluate.evaluate_experiment(exp, progress=False, random_baseline=False, num_workers=0)
        exps.append(exp)
    assert _catalogue(exps[0], "trained-projections") != _catalogue(exps[1], "trained-projections")
    return exps


def _catalogue(exp: Path, method: str) -> float:
    results = json.loads((exp / "evaluation.json").read_text())
    return results["methods"][method]["catalogue"]["album_precision@5"]


def test_compare_matches_evaluate_and_is_zero_against_itself(experiments):
    sweep = _sweep()
    a, b = experiments
    same = sweep.compare(a, a)
    assert same["difference"] == [0.0, 0.0, 0.0] and same["ratio"][0] == pytest.approx(1.0)
    both = sweep.compare(a, b)
    assert both["n_queries"] == json.loads((a / "evaluation.json").read_text())["n_heldout"] > 1
    assert both["a_mean"] == pytest.approx(_catalogue(a, "trained-projections"), abs=1e-4)
    assert both["b_mean"] == pytest.approx(_catalogue(b, "trained-projections"), abs=1e-4)
    lo, hi = both["difference"][1:]
    assert lo <= both["a_mean"] - both["b_mean"] <= hi
    features = sweep.compare(a, b, space="features")
    assert features["a_mean"] == pytest.approx(_catalogue(a, "trained-features"), abs=1e-4)


def test_compare_pooled_over_pairs_concatenates_their_queries(experiments):
    sweep = _sweep()
    a, b = experiments
    one = sweep.compare(a, b)
    two = sweep.compare_pooled([(a, b), (b, a)])
    assert two["per_pair_queries"] == [one["n_queries"]] * 2 and two["n_queries"] == 2 * one["n_queries"]
    # (a, b) then (b, a): the pooled means are equal and the difference interval is centred on 0
    assert two["a_mean"] == two["b_mean"] == pytest.approx((one["a_mean"] + one["b_mean"]) / 2, abs=1e-4)
    assert two["difference"][0] == 0.0 and two["difference"][1] < 0 < two["difference"][2]


def test_pooled_concatenates_each_experiments_queries_against_its_own_statistics(experiments):
    sweep = _sweep()
    a, b = experiments
    pooled = sweep.pooled_against_logmel([a, b])
    n = json.loads((a / "evaluation.json").read_text())["n_heldout"]
    assert pooled["per_experiment_queries"] == [n, n]
    assert pooled["n_queries"] == 2 * n
    want = np.mean([_catalogue(a, "trained-projections"), _catalogue(b, "trained-projections")])
    assert pooled["a_mean"] == pytest.approx(want, abs=1e-4)
    assert pooled["b_mean"] == pytest.approx(_catalogue(a, "logmel-stats"), abs=1e-4)
    with pytest.raises(SystemExit, match="baselines.npz"):
        (a / "baselines.npz").rename(a / "moved.npz")
        try:
            sweep.pooled_against_logmel([a])
        finally:
            (a / "moved.npz").rename(a / "baselines.npz")
