"""The SQLite music database: tracks, artists, albums, playlists and ordered playlist membership.

Every later stage reads this file. It knows nothing of audio or torch: a track "has audio" when the
ingestion step found a readable file for it and recorded its duration (``audio_path`` and ``duration > 0``).

Connections are cheap and must not be shared across processes: each DataLoader worker calls
:func:`connect` itself. The schema lives in ``schema.sql`` and is applied (idempotently) on connect.

Splits are deterministic functions of ids and a seed (a hash, not the RNG), so every process, worker and
rank agrees on them without communicating:

* held-out tracks: a fraction of the tracks with audio that never appear in any training or validation
  batch; retrieval is evaluated on them only.
* playlists: split into train / validation by hash; held-out tracks are removed from both.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SCHEMA_VERSION = "1"

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """A database file that cannot be opened or is not a spotifai database."""


def _schema_sql() -> str:
    return resources.files("spotifai").joinpath("schema.sql").read_text(encoding="utf-8")


def connect(path: str | Path, *, create: bool = True, readonly: bool = False) -> sqlite3.Connection:
    """Open (and, if ``create``, initialize) the music DB at ``path``.

    Foreign keys on, WAL journal, rows as :class:`sqlite3.Row`. ``readonly`` opens with ``mode=ro``
    (used by the web demo and ``spotifai search``) and creates nothing: not even the folder. A WAL database
    in a folder this process cannot write to (another user's library, a read-only mount) cannot get the
    ``-shm`` file that WAL readers need; it is then opened ``immutable`` (nothing written, no locks), with a
    warning when a ``-wal`` file holds transactions that were never checkpointed (they are not seen).
    Raises :class:`DatabaseError` naming the file when it does not exist (and ``create`` is false) or is not
    a SQLite database.
    """
    path = Path(path)
    if not path.exists() and (readonly or not create):
        raise DatabaseError(f"{path}: music database not found (build it with `spotifai demo-corpus` or `spotifai ingest`)")
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if readonly:
            conn = _connect_readonly(path)
        else:
            conn = sqlite3.connect(path, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_schema_sql())
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            conn.commit()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: not a usable spotifai music database ({exc})") from exc
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A ``mode=ro`` connection that has read the tracks table once; ``immutable=1`` when the first read fails
    because the WAL side files cannot be created or opened for writing (see :func:`connect`)."""
    uri = "file:" + urllib.parse.quote(str(path.resolve()), safe="/")
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM tracks LIMIT 1")
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        code = getattr(exc, "sqlite_errorname", "")
        if not code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            raise
        first = exc
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM tracks LIMIT 1")
    except sqlite3.DatabaseError:
        conn.close()
        raise first from None
    wal = path.with_name(path.name + "-wal")
    try:
        pending = wal.stat().st_size > 0
    except OSError:
        pending = False
    log.info("%s: opened immutable (read-only folder: %s)", path, first)
    if pending:
        log.warning("%s: read-only folder and a non-empty %s: transactions not yet checkpointed into the "
                    "database are not visible", path, wal.name)
    return conn


# --------------------------------------------------------------------------------------------- writes


def get_or_create_artist(conn: sqlite3.Connection, name: str) -> int:
    """Id of the artist called ``name`` (created if new)."""
    row = conn.execute("SELECT id FROM artists WHERE name = ?", (name,)).fetchone()
    if row:
        return int(row[0])
    return int(conn.execute("INSERT INTO artists(name) VALUES (?)", (name,)).lastrowid)


def get_or_create_album(conn: sqlite3.Connection, title: str, artist_id: int | None) -> int:
    """Id of the album ``title`` by ``artist_id`` (created if new)."""
    row = conn.execute(
        "SELECT id FROM albums WHERE title = ? AND artist_id IS ?", (title, artist_id)
    ).fetchone()
    if row:
        return int(row[0])
    return int(conn.execute("INSERT INTO albums(title, artist_id) VALUES (?, ?)", (title, artist_id)).lastrowid)


def upsert_track(
    conn: sqlite3.Connection,
    *,
    uri: str,
    title: str,
    artist: str | None = None,
    album: str | None = None,
    audio_path: str | None = None,
    duration: float | None = None,
    popularity: float | None = None,
    genre: str | None = None,
) -> int:
    """Insert or update the track with source key ``uri``; returns its id.

    Fields given as ``None`` keep their stored value on update (so a playlist dataset that lists a track
    without audio never erases the audio path a folder scan found). ``duration`` in seconds.
    """
    artist_id = get_or_create_artist(conn, artist) if artist else None
    album_id = get_or_create_album(conn, album, artist_id) if album else None
    row = conn.execute("SELECT id FROM tracks WHERE uri = ?", (uri,)).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO tracks(uri, title, artist_id, album_id, audio_path, duration, popularity, genre)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uri, title, artist_id, album_id, audio_path, duration, popularity or 0.0, genre),
        )
        return int(cur.lastrowid)
    track_id = int(row[0])
    conn.execute(
        "UPDATE tracks SET title = ?, artist_id = COALESCE(?, artist_id), album_id = COALESCE(?, album_id),"
        " audio_path = COALESCE(?, audio_path), duration = COALESCE(?, duration),"
        " popularity = COALESCE(?, popularity), genre = COALESCE(?, genre) WHERE id = ?",
        (title, artist_id, album_id, audio_path, duration, popularity, genre, track_id),
    )
    return track_id


