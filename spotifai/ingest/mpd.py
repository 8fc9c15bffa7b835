"""Spotify Million Playlist Dataset slices: finding, parsing and writing them.

A slice is ``{"playlists": [{"pid", "name", "tracks": [{"pos", "track_uri", "track_name", "artist_name",
"album_name", "duration_ms"}]}]}``; each playlist becomes ``source_key = 'mpd:<pid>'``, each track is keyed by its
Spotify URI (no audio unless an audio map gives one).

Speed: the writer keeps dicts of name/URI -> id for artists, albums, tracks and playlists for the whole run
(:class:`MpdCaches`), assigns ids itself, resolves each distinct track once per file (the per-entry steps run in
C: ``map`` / ``zip`` / ``dict``), and writes each file with a few ``executemany`` calls (memberships: one statement
per playlist, its track ids unpacked by ``json_each``); many new tracks are indexed for search with one
INSERT ... SELECT. A well-formed slice is decoded by msgspec straight into typed structs (3x faster than orjson to
dicts, and attribute access in the loop); a slice that does not fit them (invalid JSON, a playlist without
"pid", an entry without a string "track_uri", ...) is parsed again with orjson, which gives the error position,
and its bad playlists / entries are reported and skipped.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson

from spotifai.ingest.db import popularity_is_stale
from spotifai.ingest.parsers import text as _text
from spotifai.ingest.summary import IngestSummary


def mpd_files(path: Path) -> list[Path]:
    """The slice files of ``path``: the file itself, or a folder's ``mpd.slice.*.json`` (else its ``*.json``)."""
    if path.is_dir():
        files = sorted(path.glob("mpd.slice.*.json")) or sorted(path.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"{path}: no mpd.slice.*.json files in this folder")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return [path]


# ------------------------------------------------------------------------------------------- parsing


class MpdTrack(msgspec.Struct, gc=False):
    """One playlist entry of an MPD slice (other keys are ignored). Only ``track_uri`` is typed: the other values
    are used as the JSON gives them, as the lenient path does."""

    track_uri: Annotated[str, msgspec.Meta(min_length=1)]
    track_name: Any = None
    artist_name: Any = None
    album_name: Any = None
    duration_ms: Any = None
    pos: Any = None


class MpdPlaylist(msgspec.Struct, gc=False):
    pid: int | str
    tracks: list[MpdTrack]
    name: Any = None


class _MpdSlice(msgspec.Struct, gc=False):
    playlists: list[MpdPlaylist]


# A slice of any other shape (a track without a string "track_uri", a playlist without "pid" or "tracks", ...)
# fails this decoder and goes through _parse_lenient, which reports and skips the bad parts.
_MPD_DECODER = msgspec.json.Decoder(_MpdSlice)
_TRACKS = attrgetter("tracks")
_URI = attrgetter("track_uri")
_POS = attrgetter("pos")


@dataclass
class MpdSlice:
    playlists: list[MpdPlaylist] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # playlists and entries of the wrong shape (skipped)
    failure: str | None = None  # the file is not a slice (invalid JSON, no "playlists" list)


def parse_slice(path: Path, raw: bytes) -> MpdSlice:
    """The playlists of one slice (``path`` names it in messages), each sorted by ``pos``."""
    try:  # fast path: a well-formed slice decodes straight into structs
        return MpdSlice(_ordered(_MPD_DECODER.decode(raw).playlists))
    except msgspec.DecodeError:  # invalid JSON or an unexpected shape: parse leniently (precise errors)
        return _parse_lenient(path, raw)


def _parse_lenient(path: Path, raw: bytes) -> MpdSlice:
    """A slice that does not decode as a well-formed one: invalid JSON fails the file (error with the position);
    playlists and entries of the wrong shape are reported and skipped."""
    result = MpdSlice()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        result.failure = (f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}):"
                          f" {exc.msg}; nothing from this file was written")
        return result
    playlists = data.get("playlists") if isinstance(data, dict) else None
    if not isinstance(playlists, list):
        result.failure = f"{path}: not an MPD slice (no top-level \"playlists\" list)"
        return result
    for index, pl in enumerate(playlists):
        if not isinstance(pl, dict) or not isinstance(pl.get("tracks"), list) or pl.get("pid") is None:
            result.errors.append(f"{path}: playlist #{index}: not an object with \"pid\" and a \"tracks\" list; skipped")
            continue
        tracks = []
        for item in pl["tracks"]:
            uri = item.get("track_uri") if isinstance(item, dict) else None
            if not isinstance(uri, str) or not uri:
                result.errors.append(f"{path}: playlist {pl['pid']}: a track without \"track_uri\"; skipped")
                continue
            tracks.append(MpdTrack(uri, item.get("track_name"), item.get("artist_name"), item.get("album_name"),
                                   item.get("duration_ms"), item.get("pos")))
        result.playlists.append(MpdPlaylist(pl["pid"], tracks, pl.get("name")))
    _ordered(result.playlists)
    return result


