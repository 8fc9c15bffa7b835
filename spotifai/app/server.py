"""The Song Recommender web demo server: a small JSON API and one static page (FastAPI + uvicorn).

API (every error is a JSON object ``{"detail": ...}``, never a stack trace):

* ``GET /api/search?q=&limit=&offset=`` -> ``{query, limit, offset, results: [{id, title, artist, album,
  duration, popularity, score}], next_offset}``; relevance order (``spotifai.search.search``). ``q`` at most
  :data:`MAX_QUERY_CHARS` characters, ``limit`` in 1..:data:`MAX_LIMIT`, ``offset`` in 0..:data:`MAX_OFFSET`
  (422 outside). ``next_offset`` is null on the last page.
* ``GET /api/tracks/{id}`` -> track metadata (no file path); 404 for unknown or non-integer ids.
* ``GET /api/tracks/{id}/similar?k=10`` -> ``{track_id, k, reference, results: [{id, title, artist, album,
  similarity, relative}]}``, nearest stored vectors in the index (cosine similarity, the track itself
  excluded), ``k`` in 1..:data:`MAX_K`. Neighbours of a trained model are all close to 1, so each result also
  has ``relative``: where its similarity lies between the query's :data:`REFERENCE_RANK`-th nearest track
  (0; its similarity is ``reference``) and an identical vector (1); the page draws that as the bar.
* ``POST /api/similar-to-file?k=10`` (the audio file as the body) -> ``{k, reference, results}`` as above
  for a file that need not be in the DB: the experiment's model embeds it for this request only. Bounded
  and refused as :mod:`spotifai.app.upload` describes (413, 415, 422; 503 while no model is loaded).
  404 when the track is unknown or has no vector; 503 with ``Retry-After`` while the index is still
  opening, 503 without it when the index could not be opened or its build never finished (an interrupted
  ``spotifai index``): the reason is given, without server paths (those go to the server log).
* ``GET /api/tracks/{id}/audio`` -> the track's audio file, located through the DB by id only and served only
  when its real path (symbolic links resolved) lies where ingestion found audio (``library_roots`` of the DB;
  a track ingested otherwise: the resolved folder of its stored path; see :func:`servable_audio`); 404
  otherwise. HTTP Range requests
  (206 / 416) are handled by Starlette's ``FileResponse``; a malformed or unsatisfiable Range gets the JSON
  error (400 / 416 with ``Content-Range``).
* ``GET /api/health`` -> ``{status, index}``; ``index`` is ``loading``, ``ready`` or ``error: ...``.

Only requests whose ``Host`` header names an allowed host are answered (400 otherwise): ``localhost``,
``127.0.0.1`` and ``[::1]`` by default, plus the address the server listens on and the names given with
``spotifai serve --allowed-host NAME`` (``*``: any). A DNS-rebinding page, whose requests carry its own host
name, thus cannot read the API or the audio from a user's browser.

Start-up is fast: the DB is opened read-only (one connection per worker thread) and the ChromaDB client
is opened in a background thread, so the server answers search requests while the index loads.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from spotifai import database
from spotifai.app import guards, upload
from spotifai.app.guards import DEFAULT_ALLOWED_HOSTS

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_LIMIT = 50
MAX_OFFSET = 10_000
MAX_K = 50
INDEX_WAIT_S = 5.0  # how long a /similar request waits for an index that is still opening (then 503)
REFERENCE_RANK = 50  # the bar of a neighbour is relative to the query's 50th nearest track

#: Media types by file suffix (lower case). Anything else is served as application/octet-stream.
AUDIO_MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg; codecs=opus",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}

_STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self';"
        b" connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
]


# ------------------------------------------------------------------------------------- neighbour backends


class Neighbours(Protocol):
    """Nearest stored vectors of a stored track: ``similar(track_id, k) -> [(track_id, similarity)]``,
    most similar first, the track itself excluded; raises ``KeyError`` when the track has no vector."""

    def similar(self, track_id: int, k: int) -> list[tuple[int, float]]: ...


class IndexUnavailable(RuntimeError):
    """The index cannot be served; ``str()`` is a reason fit for clients (no server paths)."""


class IndexNeighbours:
    """Nearest neighbours from the experiment's :mod:`spotifai.index` collections (stored vectors only: no
    model is loaded).

    ``experiment``: the experiment folder (it names the collections; the index is ``EXP/chroma`` unless
    ``index_path`` is given); ``host``/``port``: a Chroma server instead of a local folder.

    :meth:`similar` is :meth:`spotifai.index.TrackIndex.recommend` with ``metadata=False`` (metadata comes
    from the music DB, so only ids and distances are read) on one :class:`~spotifai.index.TrackIndex`, which
    keeps its collection handles and does not call ``count()`` per query. Opening also runs one query, so the
    HNSW graph is in memory before the index reports ready. Opening the index does not import torch and
    creates nothing. :class:`IndexUnavailable` (a reason without paths; details in the log) when the index is
    missing or its build never finished.
    """

    def __init__(
        self,
        experiment: str | Path,
        *,
        index_path: str | Path | None = None,
        host: str | None = None,
        port: int | None = None,
        space: str = "projections",
    ) -> None:
        from spotifai import index as index_module

        self.space = space
        try:
            self._index = index_module.open_index(experiment, path=index_path, host=host, port=port, create=False)
            collection = self._index.collection(space)  # FileNotFoundError naming it when never built
        except FileNotFoundError as exc:
            log.error("no index: %s", exc)
            raise IndexUnavailable(f"no {space} index for this experiment (build it with `spotifai index`)") from exc
        meta = collection.metadata or {}
        if not meta.get("complete"):
            count = collection.count()
            log.error("%s: the index build did not finish (%d vectors, complete=false)", collection.name, count)
            raise IndexUnavailable(
                f"the {space} index is incomplete: its build was interrupted after {count} vectors"
                " (run `spotifai index` again to finish it)"
            )
        first = collection.get(limit=1, include=["embeddings"])
        if len(first["ids"]):
            self._index.query(np.asarray(first["embeddings"], dtype=np.float32), 1, space, metadata=False)

    def similar(self, track_id: int, k: int) -> list[tuple[int, float]]:
        hits = self._index.recommend(track_id, k, self.space, metadata=False)  # KeyError when not indexed
        return [(h["track_id"], h["similarity"]) for h in hits]

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` stored vectors nearest to ``vector`` (any vector of the space: an uploaded file's)."""
        hits = self._index.query(np.asarray(vector, dtype=np.float32)[None], k, self.space, metadata=False)[0]
        return [(h["track_id"], h["similarity"]) for h in hits]


