"""Playlist-grouped batches: shapes, groups, distinct tracks, splits, ranks, workers, patch cache, bad audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synth_playlists import make_corpus

from spotifai import audio, cache_fill, database, sampling

AUDIO = audio.AudioConfig(n_mels=32, patch_frames=64)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling_corpus")
    return make_corpus(root, n_playlists=8, tracks_per_playlist=6, seconds=2.5)


def _plan(db, **kw):
    args = {"seed": 0, "validation_fraction": 0.25, "heldout_track_fraction": 0.2} | kw
    return sampling.build_plan(db, AUDIO, **args)


def _maker(plan, split="train", **kw):
    args = {"buffer_size": 3, "batch_size": 4, "seed": 1, "split": split}
    args.update(kw)
    return sampling.BatchMaker(plan.train if split == "train" else plan.validation, plan.tracks, AUDIO, **args)


def test_batch_shapes_groups_and_distinct_tracks(corpus):
    plan = _plan(corpus)
    maker = _maker(plan)
    b = maker.batch(1)
    assert b["mel_a"].shape == (6, 32, 64) and b["mel_b"].shape == (6, 32, 64)
    assert b["mel_a"].dtype == torch.float32
    assert b["groups"].tolist() == [0, 0, 1, 1, 2, 2]
    assert len(set(b["playlists"].tolist())) == 3
    for g, pid in enumerate(b["playlists"].tolist()):
        rows = (b["groups"] == g).nonzero().flatten()
        tids = b["tracks_a"][rows].tolist() + b["tracks_b"][rows].tolist()
        assert len(set(tids)) == 4, "playlists with >= K tracks give K distinct tracks"
        assert set(tids) <= set(plan.train[pid])
    assert float(b["mel_a"].abs().max()) <= 1.0 + 1e-5
    # a pure function of (seed, split, step, rank)
    again = _maker(plan).batch(1)
    assert torch.equal(b["mel_a"], again["mel_a"]) and torch.equal(b["tracks_b"], again["tracks_b"])
    assert not torch.equal(b["tracks_a"], maker.batch(2)["tracks_a"]) or not torch.equal(
        b["mel_a"], maker.batch(2)["mel_a"]
    )


def test_same_track_views_pair_two_cuts_of_one_track(corpus):
    plan = _plan(corpus)
    b = _maker(plan, same_track_views=True).batch(1)
    assert b["mel_a"].shape == (6, 32, 64) and b["groups"].tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(b["tracks_a"], b["tracks_b"]), "row i of both views is the same track"
    for g, pid in enumerate(b["playlists"].tolist()):
        tids = b["tracks_a"][b["groups"] == g].tolist()
        assert len(set(tids)) == 2 and set(tids) <= set(plan.train[pid]), "K/2 distinct tracks per playlist"
    # two independent offsets: the cuts differ (2.5 s tracks hold ~4 patches of 64 frames)
    assert not torch.equal(b["mel_a"], b["mel_b"])
    # each cut is the track's log-mel at some frame offset
    source = sampling.PatchSource(AUDIO)
    tid = int(b["tracks_a"][0])
    path, duration = plan.tracks[tid]
    full = audio.LogMel(AUDIO.n_mels)(audio.load_audio(path))
    for view in ("mel_a", "mel_b"):
        errs = [float((full[:, f : f + 64] - b[view][0]).abs().max())
                for f in range(source.n_frames(path, duration) - 64 + 1)]
        assert min(errs) < 1e-3, view
    # the default is unchanged by the option's existence: K distinct tracks
    plain = _maker(plan).batch(1)
    assert not torch.equal(plain["tracks_a"], plain["tracks_b"])


def test_short_playlist_reuses_tracks(corpus):
    plan = _plan(corpus)
    pid = next(iter(plan.train))
    maker = sampling.BatchMaker({pid: plan.train[pid][:2], 10**6: plan.train[pid][2:4]}, plan.tracks, AUDIO,
                                buffer_size=2, batch_size=6)
    b = maker.batch(3)
    assert b["mel_a"].shape[0] == 6
    for g in range(2):
        rows = (b["groups"] == g).nonzero().flatten()
        assert len(set(b["tracks_a"][rows].tolist() + b["tracks_b"][rows].tolist())) == 2


def test_split_keeps_heldout_tracks_out(corpus):
    plan = _plan(corpus)
    conn = database.connect(corpus, readonly=True)
    sp = database.split(conn, seed=0, validation_fraction=0.25, heldout_track_fraction=0.2)
    conn.close()
    assert plan.heldout_tracks == sp.heldout_tracks and plan.heldout_tracks
    assert set(plan.train) == set(sp.train) and set(plan.validation) == set(sp.validation)
    heldout = set(plan.heldout_tracks)
    for split, playlists in (("train", plan.train), ("validation", plan.validation)):
        allowed = {t for members in playlists.values() for t in members}
        maker = _maker(plan, split)
        for step in range(1, 15):
            b = maker.batch(step)
            seen = set(b["tracks_a"].tolist()) | set(b["tracks_b"].tolist())
            assert not seen & heldout
            assert seen <= allowed
            assert set(b["playlists"].tolist()) <= set(playlists)


def test_ranks_sample_different_playlists(corpus):
    plan = _plan(corpus, validation_fraction=0.0)
    assert len(plan.train) >= 4
    r0 = _maker(plan, buffer_size=2, rank=0, world_size=2).batch(5)
    r1 = _maker(plan, buffer_size=2, rank=1, world_size=2).batch(5)
    assert not set(r0["playlists"].tolist()) & set(r1["playlists"].tolist())


def test_loader_workers_give_the_same_batches_in_order(corpus):
    plan = _plan(corpus)
    maker = _maker(plan)
    direct = [maker.batch(s) for s in range(4, 9)]
    loaded = list(sampling.make_loader(maker, 4, 9, num_workers=2))
    assert [b["step"] for b in loaded] == [4, 5, 6, 7, 8]
    for a, b in zip(direct, loaded, strict=True):
        assert torch.equal(a["mel_a"], b["mel_a"]) and torch.equal(a["groups"], b["groups"])


def test_patch_cache_gives_the_same_patches_as_decoding(corpus, tmp_path, monkeypatch):
    plan = _plan(corpus)
    cache = tmp_path / "cache"
    cached = sampling.CachedPatchSource(AUDIO, cache)
    direct = sampling.PatchSource(AUDIO)
    paths = [plan.tracks[t][0] for t in sorted(plan.tracks)[:3]]
    for path in paths:
        frames = cached.mel(path).shape[-1]
        assert frames == audio.n_frames(int(2.5 * audio.SAMPLE_RATE))
        for frame in (0, 37, frames - AUDIO.patch_frames):
            a, b = cached.patch_at(path, frame), direct.patch_at(path, frame)
            assert a.shape == b.shape == (32, 64)
            assert torch.allclose(a, b, atol=2e-3), float((a - b).abs().max())  # float16 storage
    assert cached.decoded == 3
    assert not list(cache.glob("*.tmp"))
    # a new process-like source reads the cache only: decoding is not even possible
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: pytest.fail("decoded despite the cache"))
    monkeypatch.setattr(audio, "read_patch", lambda *a, **k: pytest.fail("decoded despite the cache"))
    again = sampling.CachedPatchSource(AUDIO, cache)
    rng = np.random.default_rng(0)
    for path in paths:
        assert again.patch(path, 2.5, rng).shape == (32, 64)
    assert again.decoded == 0
    # and a whole batch through the cache equals one through decoding (same frames at the same steps)
    monkeypatch.undo()
    b1 = _maker(plan, cache_dir=cache).batch(2)
    b2 = _maker(plan).batch(2)
    assert torch.equal(b1["tracks_a"], b2["tracks_a"])
    assert torch.allclose(b1["mel_a"], b2["mel_a"], atol=2e-3)


def test_fill_cache_counts_failures(tmp_path):
    db = make_corpus(tmp_path, n_playlists=3, tracks_per_playlist=3, seconds=1.5, corrupt=1)
    plan = sampling.build_plan(db, AUDIO, validation_fraction=0.0, heldout_track_fraction=0.0)
    summary = cache_fill.fill_cache(plan, AUDIO, tmp_path / "cache", progress=False)
    assert summary["tracks"] == 9 and summary["decoded"] == 9 and len(summary["failed"]) == 1
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8 and len(list((tmp_path / "cache").glob("*.bad"))) == 1
    again = cache_fill.fill_cache(plan, AUDIO, tmp_path / "cache", progress=False)
    assert again["decoded"] == 0 and len(again["failed"]) == 1


@pytest.mark.parametrize("cached", [False, True])
def test_corrupt_tracks_are_skipped_and_counted(tmp_path, cached):
    # playlist 0 has 2 corrupt tracks of 3: it is left with 1 usable track and is skipped as a playlist
    db = make_corpus(tmp_path, n_playlists=4, tracks_per_playlist=3, seconds=1.5, corrupt=2)
    plan = sampling.build_plan(db, AUDIO, validation_fraction=0.0, heldout_track_fraction=0.0)
    assert len(plan.train) == 4
    maker = sampling.BatchMaker(plan.train, plan.tracks, AUDIO, buffer_size=4, batch_size=2,
                                cache_dir=tmp_path / "cache" if cached else None)
    bad_tracks, bad_playlists = {}, set()
    for step in range(1, 6):
        b = maker.batch(step)
        bad_tracks.update(dict(b["skipped_tracks"]))
        bad_playlists.update(b["skipped_playlists"])
        assert b["mel_a"].shape == (4, 32, 64) and torch.isfinite(b["mel_a"]).all()
        assert not set(b["tracks_a"].tolist()) & set(bad_tracks)
    conn = database.connect(db, readonly=True)
    p0 = min(plan.train)
    corrupt = set(database.playlist_tracks(conn, p0)[:2])
    conn.close()
    assert set(bad_tracks) == corrupt
    assert all("p00_t0" in reason for reason in bad_tracks.values())
    assert bad_playlists == {p0}


def test_plan_drops_tracks_shorter_than_a_patch(tmp_path):
    db = make_corpus(tmp_path, n_playlists=3, tracks_per_playlist=3, seconds=0.3)
    plan = sampling.build_plan(db, AUDIO, validation_fraction=0.0, heldout_track_fraction=0.0)
    assert not plan.tracks and len(plan.short_tracks) == 9 and not plan.train
    assert len(plan.dropped_playlists) == 3


def test_split_by_tracks_validates_on_unseen_tracks_of_training_playlists(corpus):
    conn = database.connect(corpus, readonly=True)
    by_playlists = database.split(conn, seed=0, validation_fraction=0.3, heldout_track_fraction=0.2)
    sp = database.split(conn, seed=0, validation_fraction=0.3, heldout_track_fraction=0.2, validation_by="tracks")
    conn.close()
    assert sp.heldout_tracks == by_playlists.heldout_tracks  # the evaluation tracks do not depend on the rule
    train_tracks = {t for members in sp.train.values() for t in members}
    val_tracks = {t for members in sp.validation.values() for t in members}
    assert val_tracks and not val_tracks & train_tracks and not val_tracks & set(sp.heldout_tracks)
    assert set(sp.validation) <= set(sp.train)  # validation groups are playlists that also train
    assert all(len(members) >= 2 for members in sp.validation.values())
    with pytest.raises(ValueError, match="validation_by"):
        database.split(database.connect(corpus, readonly=True), validation_by="albums")