def _ordered(playlists: list[MpdPlaylist]) -> list[MpdPlaylist]:
    """Sorts each playlist's entries by ``pos`` unless they look ordered already (first 0, last n - 1); entries
    without (comparable) positions keep the file's order. In place; returns ``playlists``."""
    for pl in playlists:
        items = pl.tracks
        if items and not (items[0].pos == 0 and items[-1].pos == len(items) - 1):
            try:
                pl.tracks = sorted(items, key=_POS)
            except TypeError:
                pass
    return playlists


# ------------------------------------------------------------------------------------------- writing


@dataclass
class MpdCaches:
    """Name / URI -> id of everything in the DB, kept for a whole run (dropped after a rolled-back file)."""

    artists: dict[str, int]
    albums: dict[tuple[str, int | None], int]
    # uri -> (id, title, artist name, album title, artist id, album id)
    tracks: dict[str, tuple[int, str, str | None, str | None, int | None, int | None]]
    playlists: dict[str, int]  # source key -> id

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> MpdCaches:
        return cls(
            artists={r[0]: r[1] for r in conn.execute("SELECT name, id FROM artists")},
            albums={(r[0], r[1]): r[2] for r in conn.execute("SELECT title, artist_id, id FROM albums")},
            tracks={r[0]: r[1:] for r in conn.execute(
                "SELECT t.uri, t.id, t.title, ar.name, al.title, t.artist_id, t.album_id FROM tracks t"
                " LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id")},
            playlists={r[0]: r[1] for r in conn.execute("SELECT source_key, id FROM playlists")},
        )


@dataclass
class _Rows:
    """What one slice adds and changes, written by :func:`_insert`."""

    next_ids: dict[str, int]  # table -> the next free id
    new_artists: list[tuple[int, str]] = field(default_factory=list)
    new_albums: list[tuple[int, str, int | None]] = field(default_factory=list)
    new_tracks: list[tuple] = field(default_factory=list)
    changed_tracks: list[tuple] = field(default_factory=list)
    unchanged_tracks: int = 0
    new_playlists: list[tuple[int, str, str]] = field(default_factory=list)
    renamed: list[tuple[str, int]] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    members: list[tuple[int, str]] = field(default_factory=list)  # (playlist id, JSON array of its track ids)
    n_members: int = 0


def write_slice(conn: sqlite3.Connection, summary: IngestSummary, caches: MpdCaches, path: Path,
                playlists: list[MpdPlaylist]) -> None:
    """Write one parsed slice (inside the caller's transaction), counting into ``summary``."""
    rows = _Rows({t: int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0]) + 1
                  for t in ("artists", "albums", "tracks", "playlists")})
    first_new_track = rows.next_ids["tracks"]
    ids = _resolve_tracks(caches, playlists, rows)
    _resolve_playlists(conn, summary, caches, path, playlists, ids, rows)
    _insert(conn, rows, first_new_track)
    summary.tracks_added += len(rows.new_tracks)
    summary.tracks_updated += len(rows.changed_tracks)
    summary.tracks_unchanged += rows.unchanged_tracks
    summary.memberships_written += rows.n_members


def _resolve_tracks(caches: MpdCaches, playlists: list[MpdPlaylist], rows: _Rows) -> list[int]:
    """The track id of every entry of the slice, in order; new artists, albums and tracks go to ``rows``.

    Each distinct track of the file is resolved once, in order of first appearance (new tracks get the next ids;
    the first entry of a URI gives its names). The per-entry steps run in C (map / zip / dict); only the distinct
    tracks go through this Python loop (the same check done with map / operator.ne measured slower: at this size
    the work is memory-bound, and more passes over the entries cost more than the bytecode). Locals, not
    attributes, in the loop: it is the hot path of a big MPD run."""
    artists, albums, tracks = caches.artists, caches.albums, caches.tracks
    next_artist, next_album, next_track = (rows.next_ids[t] for t in ("artists", "albums", "tracks"))
    new_artists, new_albums, new_tracks, changed_tracks = (
        rows.new_artists, rows.new_albums, rows.new_tracks, rows.changed_tracks)
    unchanged_tracks = 0
    entries = list(chain.from_iterable(map(_TRACKS, playlists)))
    uris = list(map(_URI, entries))
    first_entry = dict(zip(reversed(uris), reversed(entries), strict=True))  # uri -> its first entry in the file
    in_file: dict[str, int] = {}  # uri -> id
    for uri in dict.fromkeys(uris):
        t = first_entry[uri]
        title, artist, album = t.track_name, t.artist_name, t.album_name
        if type(title) is not str:
            title = _text(title)
        if type(artist) is not str:
            artist = _text(artist)
        if type(album) is not str:
            album = _text(album)
        title = title or uri
        artist = artist or None
        album = album or None
        rec = tracks.get(uri)
        if rec is not None and rec[1] == title and rec[2] == artist and rec[3] == album:
            unchanged_tracks += 1
            in_file[uri] = rec[0]
            continue
        aid = None
        if artist is not None:
            aid = artists.get(artist)
            if aid is None:
                aid = artists[artist] = next_artist
                next_artist += 1
                new_artists.append((aid, artist))
        alid = None
        if album is not None:
            alid = albums.get((album, aid))
            if alid is None:
                alid = albums[(album, aid)] = next_album
                next_album += 1
                new_albums.append((alid, album, aid))
        if rec is None:
            tid = next_track
            next_track += 1
            ms = t.duration_ms
            new_tracks.append((tid, uri, title, aid, alid, ms / 1000 if isinstance(ms, int | float) and ms > 0 else None))
        else:
            tid = rec[0]
            if (rec[1], rec[4], rec[5]) != (title, aid, alid):
                changed_tracks.append((title, aid, alid, tid))
            else:
                unchanged_tracks += 1
        tracks[uri] = (tid, title, artist, album, aid, alid)
        in_file[uri] = tid
    rows.next_ids.update(artists=next_artist, albums=next_album, tracks=next_track)
    rows.unchanged_tracks += unchanged_tracks
    return list(map(in_file.__getitem__, uris))


