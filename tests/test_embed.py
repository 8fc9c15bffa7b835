"""Full-song embeddings: the mean-of-normalized-patches and maximum definitions, determinism, batching, incremental
runs, checkpoint changes, unreadable tracks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from retrieval_corpus import TINY_AUDIO, TINY_MODEL, build_corpus, train_tiny_experiment

from spotifai import baselines, database, embed, embeddings_file
from spotifai.audio import AudioConfig, track_patches

AUDIO = AudioConfig.from_dict(TINY_AUDIO)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("embed_corpus"), n_tracks=8)


@pytest.fixture(scope="module")
def items(corpus):
    conn = database.connect(corpus.db)
    try:
        return embed.audio_items(conn, corpus.track_ids)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def encoder():
    return baselines.random_encoder(TINY_MODEL, seed=3)


def test_select_patches():
    assert embed.select_patches(3, 4).tolist() == [0, 1, 2]
    assert embed.select_patches(10, 4).tolist() == [0, 3, 6, 9]
    assert embed.select_patches(10, None).tolist() == list(range(10))


def test_vector_is_mean_of_normalized_patch_vectors(encoder, items):
    res = embed.embed_tracks(encoder, items[:3], AUDIO, batch_size=5, max_patches_per_track=None, progress=False)
    assert res.track_ids.tolist() == [t for t, _ in items[:3]]
    for row, (_, path) in enumerate(items[:3]):
        patches = track_patches(path, AUDIO)
        assert patches.shape[0] > 1  # several patches: the test means something
        with torch.inference_mode():
            f, p = encoder.eval()(patches)
        want_f = F.normalize(F.normalize(f, dim=-1).mean(0), dim=0).numpy()
        want_p = F.normalize(F.normalize(p, dim=-1).mean(0), dim=0).numpy()
        np.testing.assert_allclose(res.features[row], want_f, atol=1e-5)
        np.testing.assert_allclose(res.projections[row], want_p, atol=1e-5)
    assert res.features.shape[1] == TINY_MODEL["model_dim"]
    assert res.projections.shape[1] == TINY_MODEL["projection_dim"]
    np.testing.assert_allclose(np.linalg.norm(res.projections, axis=1), 1.0, atol=1e-5)


def test_max_pooling_is_the_elementwise_maximum_of_the_patch_vectors(items):
    encoder = baselines.random_encoder({**TINY_MODEL, "pooling": "max"}, seed=3)
    # batch_size 1: a track's maximum is merged across forward passes
    res = embed.embed_tracks(encoder, items[:3], AUDIO, batch_size=1, max_patches_per_track=None, progress=False)
    mean = embed.embed_tracks(encoder, items[:3], AUDIO, batch_size=3, max_patches_per_track=None, progress=False,
                              pooling="mean")
    for row, (_, path) in enumerate(items[:3]):
        patches = track_patches(path, AUDIO)
        assert patches.shape[0] > 1
        with torch.inference_mode():
            f, p = encoder.eval()(patches)
        np.testing.assert_allclose(res.features[row], F.normalize(f.amax(0), dim=0).numpy(), atol=1e-5)
        np.testing.assert_allclose(res.projections[row], F.normalize(p.amax(0), dim=0).numpy(), atol=1e-5)
        np.testing.assert_allclose(mean.projections[row], F.normalize(F.normalize(p, dim=-1).mean(0), dim=0).numpy(),
                                   atol=1e-5)
    assert not np.allclose(res.projections, mean.projections, atol=1e-3)
    with pytest.raises(ValueError, match="pooling"):
        embed.embed_tracks(encoder, items[:1], AUDIO, progress=False, pooling="median")


def test_deterministic_and_independent_of_batching(encoder, items):
    a = embed.embed_tracks(encoder, items, AUDIO, batch_size=7, progress=False)
    b = embed.embed_tracks(encoder, items, AUDIO, batch_size=7, progress=False)
    c = embed.embed_tracks(encoder, items, AUDIO, batch_size=64, progress=False)
    d = embed.embed_tracks(encoder, items, AUDIO, batch_size=1, progress=False)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.projections, b.projections)
    for other in (c, d):
        assert other.track_ids.tolist() == a.track_ids.tolist()
        np.testing.assert_allclose(other.features, a.features, atol=1e-5)
        np.testing.assert_allclose(other.projections, a.projections, atol=1e-5)


def test_max_patches_uses_evenly_spaced_patches(encoder, items):
    tid, path = items[0]
    n = track_patches(path, AUDIO).shape[0]
    assert n >= 3
    res = embed.embed_tracks(encoder, [(tid, path)], AUDIO, max_patches_per_track=2, progress=False)
    patches = track_patches(path, AUDIO)[[0, n - 1]]
    with torch.inference_mode():
        p = encoder(patches, output="projections")
    want = F.normalize(F.normalize(p, dim=-1).mean(0), dim=0).numpy()
    np.testing.assert_allclose(res.projections[0], want, atol=1e-5)


def test_unreadable_tracks_are_skipped_and_counted(encoder, items, corpus):
    conn = database.connect(corpus.db)
    bad = [(corpus.corrupt_id, database.track(conn, corpus.corrupt_id)["audio_path"]),
           (corpus.missing_id, database.track(conn, corpus.missing_id)["audio_path"])]
    conn.close()
    mixed = [items[0], bad[0], items[1], bad[1]]
    res = embed.embed_tracks(encoder, mixed, AUDIO, batch_size=4, progress=False)
    assert res.track_ids.tolist() == [items[0][0], items[1][0]]
    assert sorted(f["track_id"] for f in res.failures) == sorted([corpus.corrupt_id, corpus.missing_id])
    assert all(f["reason"] for f in res.failures)
    good = embed.embed_tracks(encoder, items[:2], AUDIO, batch_size=4, progress=False)
    np.testing.assert_allclose(res.projections, good.projections, atol=1e-5)


@pytest.mark.slow
def test_worker_processes_give_the_same_vectors(encoder, items):
    a = embed.embed_tracks(encoder, items, AUDIO, batch_size=16, num_workers=0, progress=False)
    b = embed.embed_tracks(encoder, items, AUDIO, batch_size=16, num_workers=2, progress=False)
    assert a.track_ids.tolist() == b.track_ids.tolist()
    np.testing.assert_allclose(a.projections, b.projections, atol=1e-5)


def test_logmel_stats_vectors(corpus, items):
    ids = [t for t, _ in items[:3]] + [corpus.corrupt_id]
    v = baselines.logmel_stats_vectors(corpus.db, ids, AUDIO, progress=False)
    assert v.shape == (4, 2 * AUDIO.n_mels)
    assert np.isfinite(v[:3]).all() and np.isnan(v[3]).all()
    assert (v[:3, AUDIO.n_mels :] >= 0).all()  # standard deviations


# ------------------------------------------------------------------------------------------- experiments


@pytest.fixture()
def experiment(tmp_path, corpus):
    return train_tiny_experiment(tmp_path / "exp", corpus.db)


def test_embed_experiment_incremental(experiment, corpus):
    first = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False)
    assert first["embedded"] == len(corpus.track_ids) and first["skipped"] == 0
    assert first["failed"] == 2 and {f["track_id"] for f in first["failures"]} == {corpus.corrupt_id, corpus.missing_id}
    emb = embeddings_file.load_embeddings(experiment)
    assert emb.track_ids.tolist() == sorted(corpus.track_ids)
    assert emb.checkpoint_id == first["checkpoint_id"]

    again = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False)
    assert again["embedded"] == 0 and again["skipped"] == len(corpus.track_ids) and again["failed"] == 2
    same = embeddings_file.load_embeddings(experiment)
    np.testing.assert_array_equal(same.projections, emb.projections)

    # drop two rows: only those are embedded again, and they come out identical
    partial = emb.subset(emb.track_ids[2:].tolist())
    embeddings_file.save_embeddings(experiment, partial)
    third = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False)
    assert third["embedded"] == 2 and third["skipped"] == len(corpus.track_ids) - 2
    np.testing.assert_allclose(embeddings_file.load_embeddings(experiment).projections, emb.projections, atol=1e-5)

    forced = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False, force=True)
    assert forced["embedded"] == len(corpus.track_ids)


def test_checkpoint_change_reembeds_everything(experiment, corpus):
    first = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False)
    before = embeddings_file.load_embeddings(experiment)
    train_tiny_experiment(experiment, corpus.db, steps=2)  # one more step: a new checkpoint
    second = embed.embed_experiment(experiment, batch_size=16, num_workers=0, progress=False)
    assert second["checkpoint_id"] != first["checkpoint_id"]
    assert second["embedded"] == len(corpus.track_ids) and second["skipped"] == 0
    after = embeddings_file.load_embeddings(experiment)
    assert after.checkpoint_id == second["checkpoint_id"]
    assert not np.allclose(after.projections, before.projections)


def test_missing_embeddings_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="embeddings.npz"):
        embeddings_file.load_embeddings(tmp_path)


def test_cached_log_mel_gives_the_decoded_vectors(encoder, items, tmp_path):
    """Embedding from the training patch cache (float16 log-mel) equals decoding the files, to float16 rounding;
    the corrupt and missing files fail the same way."""
    decoded = embed.embed_tracks(encoder, items, AUDIO, batch_size=8, progress=False)
    cached = embed.embed_tracks(encoder, items, AUDIO, batch_size=8, progress=False, cache_dir=tmp_path / "c")
    assert cached.track_ids.tolist() == decoded.track_ids.tolist()
    assert [f["track_id"] for f in cached.failures] == [f["track_id"] for f in decoded.failures]
    assert any(tmp_path.joinpath("c").glob("*.npy"))  # the misses were stored
    cosine = (cached.projections * decoded.projections).sum(axis=1)
    assert cosine.min() > 0.999
    again = embed.embed_tracks(encoder, items, AUDIO, batch_size=8, progress=False, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.projections, cached.projections)


def test_log_mel_statistics_from_the_cache_equal_decoding(corpus, tmp_path):
    ids = corpus.track_ids
    decoded = baselines.logmel_stats_vectors(corpus.db, ids, AUDIO, progress=False)
    cached = baselines.logmel_stats_vectors(corpus.db, ids, AUDIO, progress=False, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(np.isnan(cached), np.isnan(decoded))
    ok = ~np.isnan(decoded)
    np.testing.assert_allclose(cached[ok], decoded[ok], atol=2e-3)  # float16 log-mel in [-1, 1]
