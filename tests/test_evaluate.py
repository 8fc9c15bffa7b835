"""Retrieval metrics against hand-computed values, and the experiment evaluation end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spotifai import evaluate as ev

# one query, five candidates: scores and relevance
SCORES = np.array([[0.9, 0.1, 0.8, 0.3, 0.5]])
RELEVANT = np.array([[True, False, False, True, True]])


def test_ranked_relevance_orders_by_score():
    ranked = ev.ranked_relevance(SCORES, RELEVANT)
    # order: c0 (0.9) c2 (0.8) c4 (0.5) c3 (0.3) c1 (0.1)
    assert ranked.tolist() == [[True, False, True, True, False]]


def test_precision_recall_ap_by_hand():
    ranked = ev.ranked_relevance(SCORES, RELEVANT)
    assert ev.precision_at_k(ranked, 1)[0] == 1.0
    assert ev.precision_at_k(ranked, 2)[0] == 0.5
    assert ev.precision_at_k(ranked, 3)[0] == pytest.approx(2 / 3)
    assert ev.recall_at_k(ranked, np.array([3]), 2)[0] == pytest.approx(1 / 3)
    assert ev.recall_at_k(ranked, np.array([3]), 4)[0] == 1.0
    # AP = (1/1 + 2/3 + 3/4) / 3
    assert ev.average_precision(ranked)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_exclusion_removes_the_candidate():
    exclude = np.array([[True, False, False, False, False]])
    ranked = ev.ranked_relevance(SCORES, RELEVANT, exclude)
    assert ranked.tolist() == [[False, True, True, False, False]]
    assert ev.average_precision(ranked)[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_no_relevant_gives_nan():
    ranked = np.zeros((1, 4), dtype=bool)
    assert math.isnan(ev.recall_at_k(ranked, np.array([0]), 2)[0])
    assert math.isnan(ev.average_precision(ranked)[0])


def test_ties_break_by_corpus_index():
    ranked = ev.ranked_relevance(np.array([[0.5, 0.5, 0.5]]), np.array([[False, True, False]]))
    assert ranked.tolist() == [[False, True, False]]


def test_label_and_set_relevance():
    rel = ev.label_relevance(["x", None], ["x", "y", None, "x"])
    assert rel.tolist() == [[True, False, False, True], [False, False, False, False]]
    rel = ev.set_relevance([{1, 2}, set()], [{2}, {3}, {1, 3}, set()])
    assert rel.tolist() == [[True, False, True, False], [False, False, False, False]]


def test_retrieval_metrics_tiny_example():
    # query 0 = (1, 0) is corpus row 0 (itself, excluded); query 1 = (0, 1) is corpus row 2
    corpus = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    queries = corpus[[0, 2]]
    exclude = np.zeros((2, 4), dtype=bool)
    exclude[0, 0] = exclude[1, 2] = True
    # cosines for q0: 1, 0.8, 0, -1 -> ranking (self excluded): c1, c2, c3
    # cosines for q1: 0, 0.6, 1, 0 -> ranking: c1, c0, c3 (tie c0/c3 -> lower index first)
    playlist = np.array([[False, False, True, True], [False, False, False, False]])  # q1: none relevant
    artist = np.array([[True, True, False, False], [True, False, True, False]])  # includes self: excluded
    m = ev.retrieval_metrics(queries, corpus, {"playlist": playlist, "artist": artist}, exclude=exclude, ks=(1, 2))
    assert m["playlist_queries"] == 1  # q1 has no relevant candidate: left out
    assert m["playlist_precision@1"] == 0.0
    assert m["playlist_precision@2"] == 0.5
    assert m["playlist_recall@2"] == 0.5
    assert m["playlist_map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # artist: q0 -> c1 relevant at rank 1; q1 -> c0 relevant at rank 2
    assert m["artist_queries"] == 2
    assert m["artist_precision@1"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["artist_precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert "artist_map" not in m


def test_evaluation_table_shape():
    results = {
        "methods": {
            "trained-projections": {
                "heldout": {"playlist_precision@5": 0.5, "playlist_queries": 3, "candidates": 9},
                "catalogue": {"playlist_precision@5": 0.4, "playlist_queries": 3, "candidates": 99},
            },
            "logmel-stats": {"heldout": {"playlist_precision@5": 0.2, "playlist_queries": 3, "candidates": 9}},
        }
    }
    df = ev.evaluation_table(results)
    assert list(df.columns[:2]) == ["method", "scope"]
    assert len(df) == 3
    row = df[(df.method == "trained-projections") & (df.scope == "catalogue")].iloc[0]
    assert row["playlist_precision@5"] == 0.4
    json.dumps(results)  # plain data


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_embed_index_recommend_evaluate_chain(tmp_path, capsys):
    from retrieval_corpus import build_corpus, train_tiny_experiment

    from spotifai import database
    from spotifai.cli import main
    from spotifai.embeddings_file import load_embeddings

    corpus = build_corpus(tmp_path / "corpus", n_tracks=16)
    exp = train_tiny_experiment(tmp_path / "exp", corpus.db)
    assert main(["embed", str(exp), "--batch-size", "16", "--workers", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["embedded"] == 16 and summary["failed"] == 2
    assert main(["index", str(exp)]) == 0
    capsys.readouterr()
    tid = corpus.track_ids[0]
    assert main(["recommend", str(exp), str(tid), "-k", "3"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 3 and tid not in [r["track_id"] for r in recs]
    assert main(["recommend", str(exp), "999999"]) == 2  # unknown track: one clear error
    assert "999999" in capsys.readouterr().err

    assert main(["evaluate", str(exp), "--workers", "0"]) == 0
    results = json.loads((exp / ev.EVALUATION_FILE).read_text())
    conn = database.connect(corpus.db)
    split = database.split(conn, seed=0, validation_fraction=0.0, heldout_track_fraction=0.25)
    conn.close()
    embedded = set(load_embeddings(exp).track_ids.tolist())
    assert results["n_heldout"] == len(set(split.heldout_tracks) & embedded) >= 2
    assert results["n_catalogue"] == 16
    assert set(results["methods"]) == {
        "trained-projections", "trained-features", "random-projections", "random-features", "logmel-stats"
    }
    for scopes in results["methods"].values():
        assert set(scopes) == {"heldout", "catalogue"}
        cat = scopes["catalogue"]
        assert cat["candidates"] == 15
        for key in ("playlist_precision@5", "playlist_recall@10", "playlist_map", "artist_precision@5"):
            assert 0.0 <= cat[key] <= 1.0
    df = ev.evaluation_table(results)
    assert len(df) == 10 and "genre_precision@10" in df.columns
    # a second evaluation reuses the cached baselines and gives the same numbers
    again = ev.evaluate_experiment(exp, num_workers=0, progress=False)
    assert again["methods"] == results["methods"]
    # without the random-weights encoder: the same log-mel numbers (from the cache), no random rows
    (exp / "baselines.npz").unlink()
    assert main(["evaluate", str(exp), "--workers", "0", "--no-random-baseline"]) == 0
    lean = json.loads((exp / ev.EVALUATION_FILE).read_text())
    assert set(lean["methods"]) == {"trained-projections", "trained-features", "logmel-stats"}
    assert lean["methods"]["logmel-stats"] == results["methods"]["logmel-stats"]
    with np.load(exp / "baselines.npz") as z:
        assert "random-features" not in z.files  # a lean cache ...
    full = ev.evaluate_experiment(exp, num_workers=0, progress=False)  # ... is not taken for a full evaluation
    assert full["methods"] == results["methods"]


def test_per_query_metrics_mark_undefined_queries():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    corpus = np.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0]])
    album = np.array([[True, False, False], [False, False, False]])  # ranked: c1 (1.0), c0 (0.995), c2
    per_query = ev.per_query_metrics(queries, corpus, {"album": album}, ks=(1,), with_recall_map=("album",))
    assert per_query["album_precision@1"][0] == 0.0 and math.isnan(per_query["album_precision@1"][1])
    assert per_query["album_map"][0] == 0.5
    means = ev.mean_metrics(per_query)
    assert means["album_queries"] == 1 and means["album_map"] == 0.5


def test_bootstrap_interval_mean_difference_and_ratio():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    est, lo, hi = ev.bootstrap_interval(a)
    assert est == pytest.approx(a.mean()) and lo < est < hi
    # the standard error of a mean of 200 uniforms is ~0.02: a 95 % interval is about +-0.04 wide
    assert 0.05 < hi - lo < 0.12
    assert ev.bootstrap_interval(np.full(50, 0.3)) == pytest.approx((0.3, 0.3, 0.3))
    # paired: b = a - 0.1 exactly, so every resample gives the same difference
    d = ev.bootstrap_interval(a, baseline=a - 0.1, statistic="difference")
    assert d == pytest.approx((0.1, 0.1, 0.1))
    r = ev.bootstrap_interval(2 * a, baseline=a, statistic="ratio")
    assert r == pytest.approx((2.0, 2.0, 2.0))
    # NaN (undefined) queries are left out of both sides of a pair
    with_nan = np.concatenate([a, [np.nan]])
    assert ev.bootstrap_interval(with_nan, baseline=np.concatenate([a, [0.0]]), statistic="difference")[0] == 0.0
    # the same seed gives the same interval
    assert ev.bootstrap_interval(a) == ev.bootstrap_interval(a)
    with pytest.raises(ValueError):
        ev.bootstrap_interval(a, statistic="ratio")


def test_read_labels_and_errors(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("path,album,composer\n/music/a.ogg,Game A,Ann\n/music/b.ogg,Game A,\n", encoding="utf-8")
    labels = ev.read_labels(good)
    assert labels[str(Path("/music/a.ogg").resolve())] == {"album": "Game A", "composer": "Ann"}
    assert labels[str(Path("/music/b.ogg").resolve())]["composer"] == ""
    bad = tmp_path / "bad.csv"
    bad.write_text("path,album\n/music/a.ogg,Game A,extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2: 3 cells"):
        ev.read_labels(bad)
    no_path = tmp_path / "nopath.csv"
    no_path.write_text("file,album\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"nopath\.csv: line 1: .*'path' column"):
        ev.read_labels(no_path)


def test_headline_metrics_follow_the_question_not_the_columns():
    # the demo DB has an album column, so album metrics exist without a labels file: the figure must still
    # show the playlist question on held-out tracks (notebook 06 showed demo album P@5 before)
    scores = {"catalogue": {"album_precision@5": 0.3, "composer_precision@5": 0.2, "playlist_precision@10": 0.5},
              "heldout": {"playlist_precision@10": 0.5}}
    demo = {"labels": None, "methods": {"trained-projections": scores}}
    assert ev.headline_metrics(demo) == (list(ev.PLAYLIST_METRICS), "heldout")
    real = {"labels": "data/real/labels.csv", "methods": {"trained-projections": scores}}
    assert ev.headline_metrics(real) == (["album_precision@5", "composer_precision@5"], "catalogue")
    no_composer = {"labels": "x.csv", "methods": {"m": {"catalogue": {"album_precision@5": 0.3}}}}
    assert ev.headline_metrics(no_composer) == (["album_precision@5"], "catalogue")


def test_standardize_columns_is_a_nan_aware_z_score():
    from spotifai.evaluate import standardize_columns

    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, np.nan], [5.0, 5.0, 4.0]])
    z = standardize_columns(x)
    assert z.dtype == np.float32 and np.isnan(z[1, 2])
    assert np.allclose(z[:, 0], [-1.2247449, 0.0, 1.2247449])  # (x - 3) / std([1, 3, 5])
    assert np.allclose(z[:, 1], 0.0)  # a constant column is only centred
    assert np.allclose(z[[0, 2], 2], [-1.0, 1.0])  # NaN rows left out of the mean and std