def upsert_playlist(conn: sqlite3.Connection, source_key: str, name: str, track_ids: Sequence[int]) -> int:
    """Create or replace the playlist ``source_key`` with the ordered ``track_ids``; returns its id.

    Re-ingesting the same source replaces the membership (idempotent). Duplicated tracks in one playlist
    are kept at their positions (real playlists contain them).
    """
    row = conn.execute("SELECT id FROM playlists WHERE source_key = ?", (source_key,)).fetchone()
    if row is None:
        playlist_id = int(
            conn.execute("INSERT INTO playlists(source_key, name) VALUES (?, ?)", (source_key, name)).lastrowid
        )
    else:
        playlist_id = int(row[0])
        conn.execute("UPDATE playlists SET name = ? WHERE id = ?", (name, playlist_id))
        conn.execute("DELETE FROM playlist_tracks WHERE playlist_id = ?", (playlist_id,))
    conn.executemany(
        "INSERT INTO playlist_tracks(playlist_id, position, track_id) VALUES (?, ?, ?)",
        ((playlist_id, pos, tid) for pos, tid in enumerate(track_ids)),
    )
    return playlist_id


def add_library_location(conn: sqlite3.Connection, location: str | Path) -> None:
    """Record a folder (or a single file) that audio was ingested from, resolved: the web demo serves the audio
    of such tracks only from real paths at or below these locations (see :func:`audio_locations`)."""
    conn.execute("INSERT OR IGNORE INTO library_roots(path) VALUES (?)", (str(Path(location).resolve()),))


def audio_locations(conn: sqlite3.Connection, path: str | Path) -> list[str]:
    """The recorded library locations that contain the absolute ``path`` (itself or a folder above it, compared
    as written: pass a resolved path to ask where a file really is); [] when none does, also for a DB that
    records none (written before they were recorded, or not by ingestion)."""
    path = Path(path)
    candidates = [str(path), *(str(p) for p in path.parents)]
    marks = ",".join("?" * len(candidates))
    try:
        return [r[0] for r in conn.execute(f"SELECT path FROM library_roots WHERE path IN ({marks})", candidates)]
    except sqlite3.OperationalError:  # an older DB opened read-only: no such table
        return []


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


# ---------------------------------------------------------------------------------------------- reads

_TRACK_COLUMNS = (
    "t.id AS id, t.uri AS uri, t.title AS title, ar.name AS artist, al.title AS album,"
    " t.audio_path AS audio_path, t.duration AS duration, t.popularity AS popularity, t.genre AS genre"
)
_TRACK_FROM = " FROM tracks t LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id"
_HAS_AUDIO = "t.audio_path IS NOT NULL AND t.duration > 0"