# ------------------------------------------------------------------------------------------------ the app


class _State:
    """Per-app state: DB connections (one per thread) and the lazily opened neighbour backend."""

    def __init__(self, db_path: Path, open_neighbours: Callable[[], Neighbours] | None) -> None:
        self.db_path = db_path
        self._local = threading.local()
        self._open_neighbours = open_neighbours
        self.neighbours: Neighbours | None = None
        self.index_status = "loading" if open_neighbours else "error: no index configured"
        self.index_ready = threading.Event()
        self._loader: threading.Thread | None = None

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = database.connect(self.db_path, readonly=True)
            self._local.conn = conn
        return conn

    def warm_up_search(self) -> None:
        """Run one search in the background so its per-database caches (the vocabulary) are built before
        the first user query; errors are left for the real request to report."""

        def run() -> None:
            try:
                from spotifai.search import search

                conn = database.connect(self.db_path, readonly=True)
                try:
                    search(conn, "warm up", limit=1)
                finally:
                    conn.close()
            except Exception as exc:  # pragma: no cover - reported by the first real search
                log.warning("search warm-up failed: %s", exc)

        threading.Thread(target=run, name="spotifai-search-warmup", daemon=True).start()

    def ready_neighbours(self) -> Neighbours:
        """The neighbour backend, waiting up to :data:`INDEX_WAIT_S` for it to open; 503 (with ``Retry-After``
        while it is still opening) when there is none."""
        if not self.index_ready.wait(INDEX_WAIT_S):
            raise HTTPException(status_code=503, detail="the index is still opening", headers={"retry-after": "2"})
        if self.neighbours is None:
            raise HTTPException(status_code=503, detail=f"no index available ({self.index_status})")
        return self.neighbours

    def start_index(self) -> None:
        if self._open_neighbours is None:
            self.index_ready.set()
            return
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_index, name="spotifai-index", daemon=True)
            self._loader.start()

    def _load_index(self) -> None:
        start = time.perf_counter()
        try:
            assert self._open_neighbours is not None
            self.neighbours = self._open_neighbours()
            self.index_status = "ready"
            log.info("index ready in %.2f s", time.perf_counter() - start)
        except Exception as exc:  # reported by /api/health and /similar, not fatal for search
            log.error("could not open the index: %s", exc)
            reason = str(exc) if isinstance(exc, IndexUnavailable) else (
                f"the index could not be opened ({type(exc).__name__}; see the server log)")
            self.index_status = f"error: {reason}"
        finally:
            self.index_ready.set()


