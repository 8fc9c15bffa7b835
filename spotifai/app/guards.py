"""What the web demo refuses, in one place: audio files outside the library, malformed Range headers (as the
JSON errors the API promises) and requests for host names it does not serve (DNS rebinding).

See :mod:`spotifai.app.server` for the API these guard.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from spotifai import database
from spotifai.printable import printable

#: Host names answered by default (the ``Host`` header without its port).
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def servable_audio(conn: sqlite3.Connection, stored: str | None) -> Path | None:
    """The real file to serve for a track's stored audio path, or None. The path with every symbolic link
    resolved must be a regular file, and

    * at or below a location ingestion recorded (:func:`database.audio_locations`: the ingested folders, single
      files ingested from elsewhere), or else
    * for a track whose stored path lies under no recorded location (written by something other than
      ``spotifai ingest``, e.g. the demo corpus, or before locations were recorded): below the resolved folder
      of its stored path.

    A track that was ingested from the library but whose file now leads elsewhere (a symbolic link retargeted to
    /etc/passwd or to another user's files) is refused."""
    if not stored:
        return None
    try:
        real = Path(stored).resolve(strict=True)
        if not real.is_file():
            return None
        if database.audio_locations(conn, real):
            return real
        if database.audio_locations(conn, os.path.abspath(stored)):
            return None  # ingested from the library, now somewhere else
        return real if real.is_relative_to(Path(stored).parent.resolve()) else None
    except (OSError, RuntimeError):  # missing, unreadable, a symbolic link loop
        return None


def check_range(request: Request, size: int) -> None:
    """The JSON error (400 / 416) for a Range header that Starlette's FileResponse would refuse with a plain-text
    body; a valid one (or none, or one an If-Range makes ignored) passes."""
    header = request.headers.get("range")
    parse = getattr(FileResponse, "_parse_range_header", None)
    if header is None or "if-range" in request.headers or parse is None:
        return
    from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

    try:
        parse(header, size)
    except MalformedRangeHeader as exc:
        raise HTTPException(status_code=400, detail=f"invalid Range header: {exc.content}") from None
    except RangeNotSatisfiable:
        raise HTTPException(status_code=416, detail="requested range not satisfiable",
                            headers={"content-range": f"bytes */{size}"}) from None


def _host_name(header: str) -> str:
    """The host part of a Host header, lower case, without port and trailing dot ('[::1]' keeps its brackets)."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostMiddleware:
    """Answers only requests whose Host header names an allowed host (400 JSON otherwise). Pure ASGI."""

    def __init__(self, app, allowed: tuple[str, ...] | None = None) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        names = DEFAULT_ALLOWED_HOSTS if allowed is None else allowed
        self.any = "*" in names
        self.allowed = {_host_name(h) for h in names if h != "*"}

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and not self.any:
            raw = next((v for k, v in scope.get("headers", []) if k == b"host"), None)
            host = _host_name(raw.decode("latin-1")) if raw is not None else ""
            if host not in self.allowed:
                detail = (f"host {printable(host, 100)!r} is not served here (allowed: {', '.join(sorted(self.allowed))};"
                          " add names with `spotifai serve --allowed-host NAME`)")
                response = JSONResponse({"detail": detail}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