def track(conn: sqlite3.Connection, track_id: int) -> dict | None:
    """Metadata of one track as a dict (id, uri, title, artist, album, audio_path, duration, popularity,
    genre), or None when the id is unknown."""
    row = conn.execute(f"SELECT {_TRACK_COLUMNS}{_TRACK_FROM} WHERE t.id = ?", (int(track_id),)).fetchone()
    return dict(row) if row else None


def tracks(conn: sqlite3.Connection, track_ids: Iterable[int] | None = None, *, with_audio: bool = False) -> list[dict]:
    """Metadata of several tracks, in the order of ``track_ids`` (unknown ids are left out); all tracks
    (ordered by id) when ``track_ids`` is None. ``with_audio`` keeps only tracks with readable audio."""
    where = f" WHERE {_HAS_AUDIO}" if with_audio else ""
    if track_ids is None:
        rows = conn.execute(f"SELECT {_TRACK_COLUMNS}{_TRACK_FROM}{where} ORDER BY t.id").fetchall()
        return [dict(r) for r in rows]
    ids = [int(i) for i in track_ids]
    by_id: dict[int, dict] = {}
    for start in range(0, len(ids), 900):  # SQLite's host-parameter limit
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        cond = f"t.id IN ({marks})" + (f" AND {_HAS_AUDIO}" if with_audio else "")
        for r in conn.execute(f"SELECT {_TRACK_COLUMNS}{_TRACK_FROM} WHERE {cond}", chunk):
            by_id[r["id"]] = dict(r)
    return [by_id[i] for i in ids if i in by_id]


def track_ids_with_audio(conn: sqlite3.Connection) -> list[int]:
    """Ids of all tracks with readable audio, ascending."""
    return [r[0] for r in conn.execute(f"SELECT t.id FROM tracks t WHERE {_HAS_AUDIO} ORDER BY t.id")]


def playlist_tracks(conn: sqlite3.Connection, playlist_id: int, *, with_audio: bool = True) -> list[int]:
    """Track ids of a playlist in playlist order (duplicates removed, first occurrence kept)."""
    cond = f" AND {_HAS_AUDIO}" if with_audio else ""
    rows = conn.execute(
        f"SELECT pt.track_id FROM playlist_tracks pt JOIN tracks t ON t.id = pt.track_id"
        f" WHERE pt.playlist_id = ?{cond} ORDER BY pt.position",
        (int(playlist_id),),
    )
    return list(dict.fromkeys(r[0] for r in rows))


def playlists_with_audio(conn: sqlite3.Connection, min_tracks: int = 2) -> dict[int, list[int]]:
    """All playlists with at least ``min_tracks`` distinct tracks with audio: {playlist id: [track ids]}."""
    out: dict[int, list[int]] = {}
    rows = conn.execute(
        f"SELECT pt.playlist_id, pt.track_id FROM playlist_tracks pt JOIN tracks t ON t.id = pt.track_id"
        f" WHERE {_HAS_AUDIO} ORDER BY pt.playlist_id, pt.position"
    )
    for pid, tid in rows:
        members = out.setdefault(pid, [])
        if tid not in members:
            members.append(tid)
    return {pid: ids for pid, ids in out.items() if len(ids) >= min_tracks}


