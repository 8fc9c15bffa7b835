"""The few tracks the report figures label (similarity matrices, the index notebook, the embedding map).

The demo corpus ships a hand-made ``curated.json``; any other library gets tracks picked from its DB: the
most popular tracks of the largest playlists, so the figures work on a corpus nobody curated.
"""

from __future__ import annotations

import json
import sqlite3
import string
from pathlib import Path

FIELDS = ("symbol", "track_id", "title", "artist", "genre")


def pick_tracks(conn: sqlite3.Connection, n_playlists: int = 4, per_playlist: int = 2) -> list[dict]:
    """``per_playlist`` tracks (most popular first, then lowest id) of each of the ``n_playlists`` largest
    playlists with audio, each track at most once: [{symbol "A1", track_id, title, artist, album, genre,
    playlist}]. ``genre`` falls back to the album, then to the playlist name, so every label is known."""
    from spotifai import database

    names = database.playlist_names(conn)
    playlists = sorted(database.playlists_with_audio(conn, min_tracks=per_playlist).items(),
                       key=lambda item: (-len(item[1]), item[0]))
    picked: list[dict] = []
    seen: set[int] = set()
    for letter, (pid, members) in zip(string.ascii_uppercase, playlists[:n_playlists], strict=False):
        rows = sorted(database.tracks(conn, [t for t in members if t not in seen]),
                      key=lambda r: (-(r["popularity"] or 0), r["id"]))[:per_playlist]
        for j, r in enumerate(rows, start=1):
            seen.add(r["id"])
            picked.append({
                "symbol": f"{letter}{j}", "track_id": r["id"], "title": r["title"], "artist": r["artist"] or "",
                "album": r["album"] or "", "genre": r["genre"] or r["album"] or names.get(pid, ""),
                "playlist": names.get(pid, ""),
            })
    return picked


def default_path(database_path: str | Path) -> Path:
    """Where a corpus keeps its curated list: ``curated.json`` beside its music DB (as the demo corpus does)."""
    return Path(database_path).parent / "curated.json"


def _mismatch(conn: sqlite3.Connection, data: list[dict]) -> str | None:
    """Why ``data`` does not describe the DB of ``conn`` (a track id that is missing or has another title or
    artist), or None when every entry matches."""
    from spotifai import database

    for c in data:
        row = database.track(conn, int(c["track_id"]))
        if row is None:
            return f"track {c['track_id']} is not in this database"
        if (row["title"], row["artist"] or "") != (c["title"], c["artist"] or ""):
            return f"track {c['track_id']} is {row['title']!r} here, not {c['title']!r}"
    return None


def curated_tracks(conn: sqlite3.Connection, path: str | Path | None) -> tuple[list[dict], str]:
    """The curated tracks of ``path`` (a JSON list of {symbol, track_id, title, artist, genre}) when it
    exists and describes this DB (each id has that title and artist), else :func:`pick_tracks`; and where they
    came from, for the figure captions (when a file was not used, it says why). ValueError naming the file
    when it is not such a list."""
    picked = "picked: the most popular tracks of the largest playlists"
    if path is None or not Path(path).is_file():
        return pick_tracks(conn), f"{picked} (no curated file)"
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(c, dict) and set(FIELDS) <= set(c) for c in data):
        raise ValueError(f"{path}: expected a JSON list of objects with the keys {', '.join(FIELDS)}")
    why = _mismatch(conn, data)
    if why is not None:
        return pick_tracks(conn), f"{picked} ({path} describes another database: {why})"
    return data, f"curated in {path}"