def _parse_id(raw: str) -> int:
    """A track id from the URL: a plain decimal integer, else 404 (not 422: such a resource does not exist)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HTTPException(status_code=404, detail="track not found")
    return int(raw)


def _public_track(row: dict) -> dict[str, Any]:
    has_audio = bool(row.get("audio_path")) and (row.get("duration") or 0) > 0
    return {
        "id": row["id"],
        "title": row["title"],
        "artist": row.get("artist"),
        "album": row.get("album"),
        "duration": row.get("duration"),
        "popularity": row.get("popularity"),
        "genre": row.get("genre"),
        "has_audio": has_audio,
        "audio_url": f"/api/tracks/{row['id']}/audio" if has_audio else None,
    }


def create_app(
    database_path: str | Path,
    experiment: str | Path | None = None,
    *,
    index_path: str | Path | None = None,
    chroma_host: str | None = None,
    chroma_port: int | None = None,
    space: str = "projections",
    neighbours: Neighbours | Callable[[], Neighbours] | None = None,
    allowed_hosts: tuple[str, ...] | list[str] | None = None,
    uploads: bool = True,
    max_upload_bytes: int = upload.MAX_UPLOAD_BYTES,
) -> FastAPI:
    """Build the demo app.

    ``database_path``: the music DB (opened read-only; :class:`spotifai.database.DatabaseError` at once if it
    is missing or unusable). The index: the ``experiment``'s (it names the collections), in ``EXP/chroma``,
    or in the folder ``index_path``, or on a Chroma server at ``chroma_host``/``chroma_port``; ``space`` is ``"projections"`` or
    ``"features"``. ``neighbours`` replaces all of these with a ready backend (or a zero-argument factory),
    for tests. The index is opened in a background thread when the app starts. ``allowed_hosts``: the host
    names answered (default :data:`DEFAULT_ALLOWED_HOSTS`; ``"*"`` in it: any). ``uploads``: load the
    experiment's model in the background for ``POST /api/similar-to-file`` (at most ``max_upload_bytes``).
    """
    db_path = Path(database_path)
    database.connect(db_path, readonly=True).close()  # fail fast, naming the file

    open_neighbours = _neighbour_opener(neighbours, experiment, index_path, chroma_host, chroma_port, space)
    state = _State(db_path, open_neighbours)
    embedder = upload.UploadEmbedder(experiment, space) if uploads and experiment is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start_index()
        state.warm_up_search()
        if embedder is not None:
            embedder.start()
        yield

    app = FastAPI(title="spotifai Song Recommender", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.spotifai = state
    _add_error_handlers(app)
    _add_page_routes(app)
    _add_health_route(app, state, embedder)
    _add_search_routes(app, state)
    _add_similar_route(app, state)
    _add_upload_route(app, state, embedder, max_upload_bytes)
    _add_audio_route(app, state)
    _add_api_not_found(app)  # last: it matches every /api/ path the routes above do not
    # Host check, security headers (pure ASGI)
    app.add_middleware(guards.HostMiddleware, allowed=allowed_hosts)
    app.add_middleware(_HeadersMiddleware)  # added last = outermost: its headers go on every response
    return app


def _neighbour_opener(
    neighbours: Neighbours | Callable[[], Neighbours] | None, experiment: str | Path | None,
    index_path: str | Path | None, chroma_host: str | None, chroma_port: int | None, space: str,
) -> Callable[[], Neighbours] | None:
    """The zero-argument function that opens the neighbour backend (see :func:`create_app`), or None when
    neither ``neighbours`` nor ``experiment`` is given."""
    if neighbours is not None:
        backend = neighbours
        return (lambda: backend) if hasattr(backend, "similar") else backend  # type: ignore[return-value]
    if experiment is not None:
        return lambda: IndexNeighbours(
            experiment, index_path=index_path, host=chroma_host, port=chroma_port, space=space
        )
    return None


# ------------------------------------------------------------------------------------------- routes


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as a JSON object ``{"detail": ...}``: HTTP errors, validation errors (422, one line per
    problem), anything else (500, logged, no stack trace to the client)."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Response:
        log.exception("error while answering %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


def _add_page_routes(app: FastAPI) -> None:
    """``/`` (the page) and ``/static/{name}`` (its script and style sheet only), read once, here."""
    static = resources.files("spotifai.app").joinpath("static")
    pages = {name: static.joinpath(name).read_bytes() for name in _STATIC_FILES}

    def _page(name: str) -> Response:
        return Response(pages[name], media_type=_STATIC_FILES[name], headers={"cache-control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        return _page("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in pages:
            raise HTTPException(status_code=404, detail="not found")
        return _page(name)


def _add_health_route(app: FastAPI, state: _State, embedder: upload.UploadEmbedder | None) -> None:
    """``GET /api/health``: the index's and the upload model's status."""

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "index": state.index_status,
                "uploads": embedder.status if embedder is not None else "off"}


def _add_search_routes(app: FastAPI, state: _State) -> None:
    """``GET /api/search`` (a page of search results) and ``GET /api/tracks/{id}`` (one track's metadata)."""

    @app.get("/api/search")
    def search_tracks(
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict:
        from spotifai.search import search

        query = q.strip()
        rows = search(state.conn(), query, limit=limit + 1, offset=offset) if query else []
        more = len(rows) > limit
        results = [
            {
                "id": r["id"],
                "title": r["title"],
                "artist": r.get("artist"),
                "album": r.get("album"),
                "duration": r.get("duration"),
                "popularity": r.get("popularity"),
                "score": r.get("score"),
            }
            for r in rows[:limit]
        ]
        return {
            "query": query,
            "limit": limit,
            "offset": offset,
            "results": results,
            "next_offset": offset + limit if more and offset + limit <= MAX_OFFSET else None,
        }

    @app.get("/api/tracks/{track_id}")
    def get_track(track_id: str) -> dict:
        row = database.track(state.conn(), _parse_id(track_id))
        if row is None:
            raise HTTPException(status_code=404, detail="track not found")
        return _public_track(row)


def _add_similar_route(app: FastAPI, state: _State) -> None:
    """``GET /api/tracks/{id}/similar``: the nearest stored vectors of a stored track."""

    @app.get("/api/tracks/{track_id}/similar")
    def similar_tracks(track_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> dict:
        tid = _parse_id(track_id)
        conn = state.conn()
        if database.track(conn, tid) is None:
            raise HTTPException(status_code=404, detail="track not found")
        neighbours = state.ready_neighbours()
        try:
            pairs = neighbours.similar(tid, max(k, REFERENCE_RANK))
        except KeyError:
            raise HTTPException(status_code=404, detail="this track has no vector in the index") from None
        return {"track_id": tid, "k": k, **_results(conn, [(t, s) for t, s in pairs if t != tid], k)}


def _add_upload_route(app: FastAPI, state: _State, embedder: upload.UploadEmbedder | None,
                      max_upload_bytes: int) -> None:
    """``POST /api/similar-to-file``: the nearest stored vectors of an uploaded file (the body, read in chunks
    and refused past ``max_upload_bytes``; checked as :mod:`spotifai.app.upload` describes)."""

    @app.post("/api/similar-to-file")
    async def similar_to_file(request: Request, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> Response:
        try:
            if embedder is None:
                raise upload.UploadError(503, "uploads are off on this server")
            upload.check_request(request.headers.get("content-type"), request.headers.get("content-length"),
                                 max_upload_bytes)
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_upload_bytes:
                    raise upload.UploadError(413, f"the file is larger than {max_upload_bytes // (1024 * 1024)} MB")
                chunks.append(chunk)
            data = b"".join(chunks)
            suffix = upload.check_body(data, max_upload_bytes)
            vector = await run_in_threadpool(embedder.embed, data, suffix)
        except upload.UploadError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        neighbours = await run_in_threadpool(state.ready_neighbours)
        if not hasattr(neighbours, "nearest"):
            raise HTTPException(status_code=503, detail="this index cannot search by vector")
        pairs = await run_in_threadpool(neighbours.nearest, vector, max(k, REFERENCE_RANK))  # type: ignore[attr-defined]
        return JSONResponse({"k": k, **await run_in_threadpool(_results, state.conn(), pairs, k)})


def _add_audio_route(app: FastAPI, state: _State) -> None:
    """``GET``/``HEAD /api/tracks/{id}/audio``: the track's file, only where :func:`guards.servable_audio`
    allows it, with Range requests checked by :func:`guards.check_range`."""

    @app.api_route("/api/tracks/{track_id}/audio", methods=["GET", "HEAD"])
    def track_audio(track_id: str, request: Request) -> Response:
        conn = state.conn()
        row = database.track(conn, _parse_id(track_id))
        if row is None:
            raise HTTPException(status_code=404, detail="track not found")
        path = guards.servable_audio(conn, row.get("audio_path"))
        if path is None:
            raise HTTPException(status_code=404, detail="no audio for this track")
        guards.check_range(request, path.stat().st_size)
        media_type = AUDIO_MEDIA_TYPES.get(Path(row["audio_path"]).suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=media_type, headers={"cache-control": "private, max-age=3600"})


def _add_api_not_found(app: FastAPI) -> None:
    """Any other ``/api/`` path and method: the JSON 404."""

    @app.api_route("/api/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    def api_not_found(rest: str) -> Response:
        raise HTTPException(status_code=404, detail="not found")


def _results(conn: sqlite3.Connection, pairs: list[tuple[int, float]], k: int) -> dict:
    """The first ``k`` of ``pairs`` with their metadata, and the bar's reference (see the module docstring)."""
    reference = pairs[min(len(pairs), REFERENCE_RANK) - 1][1] if len(pairs) > k else None
    by_id = {t["id"]: t for t in database.tracks(conn, [t for t, _ in pairs[:k]])}
    results = [
        {
            "id": t,
            "title": by_id[t]["title"],
            "artist": by_id[t]["artist"],
            "album": by_id[t]["album"],
            "similarity": round(s, 4),
            "relative": round(min(1.0, max(0.0, (s - reference) / (1 - reference))), 4)
            if reference is not None and reference < 1 else round(max(0.0, s), 4),
            "has_audio": bool(by_id[t]["audio_path"]) and (by_id[t]["duration"] or 0) > 0,
        }
        for t, s in pairs[:k]
        if t in by_id
    ]
    return {"reference": None if reference is None else round(reference, 4), "reference_rank":
            min(len(pairs), REFERENCE_RANK), "results": results}


class _HeadersMiddleware:
    """Adds the security headers (CSP, nosniff, ...) to every HTTP response. Pure ASGI (cheap)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def serve(
    database_path: str | Path,
    experiment: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    index_path: str | Path | None = None,
    chroma_host: str | None = None,
    chroma_port: int | None = None,
    space: str = "projections",
    log_level: str = "info",
    allowed_hosts: tuple[str, ...] | list[str] = (),
    uploads: bool = True,
    max_upload_bytes: int = upload.MAX_UPLOAD_BYTES,
) -> None:
    """Run the demo with uvicorn until interrupted (see :func:`create_app` for the arguments). Answered hosts:
    :data:`DEFAULT_ALLOWED_HOSTS`, ``host`` itself unless it is a wildcard address, and ``allowed_hosts``."""
    import uvicorn

    start = time.perf_counter()
    extra = [host] if host not in ("", "0.0.0.0", "::") else []
    app = create_app(
        database_path,
        experiment,
        index_path=index_path,
        chroma_host=chroma_host,
        chroma_port=chroma_port,
        space=space,
        allowed_hosts=(*DEFAULT_ALLOWED_HOSTS, *(f"[{h}]" if ":" in h else h for h in extra), *allowed_hosts),
        uploads=uploads,
        max_upload_bytes=max_upload_bytes,
    )
    log.info("app built in %.2f s; open http://%s:%d/", time.perf_counter() - start, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
