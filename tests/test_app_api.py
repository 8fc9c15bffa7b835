"""The web demo's JSON API (FastAPI TestClient): search, pagination, bounds, 404s, Range requests, security."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from spotifai import database, index
from spotifai.app.server import AUDIO_MEDIA_TYPES, MAX_K, MAX_LIMIT, MAX_OFFSET, MAX_QUERY_CHARS, create_app

try:  # tests/ as a package or as a plain folder on sys.path
    from .app_corpus import XSS_TITLE, BruteForceNeighbours, build_corpus
except ImportError:
    from app_corpus import XSS_TITLE, BruteForceNeighbours, build_corpus  # type: ignore[no-redef]



LOCAL = "http://localhost"  # the server answers allowed Host names only (TestClient's default is "testserver")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_api")
    corpus = build_corpus(root)
    experiment = root / "experiments" / "demo"
    experiment.mkdir(parents=True)
    ids = np.array(sorted(corpus.vectors), dtype=np.int64)
    vectors = np.stack([corpus.vectors[int(i)] for i in ids])
    metas = [{"track_id": int(i)} for i in ids]
    index.open_index(experiment).build_space("projections", ids, vectors, metas, checkpoint_id="test", progress=False)
    corpus.experiment = experiment
    return corpus


@pytest.fixture(scope="module")
def client(corpus):
    app = create_app(corpus.db_path, corpus.experiment)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        yield c


def _is_json_error(response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.text


# ------------------------------------------------------------------------------------------------ search


def test_search_relevance_order(client, corpus):
    res = client.get("/api/search", params={"q": "midnight harbor"})
    assert res.status_code == 200
    results = res.json()["results"]
    assert results[0]["title"] == "Midnight Harbor Lights"
    assert {"id", "title", "artist", "album", "duration", "popularity", "score"} <= set(results[0])
    assert "audio_path" not in results[0]


def test_search_misspelled_multi_word(client):
    results = client.get("/api/search", params={"q": "midnigt harbr lihgts"}).json()["results"]
    assert results and results[0]["title"] == "Midnight Harbor Lights"


def test_search_pagination_is_stable_and_complete(client, corpus):
    seen: list[int] = []
    offset = 0
    pages = 0
    while offset is not None:
        body = client.get("/api/search", params={"q": "filler song", "limit": 20, "offset": offset}).json()
        assert body["offset"] == offset and body["limit"] == 20
        seen += [r["id"] for r in body["results"] if r["title"].startswith("Filler Song")]
        offset = body["next_offset"]
        pages += 1
        assert pages < 10
    fillers = {tid for title, tid in corpus.ids.items() if title.startswith("Filler Song")}
    assert len(seen) == len(set(seen)), "a track appeared on two pages"
    assert set(seen) == fillers
    assert pages >= 3


def test_search_empty_query(client):
    body = client.get("/api/search", params={"q": "   "}).json()
    assert body["results"] == [] and body["next_offset"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * (MAX_QUERY_CHARS + 1)},
        {"q": "a", "limit": 0},
        {"q": "a", "limit": MAX_LIMIT + 1},
        {"q": "a", "limit": "lots"},
        {"q": "a", "offset": -1},
        {"q": "a", "offset": MAX_OFFSET + 1},
    ],
)
def test_search_bounds(client, params):
    _is_json_error(client.get("/api/search", params=params), 422)


def test_search_longest_query_is_fine(client):
    assert client.get("/api/search", params={"q": "song " * (MAX_QUERY_CHARS // 5)}).status_code == 200


def test_search_sql_metacharacters_are_harmless(client, corpus):
    for q in ["'; DROP TABLE tracks; --", '"', "NEAR(", "title:*", "%", "\\", "\x00"]:
        res = client.get("/api/search", params={"q": q})
        assert res.status_code == 200, (q, res.text)
    assert client.get(f"/api/tracks/{corpus.ids['Harbor Morning']}").status_code == 200


# ------------------------------------------------------------------------------------------------ tracks


def test_track_detail(client, corpus):
    tid = corpus.ids["Harbor Morning"]
    body = client.get(f"/api/tracks/{tid}").json()
    assert body["title"] == "Harbor Morning" and body["artist"] == "Solar Drift" and body["album"] == "Daybreak"
    assert body["audio_url"] == f"/api/tracks/{tid}/audio" and body["has_audio"] is True
    assert "audio_path" not in body and "uri" not in body


@pytest.mark.parametrize("bad", ["999999", "0", "-1", "abc", "1.5", "1e3", " 1", "١", "99999999999999999999999"])
def test_unknown_or_malformed_ids_are_404_json(client, bad):
    for suffix in ("", "/similar", "/audio"):
        _is_json_error(client.get(f"/api/tracks/{bad}{suffix}"), 404)


def test_unknown_api_route_is_404_json(client):
    _is_json_error(client.get("/api/nothing/here"), 404)
    _is_json_error(client.get("/definitely-not-a-page"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/tracks/../../etc/passwd",
        "/api/tracks/../../etc/passwd/audio",
        "/api/tracks/..%2F..%2Fetc%2Fpasswd",
        "/api/tracks/..%2F..%2Fetc%2Fpasswd/audio",
        "/api/tracks/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/audio",
        "/api/tracks/%252E%252E%252Fetc%252Fpasswd/audio",
        "/static/..%2Fserver.py",
        "/static/../server.py",
    ],
)
def test_path_traversal_is_404(client, path):
    res = client.get(path)
    _is_json_error(res, 404)
    assert "root:" not in res.text and "import" not in res.text


def test_escaped_title_in_json(client, corpus):
    tid = corpus.ids[XSS_TITLE]
    res = client.get(f"/api/tracks/{tid}")
    assert res.headers["content-type"].startswith("application/json")
    assert res.headers["x-content-type-options"] == "nosniff"
    assert json.loads(res.text)["title"] == XSS_TITLE  # verbatim data, only ever rendered as text
    assert json.loads(res.text)["artist"] == "Script & <Kiddie>"
    results = client.get("/api/search", params={"q": "onerror alert"}).json()["results"]
    assert results and results[0]["title"] == XSS_TITLE


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/app.js").text
    assert not any(s in script for s in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"))
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN


# ----------------------------------------------------------------------------------------------- similar


def test_similar_tracks_from_the_index(client, corpus):
    tid = corpus.ids["Filler Song 00"]
    body = client.get(f"/api/tracks/{tid}/similar", params={"k": 10}).json()
    results = body["results"]
    assert len(results) == 10
    assert tid not in [r["id"] for r in results]
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in sims)
    assert {"id", "title", "artist", "album", "similarity"} <= set(results[0])
    # the corpus vectors cluster by album: the nearest neighbours share the album
    assert all(corpus.album_of[r["id"]] == corpus.album_of[tid] for r in results[:5])
    exact = BruteForceNeighbours(corpus.vectors).similar(tid, 10)
    assert len({r["id"] for r in results} & {t for t, _ in exact}) >= 8


def test_index_adapter_agrees_with_track_index_recommend(corpus):
    from spotifai.app.server import IndexNeighbours

    adapter = IndexNeighbours(corpus.experiment)
    reference = index.open_index(corpus.experiment)
    for tid in list(corpus.vectors)[:5]:
        got = adapter.similar(tid, 10)
        want = reference.recommend(tid, k=10)
        assert [t for t, _ in got] == [w["track_id"] for w in want]
        assert np.allclose([s for _, s in got], [w["similarity"] for w in want], atol=1e-5)
    with pytest.raises(KeyError):
        adapter.similar(corpus.ids["Ghost Track Without Audio"], 10)


@pytest.mark.parametrize("k", [0, MAX_K + 1, -3, "ten"])
def test_similar_bounds(client, corpus, k):
    _is_json_error(client.get(f"/api/tracks/{corpus.ids['Harbor Morning']}/similar", params={"k": k}), 422)


def test_similar_without_vector_is_404(client, corpus):
    _is_json_error(client.get(f"/api/tracks/{corpus.ids['Ghost Track Without Audio']}/similar"), 404)


def test_missing_index_gives_503_but_search_works(corpus, tmp_path):
    app = create_app(corpus.db_path, tmp_path / "no-such-experiment")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        assert c.get("/api/search", params={"q": "harbor"}).json()["results"]
        _is_json_error(c.get(f"/api/tracks/{corpus.ids['Harbor Morning']}/similar"), 503)
        assert c.get("/api/health").json()["index"].startswith("error")


def test_index_still_opening_gives_503_with_retry_after(corpus, monkeypatch):
    import threading

    from spotifai.app import server

    monkeypatch.setattr(server, "INDEX_WAIT_S", 0.05)
    release = threading.Event()

    def slow_open():
        release.wait(10)
        return BruteForceNeighbours(corpus.vectors)

    with TestClient(create_app(corpus.db_path, neighbours=slow_open), base_url=LOCAL) as c:
        url = f"/api/tracks/{corpus.ids['Harbor Morning']}/similar"
        res = c.get(url)
        _is_json_error(res, 503)
        assert res.headers["retry-after"]
        assert c.get("/api/health").json()["index"] == "loading"
        release.set()
        deadline = time.monotonic() + 10
        while c.get("/api/health").json()["index"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(c.get(url).json()["results"]) == 10


def test_internal_errors_are_json_without_traceback(corpus):
    class Broken:
        def similar(self, track_id, k):
            raise RuntimeError("secret internals /home/user")

    with TestClient(create_app(corpus.db_path, neighbours=Broken()), base_url=LOCAL, raise_server_exceptions=False) as c:
        res = c.get(f"/api/tracks/{corpus.ids['Harbor Morning']}/similar")
        _is_json_error(res, 500)
        assert "secret" not in res.text


def test_missing_database_fails_at_once_naming_it(tmp_path):
    with pytest.raises(database.DatabaseError, match="nope.db"):
        create_app(tmp_path / "nope.db", tmp_path)


def test_startup_is_fast(corpus):
    start = time.perf_counter()
    with TestClient(create_app(corpus.db_path, corpus.experiment), base_url=LOCAL) as c:
        assert c.get("/api/search", params={"q": "harbor"}).status_code == 200
        assert c.get(f"/api/tracks/{corpus.ids['Harbor Morning']}/similar").status_code == 200
    assert time.perf_counter() - start < 3.0


# --------------------------------------------------------------------------------------------------- audio


def test_audio_full_file_and_media_types(client, corpus):
    for tid, path in corpus.audio_paths.items():
        res = client.get(f"/api/tracks/{tid}/audio")
        assert res.status_code == 200
        assert res.content == path.read_bytes()
        assert res.headers["accept-ranges"] == "bytes"
        assert res.headers["content-type"].split(";")[0] == AUDIO_MEDIA_TYPES[path.suffix].split(";")[0]
    assert AUDIO_MEDIA_TYPES[".mp3"] == "audio/mpeg" and AUDIO_MEDIA_TYPES[".m4a"] == "audio/mp4"
    assert AUDIO_MEDIA_TYPES[".flac"] == "audio/flac" and AUDIO_MEDIA_TYPES[".ogg"] == "audio/ogg"
    assert AUDIO_MEDIA_TYPES[".opus"].startswith("audio/ogg") and AUDIO_MEDIA_TYPES[".wav"] == "audio/wav"


def test_audio_range_requests(client, corpus):
    tid = corpus.ids["Midnight Harbor Lights"]
    data = corpus.audio_paths[tid].read_bytes()
    size = len(data)
    url = f"/api/tracks/{tid}/audio"

    res = client.get(url, headers={"Range": "bytes=0-99"})
    assert res.status_code == 206
    assert res.headers["content-range"] == f"bytes 0-99/{size}"
    assert res.content == data[:100] and res.headers["content-length"] == "100"

    res = client.get(url, headers={"Range": "bytes=1000-"})  # open-ended
    assert res.status_code == 206 and res.content == data[1000:]
    assert res.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"

    res = client.get(url, headers={"Range": "bytes=-500"})  # suffix
    assert res.status_code == 206 and res.content == data[-500:]
    assert res.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"

    res = client.get(url, headers={"Range": f"bytes={size}-"})  # unsatisfiable
    assert res.status_code == 416
    assert res.headers["content-range"] == f"bytes */{size}"

    res = client.head(url)
    assert res.status_code == 200 and res.headers["content-length"] == str(size) and res.content == b""


def test_audio_of_track_without_audio_is_404(client, corpus):
    _is_json_error(client.get(f"/api/tracks/{corpus.ids['Ghost Track Without Audio']}/audio"), 404)


def test_audio_file_deleted_after_ingest_is_404(corpus, tmp_path):
    # a DB row whose file has gone: 404, never a stack trace
    conn = database.connect(corpus.db_path)
    with conn:
        tid = database.upsert_track(
            conn, uri="test:gone", title="Gone", audio_path=str(tmp_path / "gone.wav"), duration=1.0
        )
    conn.close()
    with TestClient(create_app(corpus.db_path, neighbours=BruteForceNeighbours(corpus.vectors)), base_url=LOCAL) as c:
        _is_json_error(c.get(f"/api/tracks/{tid}/audio"), 404)