def _resolve_playlists(conn: sqlite3.Connection, summary: IngestSummary, caches: MpdCaches, path: Path,
                       playlists: list[MpdPlaylist], ids: list[int], rows: _Rows) -> None:
    """New, renamed and replaced playlists and their memberships go to ``rows``; unchanged ones are counted. A
    ``pid`` seen before in the same file is an error (the later playlist is skipped)."""
    s, playlist_ids = summary, caches.playlists
    end = 0
    first_of: dict[str, int] = {}  # source key -> index of its first playlist in this file
    for index, pl in enumerate(playlists):
        start, end = end, end + len(pl.tracks)
        tids = ids[start:end]
        key = f"mpd:{pl.pid if type(pl.pid) in (int, str) else _text(pl.pid)}"
        if first_of.setdefault(key, index) != index:
            s.error(f"{path}: playlist #{index}: pid {key[4:]} again (first at playlist #{first_of[key]}); skipped")
            continue
        name = pl.name if type(pl.name) is str else _text(pl.name)
        name = name or key
        pid = playlist_ids.get(key)
        if pid is None:
            pid = playlist_ids[key] = rows.next_ids["playlists"]
            rows.next_ids["playlists"] += 1
            rows.new_playlists.append((pid, key, name))
            s.playlists_added += 1
        else:
            row = conn.execute("SELECT name FROM playlists WHERE id = ?", (pid,)).fetchone()
            old = [r[0] for r in conn.execute(
                "SELECT track_id FROM playlist_tracks WHERE playlist_id = ? ORDER BY position", (pid,))]
            if old == tids and row is not None and row[0] == name:
                s.playlists_unchanged += 1
                continue
            if row is not None and row[0] != name:
                rows.renamed.append((name, pid))
            rows.replaced.append(pid)
            s.playlists_updated += 1
        if tids:
            rows.members.append((pid, orjson.dumps(tids).decode()))
            rows.n_members += len(tids)


def _insert(conn: sqlite3.Connection, rows: _Rows, first_new_track: int) -> None:
    if rows.members or rows.replaced:
        popularity_is_stale(conn)
    conn.executemany("INSERT INTO artists(id, name) VALUES (?, ?)", rows.new_artists)
    conn.executemany("INSERT INTO albums(id, title, artist_id) VALUES (?, ?, ?)", rows.new_albums)
    # Many new tracks: index them for search with one INSERT ... SELECT instead of the per-row trigger (the
    # trigger is dropped and re-created inside this transaction, so no other connection ever sees it missing).
    trigger = _search_insert_trigger(conn) if len(rows.new_tracks) > 100 else None
    if trigger is not None:
        conn.execute("DROP TRIGGER track_search_insert")
    conn.executemany(
        "INSERT INTO tracks(id, uri, title, artist_id, album_id, duration) VALUES (?, ?, ?, ?, ?, ?)", rows.new_tracks
    )
    if trigger is not None:
        conn.execute(
            "INSERT INTO track_search(rowid, title, artist, album)"
            " SELECT id, title, artist, album FROM track_text WHERE id >= ?", (first_new_track,)
        )
        conn.execute(trigger)
    conn.executemany("UPDATE tracks SET title = ?, artist_id = ?, album_id = ? WHERE id = ?", rows.changed_tracks)
    conn.executemany("INSERT INTO playlists(id, source_key, name) VALUES (?, ?, ?)", rows.new_playlists)
    conn.executemany("UPDATE playlists SET name = ? WHERE id = ?", rows.renamed)
    conn.executemany("DELETE FROM playlist_tracks WHERE playlist_id = ?", ((p,) for p in rows.replaced))
    # One statement per playlist; SQLite unpacks the JSON array of track ids (3x less CPU than one bound row per
    # membership). Positions are 0 .. n-1 in playlist order.
    conn.executemany(
        "INSERT INTO playlist_tracks(playlist_id, position, track_id) SELECT ?, key, value FROM json_each(?)",
        rows.members,
    )


def _search_insert_trigger(conn: sqlite3.Connection) -> str | None:
    """The SQL of schema.sql's search-index insert trigger, or None when this DB indexes new tracks otherwise (then
    nothing may be deferred)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'track_search_insert'").fetchone()
    if row is None or "INSERT INTO track_search(rowid, title, artist, album)" not in row[0]:
        return None
    return row[0]
