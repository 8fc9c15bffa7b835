"""The SQLite side of ingestion: one transaction per source, the popularity recount, bulk-load mode."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from spotifai import database

log = logging.getLogger("spotifai.ingest")

# Secondary indexes that bulk_load() drops and re-creates (all are in schema.sql).
BULK_INDEXES = ("playlist_tracks_track", "tracks_artist", "tracks_album", "tracks_popularity")
_POPULARITY_STALE = "popularity_stale"  # meta key: memberships changed since popularity was last recounted
_BULK_WAL_PAGES = 20_000  # WAL auto-checkpoint interval inside bulk_load() (pages; 80 MB of 4 KiB pages)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception)."""
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()


def popularity_is_stale(conn: sqlite3.Connection) -> None:
    """Mark popularity for a recount (inside the transaction that changes memberships)."""
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (_POPULARITY_STALE,))


def update_popularity(conn: sqlite3.Connection) -> None:
    """popularity = number of playlist entries, recounted from the DB for every track in a playlist (one
    set-based UPDATE; tracks in no playlist keep theirs) when memberships changed since the last recount.

    What changed is not remembered in this process: every transaction that changes memberships also sets the meta
    key ``popularity_stale``, and the recount clears it in its own transaction. A run killed between two playlist
    commits leaves the key set, so the next run recounts, even if it finds every playlist unchanged."""
    if database.get_meta(conn, _POPULARITY_STALE) is None:
        return
    with transaction(conn):
        conn.execute(
            "UPDATE tracks SET popularity = c.n FROM (SELECT track_id, COUNT(*) AS n FROM playlist_tracks"
            " GROUP BY track_id) AS c WHERE tracks.id = c.track_id AND tracks.popularity IS NOT c.n"
        )
        conn.execute("DELETE FROM meta WHERE key = ?", (_POPULARITY_STALE,))


@contextmanager
def bulk_load(conn: sqlite3.Connection) -> Iterator[None]:
    """Bulk-load mode for many MPD slices (or any big batch of sources) in a row.

    Inside, the secondary indexes of ``BULK_INDEXES`` (membership by track, tracks by artist / album /
    popularity) are dropped: each file's transaction then only appends rows instead of updating those B-trees at
    random places (which dirties nearly every index page in every transaction once the index outgrows the page
    cache). On exit the indexes are re-created from their original SQL (one sort each), popularity is updated
    before the popularity index is rebuilt, and the caller's transactions were one per file as usual. Dropping an
    index changes no data: the DB is valid at every point; if the process dies inside,
    :func:`spotifai.database.connect` re-creates the missing indexes (schema.sql). Worth it when the batch is at
    least as big as what the DB holds."""
    dropped: dict[str, str] = {}  # dropped index name -> its SQL
    # Fewer WAL checkpoints: the pages that every file's transaction dirties again (the URI index, the search
    # index) are copied into the DB file once per _BULK_WAL_PAGES pages of WAL instead of at nearly every commit.
    wal_pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    if 0 < wal_pages < _BULK_WAL_PAGES:
        conn.execute(f"PRAGMA wal_autocheckpoint = {_BULK_WAL_PAGES}")
    try:
        with transaction(conn):
            for name in BULK_INDEXES:
                row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
                if row is not None and row[0]:
                    dropped[name] = row[0]
                    conn.execute(f"DROP INDEX {name}")
        log.info("bulk load: dropped indexes %s", ", ".join(dropped) or "(none)")
        yield
    finally:
        if 0 < wal_pages < _BULK_WAL_PAGES:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_pages)}")
        if dropped:
            _recreate_indexes(conn, dropped)


def _recreate_indexes(conn: sqlite3.Connection, dropped: dict[str, str]) -> None:
    # CREATE INDEX sorts in chunks of the page cache's size: small chunks are 3x faster here than one big
    # in-memory sort (cache-friendly), so the cache is small while the indexes are built.
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA cache_size = -2000")
    try:
        later = {k: v for k, v in dropped.items() if k == "tracks_popularity"}
        with transaction(conn):
            for name, sql in dropped.items():
                if name not in later:
                    conn.execute(sql)
        update_popularity(conn)  # cheaper before the popularity index exists
        with transaction(conn):
            for sql in later.values():
                conn.execute(sql)
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