def playlist_names(conn: sqlite3.Connection) -> dict[int, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT id, name FROM playlists")}


def track_playlists(conn: sqlite3.Connection) -> dict[int, set[int]]:
    """{track id: set of playlist ids containing it}, for every track in any playlist."""
    out: dict[int, set[int]] = {}
    for pid, tid in conn.execute("SELECT playlist_id, track_id FROM playlist_tracks"):
        out.setdefault(tid, set()).add(pid)
    return out


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Row counts: tracks, tracks_with_audio, artists, albums, playlists, memberships."""
    one = lambda sql: int(conn.execute(sql).fetchone()[0])  # noqa: E731
    return {
        "tracks": one("SELECT COUNT(*) FROM tracks"),
        "tracks_with_audio": one(f"SELECT COUNT(*) FROM tracks t WHERE {_HAS_AUDIO}"),
        "artists": one("SELECT COUNT(*) FROM artists"),
        "albums": one("SELECT COUNT(*) FROM albums"),
        "playlists": one("SELECT COUNT(*) FROM playlists"),
        "memberships": one("SELECT COUNT(*) FROM playlist_tracks"),
    }


# ---------------------------------------------------------------------------------------------- splits


def _unit_hash(seed: int, kind: str, key: int) -> float:
    """A deterministic number in [0, 1) for (seed, kind, key): the same on every machine and process."""
    digest = hashlib.blake2b(f"{seed}:{kind}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


VALIDATION_RULES = ("playlists", "tracks")


@dataclass(frozen=True)
class Split:
    """A deterministic data split.

    ``train`` / ``validation``: {playlist id: [track ids with audio, held-out tracks removed]};
    ``heldout_tracks``: sorted ids of tracks never seen in training or validation batches.
    """

    train: dict[int, list[int]]
    validation: dict[int, list[int]]
    heldout_tracks: list[int] = field(default_factory=list)


def split(
    conn: sqlite3.Connection,
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    heldout_track_fraction: float = 0.2,
    min_tracks: int = 2,
    validation_by: str = "playlists",
) -> Split:
    """Split playlists into train / validation and set aside held-out evaluation tracks.

    A held-out track is removed from every playlist before the playlist split; playlists left with fewer
    than ``min_tracks`` tracks are dropped from both splits.

    ``validation_by``: "playlists" sends a ``validation_fraction`` of the playlists, whole, to validation (new
    playlists: right when a library has many); "tracks" sends a ``validation_fraction`` of the tracks instead,
    so validation groups are unseen tracks of the training playlists (with few playlists, e.g. one per
    album, this measures what evaluation asks: where does a new track land). Then ``validation[pid]`` holds
    the validation tracks of playlist ``pid`` (when at least ``min_tracks``) and ``train[pid]`` the others.
    The held-out tracks are the same for both rules.
    """
    if not 0 <= validation_fraction < 1 or not 0 <= heldout_track_fraction < 1:
        raise ValueError("validation_fraction and heldout_track_fraction must be in [0, 1)")
    if validation_by not in VALIDATION_RULES:
        raise ValueError(f"validation_by must be one of {', '.join(VALIDATION_RULES)}, got {validation_by!r}")
    if validation_by == "tracks" and heldout_track_fraction + validation_fraction >= 1:
        raise ValueError("with validation_by='tracks', heldout_track_fraction + validation_fraction must be < 1")
    unit = {t: _unit_hash(seed, "track", t) for t in track_ids_with_audio(conn)}
    heldout = sorted(t for t, u in unit.items() if u < heldout_track_fraction)
    validation_tracks: set[int] = set()
    if validation_by == "tracks":
        top = heldout_track_fraction + validation_fraction
        validation_tracks = {t for t, u in unit.items() if heldout_track_fraction <= u < top}
    heldout_set = set(heldout)
    train: dict[int, list[int]] = {}
    validation: dict[int, list[int]] = {}
    for pid, members in playlists_with_audio(conn, min_tracks=1).items():
        kept = [t for t in members if t not in heldout_set]
        if validation_by == "tracks":
            held_for_validation = [t for t in kept if t in validation_tracks]
            kept = [t for t in kept if t not in validation_tracks]
            if len(held_for_validation) >= min_tracks:
                validation[pid] = held_for_validation
            if len(kept) >= min_tracks:
                train[pid] = kept
            continue
        if len(kept) < min_tracks:
            continue
        target = validation if _unit_hash(seed, "playlist", pid) < validation_fraction else train
        target[pid] = kept
    return Split(train=train, validation=validation, heldout_tracks=heldout)
