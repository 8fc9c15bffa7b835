"""ChromaDB track index: same neighbours as exact search, idempotent and resumable builds, metadata,
recommendations, and client/server mode against a real ``chroma run`` server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from chromadb.api.models.Collection import Collection

from spotifai.app.screenshot import free_port, stop_process
from spotifai.embeddings_file import Embeddings
from spotifai.index import DEFAULT_HNSW, TrackIndex, track_metadata


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _embeddings(n: int = 400, seed: int = 0, checkpoint: str = "ck-a") -> Embeddings:
    rng = np.random.default_rng(seed)
    ids = np.arange(10, 10 + n, dtype=np.int64)
    return Embeddings(ids, _unit(rng.standard_normal((n, 16))), _unit(rng.standard_normal((n, 24))), checkpoint)


def _metadata(emb: Embeddings) -> dict[int, dict]:
    rows = [
        {"id": int(t), "title": f"Song {t}", "artist": f"Artist {t % 7}", "album": None, "duration": 12.5,
         "genre": None if t % 2 else "rock"}
        for t in emb.track_ids
    ]
    return {r["id"]: track_metadata(r) for r in rows}


def _exact(emb: Embeddings, track_id: int, k: int, space: str = "projections") -> list[int]:
    v = emb.vectors(space)
    row = int(np.flatnonzero(emb.track_ids == track_id)[0])
    sims = v @ v[row]
    sims[row] = -np.inf
    return emb.track_ids[np.argsort(-sims, kind="stable")[:k]].tolist()


def test_metadata_has_no_none_values():
    meta = track_metadata({"id": 3, "title": "T", "artist": None, "album": "", "duration": 3, "genre": None})
    assert meta == {"track_id": 3, "title": "T", "duration": 3.0}


def test_index_matches_exact_search(tmp_path):
    emb = _embeddings()
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    summary = index.build(emb, _metadata(emb), progress=False)
    assert summary["projections"]["count"] == len(emb) and summary["features"]["recreated"]
    assert index.is_complete("projections") and index.is_complete("features")
    hnsw = index.info()["projections"]["hnsw"]
    assert {k: hnsw[k] for k in DEFAULT_HNSW} == DEFAULT_HNSW
    hits = total = 0
    for tid in emb.track_ids[:40].tolist():
        for space in ("projections", "features"):
            recs = index.recommend(tid, k=10, space=space)
            assert len(recs) == 10 and tid not in [r["track_id"] for r in recs]
            sims = [r["similarity"] for r in recs]
            assert sims == sorted(sims, reverse=True)
            exact = _exact(emb, tid, 10, space)
            hits += len(set(exact) & {r["track_id"] for r in recs})
            total += 10
    assert hits / total >= 0.99
    # similarity = cosine, metadata attached, unknown fields absent
    tid = int(emb.track_ids[1])
    rec = index.recommend(tid, k=1)[0]
    other = int(np.flatnonzero(emb.track_ids == rec["track_id"])[0])
    assert rec["similarity"] == pytest.approx(float(emb.projections[1] @ emb.projections[other]), abs=1e-4)
    assert rec["title"] == f"Song {rec['track_id']}" and "album" not in rec
    assert ("genre" in rec) == (rec["track_id"] % 2 == 0)


@pytest.mark.slow
def test_default_settings_reach_recall_095_on_random_vectors(tmp_path):
    """The issue's reference case: 10k isotropic random 256-d vectors, where chromadb's own defaults give 0.61.

    1,000 queries: every build is a slightly different graph (Chroma inserts on several threads), and with
    the default settings the mean recall sits at 0.954-0.959 over builds; 50 queries (recall in steps of
    0.002 per query miss, spread ~0.01) were too few to tell that from 0.95.
    """
    rng = np.random.default_rng(7)
    x = rng.standard_normal((11_000, 256)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base, queries = x[:10_000], x[10_000:]
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    ids = np.arange(len(base))
    index.build_space("projections", ids, base, [{"track_id": int(i)} for i in ids], checkpoint_id="t",
                      progress=False)
    found = index.query(queries, 10, metadata=False)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    hits = sum(len(set(e.tolist()) & {h["track_id"] for h in f}) for e, f in zip(exact, found, strict=True))
    # integer comparison: a mean of 0.1 steps that should be exactly 0.95 came out as 0.9499999999999998
    assert hits * 100 >= 95 * 10 * len(queries), hits / (10 * len(queries))


def test_stored_vectors_and_unknown_track(tmp_path):
    emb = _embeddings(50)
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    index.build(emb, _metadata(emb), progress=False)
    np.testing.assert_allclose(index.vector(int(emb.track_ids[3]), "features"), emb.features[3], atol=1e-6)
    assert index.vector(999999) is None
    with pytest.raises(KeyError, match="999999"):
        index.recommend(999999)
    empty = TrackIndex(tmp_path / "other", collection_prefix="spotifai-none")
    with pytest.raises(FileNotFoundError, match="spotifai index"):
        empty.recommend(1)


def test_rebuild_is_idempotent_and_follows_the_embeddings(tmp_path):
    emb = _embeddings(200)
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    index.build(emb, _metadata(emb), progress=False)
    again = index.build(emb, _metadata(emb), progress=False)
    assert again["projections"]["added"] == 0 and not again["projections"]["recreated"]
    # tracks added / removed with the same checkpoint: only the difference is written
    fewer = emb.subset(emb.track_ids[20:].tolist())
    changed = index.build(fewer, _metadata(emb), progress=False)
    assert changed["projections"]["deleted"] == 20 and changed["projections"]["count"] == 180
    assert index.vector(int(emb.track_ids[0])) is None
    # a new checkpoint replaces the collections
    new = _embeddings(200, seed=1, checkpoint="ck-b")
    rebuilt = index.build(new, _metadata(new), progress=False)
    assert rebuilt["projections"]["recreated"] and rebuilt["projections"]["count"] == 200
    assert index.info()["projections"]["checkpoint_id"] == "ck-b"
    np.testing.assert_allclose(index.vector(int(new.track_ids[0])), new.projections[0], atol=1e-6)
    forced = index.build(new, _metadata(new), progress=False, rebuild=True)
    assert forced["features"]["recreated"] and forced["features"]["count"] == 200


def test_interrupted_build_completes_when_run_again(tmp_path, monkeypatch):
    emb = _embeddings(300)
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    real_upsert = Collection.upsert
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", flaky)
    with pytest.raises(KeyboardInterrupt):
        index.build(emb, _metadata(emb), batch_size=50, progress=False)
    monkeypatch.setattr(Collection, "upsert", real_upsert)
    info = index.info()["features"]
    assert info["exists"] and not info["complete"] and info["count"] == 100
    done = index.build(emb, _metadata(emb), batch_size=50, progress=False)
    assert done["features"]["added"] == 200 and not done["features"]["recreated"]
    assert index.is_complete("features") and index.is_complete("projections")
    assert done["projections"]["count"] == 300


# ------------------------------------------------------------------------------------------ client/server


@pytest.fixture()
def chroma_server(tmp_path):
    """A real Chroma server (``chroma run``) on 127.0.0.1 at a free port; always stopped afterwards."""
    import httpx

    chroma = Path(sys.executable).with_name("chroma")
    port = free_port()
    log = (tmp_path / "chroma.log").open("wb")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {proc.returncode}: {(tmp_path / 'chroma.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chroma run did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        stop_process(proc)
        log.close()


@pytest.mark.slow
def test_client_server_mode(chroma_server):
    emb = _embeddings(120)
    index = TrackIndex(host="127.0.0.1", port=chroma_server, collection_prefix="spotifai-served")
    summary = index.build(emb, _metadata(emb), batch_size=50, progress=False)
    assert summary["projections"]["count"] == 120
    tid = int(emb.track_ids[5])
    recs = index.recommend(tid, k=5)
    assert [r["track_id"] for r in recs] == _exact(emb, tid, 5)
    assert index.build(emb, _metadata(emb), progress=False)["features"]["added"] == 0
    # a second client sees the same index (how users share one)
    other = TrackIndex(host="127.0.0.1", port=chroma_server, collection_prefix="spotifai-served")
    assert [r["track_id"] for r in other.recommend(tid, k=5)] == [r["track_id"] for r in recs]


def test_k_above_collection_size_and_handles(tmp_path):
    emb = _embeddings(6)
    index = TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test")
    index.build(emb, _metadata(emb), progress=False)
    col = index.collection("projections")
    assert index.collection("projections") is col  # looked up once
    tid = int(emb.track_ids[0])
    recs = index.recommend(tid, k=50)  # more than the collection holds: all the others, no error
    assert sorted(r["track_id"] for r in recs) == sorted(emb.track_ids[1:].tolist())
    bare = index.recommend(tid, k=3, metadata=False)
    assert [r["track_id"] for r in bare] == [r["track_id"] for r in recs[:3]] and "title" not in bare[0]
    assert index.query(emb.projections[:2], k=0) == [[], []]


def test_opening_an_index_does_not_import_torch(tmp_path):
    emb = _embeddings(20)
    TrackIndex(tmp_path / "chroma", collection_prefix="spotifai-test").build(emb, _metadata(emb), progress=False)
    code = (
        "import sys\nfrom spotifai.index import TrackIndex\n"
        f"ix = TrackIndex({str(tmp_path / 'chroma')!r}, collection_prefix='spotifai-test')\n"
        f"print(len(ix.recommend({int(emb.track_ids[0])}, k=3)), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "False"]
