"""Fill the music DB from a music folder, M3U/M3U8 and CSV playlists, and Spotify Million Playlist Dataset slices.

Sources and how they map to the DB (``spotifai/database.py``):

* **Folder**: every ``.wav .flac .ogg .mp3 .m4a .opus`` below it becomes a track with ``uri = 'file:<abs path>'``
  and ``audio_path = <abs path>``. Title / artist / album / genre come from the tags (mutagen), else from the
  path ``Artist/Album/NN Title.ext``. Duration (seconds) comes from libsndfile (``soundfile.info``), which also
  decodes the last frames to catch truncated files, else from mutagen (M4A). Unreadable files are skipped and
  listed with the reason.
* **M3U / M3U8**: one playlist per file (``source_key = 'm3u:<abs path>'``, name from ``#PLAYLIST:`` or the file
  name). Entries: relative (to the playlist's folder) or absolute paths, ``file://`` URLs, Windows backslashes;
  ``#EXTINF:<seconds>,<Artist> - <Title>`` is used when the path matches nothing. UTF-8 (BOM allowed), else
  Latin-1; any line ending. An entry pointing at an audio file not yet in the DB adds that file as a track.
* **CSV**: a header with ``playlist`` and ``path``, or ``playlist``, ``artist`` and ``title`` (both may be
  present: the path is tried first). Rows of one playlist keep their order. ``source_key = 'csv:<file>:<name>'``.
* **MPD**: ``mpd.slice.*.json`` files (or a folder of them): ``{"playlists": [{"pid", "name", "tracks": [{"pos",
  "track_uri", "track_name", "artist_name", "album_name", "duration_ms"}]}]}``; ``source_key = 'mpd:<pid>'``.
  Tracks are keyed by their Spotify URI and have no audio, unless an **audio map** (CSV with columns
  ``track_uri,path`` or JSON ``{uri: path}`` / ``[{"track_uri", "path"}]``) gives a file for some of them.
  A folder track (``file:`` URI) whose file is mapped to a Spotify track is merged into it.

Guarantees:

* Idempotent: ingesting the same sources again changes nothing (the summary then counts everything as
  unchanged). Re-ingesting a changed playlist replaces its membership.
* One transaction per source file (a folder counts as one source): a crash or a malformed file leaves the DB as
  it was before that file. Invalid JSON aborts its file with the file and the position of the error; malformed
  playlist lines are reported with file and line number and skipped; playlist entries that match no track are
  counted and listed, never silently dropped.
* Entry-level problems (an entry naming a file the system cannot look up, an unreadable audio file, a
  malformed line, a duplicate MPD ``pid``) are counted per entry with the file and line; the playlist keeps its
  other entries. Names are text whatever the source gives (MPD numbers, lists, objects: see ``_text``).
* After the sources, ``popularity`` of every track in a playlist is recounted from the DB when memberships
  changed since the last recount, also in a run killed before its recount (tracks in no playlist keep theirs).
* Where audio was found (the folders, and single files ingested from elsewhere) is recorded in the DB
  (``library_roots``): the web demo serves audio only from there.
* Everything reported is escaped and cut to a sane length (:mod:`spotifai.ingest_summary`).

Speed: the MPD path keeps dicts of name/URI -> id for artists, albums, tracks and playlists for the whole run,
assigns ids itself, resolves each distinct track once per file (the per-entry steps run in C: ``map`` / ``zip`` /
``dict``), and writes each file with a few ``executemany`` calls
(memberships: one statement per playlist, its track ids unpacked by ``json_each``); many new tracks are indexed for
search with one INSERT ... SELECT. A batch of slices bigger than the DB runs as :meth:`Ingester.bulk_load`
(secondary indexes re-created at the end, fewer WAL checkpoints). See ``bench/ingest.py`` (target >= 200,000
memberships/s). A well-formed slice is decoded by msgspec straight into typed structs (3x faster than orjson to
dicts, and attribute access in the loop); a slice that does not fit them (invalid JSON, a playlist without "pid",
an entry without a string "track_uri", ...) is parsed again with orjson, which gives the error position, and its
bad playlists / entries are reported and skipped as before.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson
from tqdm import tqdm

from spotifai import database
from spotifai.audio_files import AUDIO_EXTENSIONS, AudioFileInfo, UnreadableAudio, read_audio_file
from spotifai.ingest_summary import IngestSummary
from spotifai.printable import printable

log = logging.getLogger(__name__)

_EXTINF = re.compile(r"^#EXTINF\s*:\s*(-?\d+(?:\.\d*)?)\b[^,]*,(.*)$", re.IGNORECASE)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
# Secondary indexes that Ingester.bulk_load() drops and re-creates (all are in schema.sql).
_BULK_INDEXES = ("playlist_tracks_track", "tracks_artist", "tracks_album", "tracks_popularity")
_BULK_MIN_ENTRIES = 200_000  # smaller MPD batches are not worth a bulk load
_POPULARITY_STALE = "popularity_stale"  # meta key: memberships changed since popularity was last recounted
# Errors of one playlist entry (a name too long for the system, an unreadable folder, a symbolic link loop): the
# entry is reported with its file and line and skipped; the playlist keeps its other entries.
_ENTRY_ERRORS = (OSError, ValueError, RuntimeError)
_CSV_FIELD_LIMIT = 2**31 - 1
_BULK_WAL_PAGES = 20_000  # WAL auto-checkpoint interval inside Ingester.bulk_load() (pages; 80 MB of 4 KiB pages)


# -------------------------------------------------------------------------------------------- helpers


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


def _popularity_is_stale(conn: sqlite3.Connection) -> None:
    """Mark popularity for a recount (inside the transaction that changes memberships)."""
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (_POPULARITY_STALE,))


def _text(value: Any) -> str | None:
    """A name from JSON as text, the one form every source stores: strings as they are; numbers and booleans as
    JSON writes them (``42``, ``1.5``, ``true``); lists and objects as compact JSON; None for null and empty."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, ...
        return str(value)


def _norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _csv_reader(text: str):
    """A csv.reader over ``text`` that takes fields of any length (the csv module stops a whole file at a field
    over 128 KiB; an over-long entry is an entry-level problem, reported when it is looked up)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    return csv.reader(io.StringIO(text, newline=""))


def _mpd_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("mpd.slice.*.json")) or sorted(path.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"{path}: no mpd.slice.*.json files in this folder")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return [path]


# ------------------------------------------------------------------------------------------- ingester


class Ingester:
    """Ingests sources into one open DB connection; keeps lookup caches for the whole run.

    Call the source methods (:meth:`folder`, :meth:`m3u`, :meth:`csv`, :meth:`mpd`, :meth:`audio_map`) in any
    order, then :meth:`finish` (updates popularity, returns the summary)."""

    def __init__(self, conn: sqlite3.Connection, *, progress: bool = False) -> None:
        self.conn = conn
        self.progress = progress
        # A large page cache keeps the membership index's hot pages in memory during big MPD runs (per
        # connection; memory is only used as the DB grows).
        conn.execute("PRAGMA cache_size = -262144")  # KiB: 256 MiB
        self.summary = IngestSummary()
        self._start = time.perf_counter()
        self._by_audio: dict[str, int] | None = None  # audio path -> track id
        self._by_tail: dict[str, int | None] | None = None  # last 2 path parts, lower case -> id (None: ambiguous)
        self._by_name: dict[tuple[str, str], int] | None = None  # (artist, title) normalized -> id
        self._mpd: _MpdCaches | None = None
        self._bulk_indexes: dict[str, str] | None = None  # inside bulk_load(): dropped index name -> its SQL

    # ---- caches (dropped after a rolled-back transaction: they may hold ids that no longer exist)

    def _reset_caches(self) -> None:
        self._by_audio = self._by_tail = self._by_name = None
        self._mpd = None

    def _audio_index(self) -> dict[str, int]:
        if self._by_audio is None:
            self._by_audio = {
                r[0]: r[1] for r in self.conn.execute("SELECT audio_path, id FROM tracks WHERE audio_path IS NOT NULL")
            }
        return self._by_audio

    def _tail_index(self) -> dict[str, int | None]:
        if self._by_tail is None:
            self._by_tail = {}
            for audio_path, tid in self._audio_index().items():
                self._add_tail(audio_path, tid)
        return self._by_tail

    def _add_tail(self, audio_path: str, tid: int) -> None:
        if self._by_tail is None:
            return
        key = "/".join(Path(audio_path).parts[-2:]).lower()
        self._by_tail[key] = tid if self._by_tail.get(key, tid) == tid else None

    def _name_index(self) -> dict[tuple[str, str], int]:
        if self._by_name is None:
            self._by_name = {}
            rows = self.conn.execute(
                "SELECT t.id, ar.name, t.title, t.audio_path IS NOT NULL FROM tracks t"
                " LEFT JOIN artists ar ON ar.id = t.artist_id ORDER BY t.audio_path IS NULL, t.id"
            )
            for tid, artist, title, _ in rows:  # tracks with audio first: they win ties
                self._by_name.setdefault((_norm(artist), _norm(title)), tid)
        return self._by_name

    def _remember(self, tid: int, audio_path: str | None, artist: str | None, title: str) -> None:
        if audio_path and self._by_audio is not None:
            self._by_audio[audio_path] = tid
        if audio_path:
            self._add_tail(audio_path, tid)
        if self._by_name is not None:
            self._by_name.setdefault((_norm(artist), _norm(title)), tid)

    def _run_source(self, label: str, work) -> bool:
        """Run ``work()`` as one transaction; an unexpected error rolls it back and is reported (and the write
        counters of the summary are given back: nothing of it was written)."""
        counts = self.summary.write_counts()
        try:
            with _transaction(self.conn):
                work()
        except Exception as exc:  # any failure: the file's transaction is rolled back, the run goes on
            log.debug("%s failed", printable(label), exc_info=True)
            self._reset_caches()
            self.summary.restore(counts)
            self.summary.sources_failed += 1
            self.summary.error(f"{label}: {exc} (nothing from this file was written)")
            return False
        self.summary.sources_ingested += 1
        return True

    # ---- tracks and playlists

    def _file_track(self, path: Path, info: AudioFileInfo) -> int:
        """Add or update the track of audio file ``path`` (absolute); returns its id."""
        audio_path = str(path)
        s = self.summary
        tid = self._audio_index().get(audio_path)
        if tid is None:
            row = self.conn.execute("SELECT id FROM tracks WHERE uri = ?", ("file:" + audio_path,)).fetchone()
            tid = row[0] if row else None
        before = database.track(self.conn, tid) if tid is not None else None
        if before is None:
            tid = database.upsert_track(
                self.conn, uri="file:" + audio_path, title=info.title, artist=info.artist, album=info.album,
                audio_path=audio_path, duration=info.duration, genre=info.genre,
            )
            s.tracks_added += 1
        elif before["uri"].startswith("file:"):
            new = {"title": info.title, "artist": info.artist, "album": info.album, "genre": info.genre,
                   "audio_path": audio_path, "duration": info.duration}
            if all(v is None or before[k] == v for k, v in new.items()):
                s.tracks_unchanged += 1
            else:
                database.upsert_track(self.conn, uri=before["uri"], **new)
                s.tracks_updated += 1
        else:  # a track of a playlist dataset that this file is the audio of: keep its names, refresh the audio
            if before["audio_path"] == audio_path and before["duration"] == info.duration:
                s.tracks_unchanged += 1
            else:
                self.conn.execute(
                    "UPDATE tracks SET audio_path = ?, duration = ? WHERE id = ?", (audio_path, info.duration, tid)
                )
                s.tracks_updated += 1
        self._remember(tid, audio_path, info.artist, info.title)
        return tid

    def _write_playlist(self, source_key: str, name: str, track_ids: Sequence[int]) -> None:
        s = self.summary
        row = self.conn.execute("SELECT id, name FROM playlists WHERE source_key = ?", (source_key,)).fetchone()
        if row is not None:
            old = [r[0] for r in self.conn.execute(
                "SELECT track_id FROM playlist_tracks WHERE playlist_id = ? ORDER BY position", (row[0],))]
            if old == list(track_ids) and row[1] == name:
                s.playlists_unchanged += 1
                return
            s.playlists_updated += 1
        else:
            s.playlists_added += 1
        database.upsert_playlist(self.conn, source_key, name, track_ids)
        _popularity_is_stale(self.conn)
        s.memberships_written += len(track_ids)

    def _new_file(self, path: Path, root: Path | None = None) -> None:
        """Record where the audio file ``path`` (just ingested) really is, unless that is below ``root`` (a folder
        being ingested) or below a folder recorded before: the web demo serves audio from recorded places only."""
        real = path.resolve()
        if root is not None and real.is_relative_to(root):
            return
        if not database.audio_locations(self.conn, real):
            database.add_library_location(self.conn, real)

    def _entry_error(self, file: Path, line: int, exc: Exception) -> None:
        """Report a playlist entry that could not be looked up (a name longer than the system allows, a folder
        that cannot be read, ...): one error naming the file and line; the entry is skipped, the playlist kept."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.summary.error(f"{file}:{line}: entry skipped: {reason}")

    def _resolve(self, base: Path, entry: str, extinf: str | None = None) -> int | None:
        """Track id for a playlist entry (a path relative to ``base`` or absolute, a file:// URL), else by the
        ``Artist - Title`` of an #EXTINF line; None when nothing matches."""
        entry = entry.strip()
        tid = None
        if entry:
            if entry.lower().startswith("file://"):
                entry = urllib.parse.unquote(urllib.parse.urlparse(entry).path)
            if not _URL.match(entry):
                entry = entry.replace("\\", "/")
                windows = re.match(r"^[a-zA-Z]:/", entry) is not None
                path = Path(entry) if (entry.startswith("/") or windows) else base / entry
                if not windows:
                    path = path.resolve()
                    tid = self._audio_index().get(str(path))
                    if tid is None and path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
                        try:
                            info = read_audio_file(path, root=path.parent.parent.parent)
                        except UnreadableAudio as exc:
                            self.summary.skip(path, str(exc))
                            return None
                        if info.warning:
                            self.summary.warn(f"{path}: {info.warning}")
                        tid = self._file_track(path, info)
                        self._new_file(path)
                if tid is None:
                    tid = self._tail_index().get("/".join(path.parts[-2:]).lower())
        if tid is None and extinf and " - " in extinf:
            artist, title = extinf.split(" - ", 1)
            tid = self._name_index().get((_norm(artist), _norm(title)))
        return tid

    # ---- sources

    def folder(self, root: str | Path) -> None:
        """Ingest every audio file below ``root`` (one transaction)."""
        root = Path(root).resolve()
        if not root.is_dir():
            self.summary.sources_failed += 1
            self.summary.error(f"{root}: not a folder")
            return
        files = []
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if p.is_file():
                files.append(p)
            elif p.is_symlink() and not p.exists():
                self.summary.skip(p, f"dangling symbolic link (to {p.readlink()}, which does not exist)")
        infos: list[tuple[Path, AudioFileInfo]] = []
        desc = f"reading {printable(root.name, 40)}"
        for path in tqdm(files, desc=desc, unit="file", disable=not self.progress):
            try:
                infos.append((path, read_audio_file(path, root)))
            except UnreadableAudio as exc:
                self.summary.skip(path, str(exc))
                continue
            if infos[-1][1].warning:
                self.summary.warn(f"{path}: {infos[-1][1].warning}")

        def work() -> None:
            database.add_library_location(self.conn, root)
            for path, info in infos:
                self._file_track(path, info)
                if path.is_symlink():  # a link may lead out of the folder: record where its file really is
                    self._new_file(path, root)

        self._run_source(str(root), work)

    def m3u(self, path: str | Path) -> None:
        """Ingest one M3U / M3U8 playlist (one transaction)."""
        path = Path(path).resolve()
        try:
            text = _read_text(path)
        except OSError as exc:
            self.summary.sources_failed += 1
            self.summary.error(f"{path}: cannot read ({exc.strerror or exc})")
            return
        name = path.stem
        entries: list[tuple[int, str, str | None]] = []
        extinf: str | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            if "\x00" in line:
                self.summary.error(f"{path}:{lineno}: malformed line (NUL byte)")
                continue
            if line.startswith("#"):
                upper = line.upper()
                if upper.startswith("#EXTINF"):
                    m = _EXTINF.match(line)
                    if m is None:
                        self.summary.error(f"{path}:{lineno}: malformed #EXTINF line (expected #EXTINF:<seconds>,<title>)")
                    extinf = m.group(2).strip() if m else None
                elif upper.startswith("#PLAYLIST:"):
                    name = line[len("#PLAYLIST:") :].strip() or name
                continue
            entries.append((lineno, line, extinf))
            extinf = None

        def work() -> None:
            ids = []
            for lineno, entry, info in entries:
                try:
                    tid = self._resolve(path.parent, entry, info)
                except _ENTRY_ERRORS as exc:
                    self._entry_error(path, lineno, exc)
                    continue
                if tid is None:
                    self.summary.unmatched_entry(path, lineno, entry)
                else:
                    ids.append(tid)
            self._write_playlist(f"m3u:{path}", name, ids)

        self._run_source(str(path), work)

    def csv(self, path: str | Path) -> None:
        """Ingest a CSV of playlists (columns playlist + path, or playlist + artist + title; one transaction)."""
        path = Path(path).resolve()
        s = self.summary
        try:
            text = _read_text(path)
        except OSError as exc:
            s.sources_failed += 1
            s.error(f"{path}: cannot read ({exc.strerror or exc})")
            return
        reader = _csv_reader(text)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            col = {h: i for i, h in enumerate(header) if h}
            if "playlist" not in col or ("path" not in col and not {"artist", "title"} <= col.keys()):
                raise ValueError(
                    f"{path}:1: CSV header needs columns playlist and path, or playlist, artist and title"
                    f" (found: {', '.join(header) or 'nothing'})"
                )
            rows: list[tuple[int, list[str]]] = []
            for row in reader:
                lineno = reader.line_num
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    s.error(f"{path}:{lineno}: expected {len(header)} fields, found {len(row)}")
                    continue
                rows.append((lineno, row))
        except csv.Error as exc:
            s.sources_failed += 1
            s.error(f"{path}:{reader.line_num}: malformed CSV ({exc}); nothing from this file was written")
            return
        except ValueError as exc:
            s.sources_failed += 1
            s.error(str(exc))
            return

        def get(row: list[str], name: str) -> str:
            return row[col[name]].strip() if name in col else ""

        def work() -> None:
            playlists: dict[str, list[int]] = {}
            for lineno, row in rows:
                name, entry, artist, title = get(row, "playlist"), get(row, "path"), get(row, "artist"), get(row, "title")
                if not name:
                    s.error(f"{path}:{lineno}: empty playlist name")
                    continue
                if not entry and not title:
                    s.error(f"{path}:{lineno}: neither a path nor a title")
                    continue
                try:
                    tid = self._resolve(path.parent, entry) if entry else None
                except _ENTRY_ERRORS as exc:
                    self._entry_error(path, lineno, exc)
                    continue
                if tid is None and title:
                    tid = self._name_index().get((_norm(artist), _norm(title)))
                members = playlists.setdefault(name, [])
                if tid is None:
                    s.unmatched_entry(path, lineno, entry or f"{artist} - {title}")
                else:
                    members.append(tid)
            for name, ids in playlists.items():
                self._write_playlist(f"csv:{path}:{name}", name, ids)

        self._run_source(str(path), work)

    def mpd(self, path: str | Path) -> None:
        """Ingest a Million Playlist Dataset slice, or every ``mpd.slice.*.json`` in a folder (one transaction
        per file; a big batch runs as a :meth:`bulk_load`)."""
        self.mpd_files(_mpd_files(Path(path)))

    def mpd_files(self, files: Sequence[str | Path]) -> None:
        """Ingest MPD slice files (one transaction each). When they hold more playlist entries than the DB
        already has (estimated from the file sizes), they are loaded as one :meth:`bulk_load`."""
        with self.bulk_load() if self._bulk_worthwhile(files) else nullcontext():
            for file in tqdm(files, desc="MPD slices", unit="file", disable=not self.progress or len(files) < 2):
                self.mpd_file(file)

    def _bulk_worthwhile(self, files: Sequence[str | Path]) -> bool:
        estimate = 0  # playlist entries: MPD JSON takes about 300-500 bytes per entry
        for file in files:
            try:
                estimate += Path(file).stat().st_size // 500
            except OSError:
                pass
        if estimate < _BULK_MIN_ENTRIES:
            return False
        return estimate >= self.conn.execute("SELECT COUNT(*) FROM playlist_tracks").fetchone()[0]

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Bulk-load mode for many MPD slices (or any big batch of sources) in a row.

        Inside, the secondary indexes of ``_BULK_INDEXES`` (membership by track, tracks by artist / album /
        popularity) are dropped: each file's transaction then only appends rows instead of updating those
        B-trees at random places (which dirties nearly every index page in every transaction once the index
        outgrows the page cache). On exit the indexes are re-created from their original SQL (one sort each),
        popularity is updated before the popularity index is rebuilt, and the caller's transactions were one
        per file as usual. Dropping an index changes no data: the DB is valid at every point; if the process
        dies inside, :func:`spotifai.database.connect` re-creates the missing indexes (schema.sql). Worth it when
        the batch is at least as big as what the DB holds; nested calls are no-ops."""
        if self._bulk_indexes is not None:
            yield
            return
        self._bulk_indexes = {}
        # Fewer WAL checkpoints: the pages that every file's transaction dirties again (the URI index, the search
        # index) are copied into the DB file once per _BULK_WAL_PAGES pages of WAL instead of at nearly every commit.
        wal_pages = self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        if 0 < wal_pages < _BULK_WAL_PAGES:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {_BULK_WAL_PAGES}")
        try:
            with _transaction(self.conn):
                for name in _BULK_INDEXES:
                    row = self.conn.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
                    if row is not None and row[0]:
                        self._bulk_indexes[name] = row[0]
                        self.conn.execute(f"DROP INDEX {name}")
            log.info("bulk load: dropped indexes %s", ", ".join(self._bulk_indexes) or "(none)")
            yield
        finally:
            if 0 < wal_pages < _BULK_WAL_PAGES:
                self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_pages)}")
            dropped, self._bulk_indexes = self._bulk_indexes, None
            if dropped:
                # CREATE INDEX sorts in chunks of the page cache's size: small chunks are 3x faster here than
                # one big in-memory sort (cache-friendly), so the cache is small while the indexes are built.
                cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
                self.conn.execute("PRAGMA cache_size = -2000")
                try:
                    later = {k: v for k, v in dropped.items() if k == "tracks_popularity"}
                    with _transaction(self.conn):
                        for name, sql in dropped.items():
                            if name not in later:
                                self.conn.execute(sql)
                    self.update_popularity()  # cheaper before the popularity index exists
                    with _transaction(self.conn):
                        for sql in later.values():
                            self.conn.execute(sql)
                finally:
                    self.conn.execute(f"PRAGMA cache_size = {int(cache_size)}")

    def mpd_file(self, path: str | Path) -> None:
        path = Path(path).resolve()
        s = self.summary
        try:
            raw = path.read_bytes()
        except OSError as exc:
            s.sources_failed += 1
            s.error(f"{path}: cannot read ({exc.strerror or exc})")
            return
        try:  # fast path: a well-formed slice decodes straight into structs
            playlists = _ordered(_MPD_DECODER.decode(raw).playlists)
        except msgspec.DecodeError:  # invalid JSON or an unexpected shape: parse leniently (precise errors)
            playlists = self._mpd_lenient(path, raw)
            if playlists is None:
                return
        if self._mpd is None:
            self._mpd = _MpdCaches.load(self.conn)
        # Every id written comes from the caches (built from the DB) or from rows inserted in the same
        # transaction, so the per-row foreign-key lookups are redundant here; they cost a third of the time.
        fk = self.conn.execute("PRAGMA foreign_keys").fetchone()[0]
        if fk:
            self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self._run_source(str(path), lambda: self._mpd_write(path, playlists))
        finally:
            if fk:
                self.conn.execute("PRAGMA foreign_keys = ON")

    def _mpd_lenient(self, path: Path, raw: bytes) -> list[_MpdPlaylist] | None:
        """The playlists of a slice that does not decode as a well-formed one: invalid JSON fails the file (error
        with the position); playlists and entries of the wrong shape are reported and skipped. None: failed."""
        s = self.summary
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            s.sources_failed += 1
            s.error(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg};"
                    " nothing from this file was written")
            return None
        playlists = data.get("playlists") if isinstance(data, dict) else None
        if not isinstance(playlists, list):
            s.sources_failed += 1
            s.error(f"{path}: not an MPD slice (no top-level \"playlists\" list)")
            return None
        out = []
        for index, pl in enumerate(playlists):
            if not isinstance(pl, dict) or not isinstance(pl.get("tracks"), list) or pl.get("pid") is None:
                s.error(f"{path}: playlist #{index}: not an object with \"pid\" and a \"tracks\" list; skipped")
                continue
            tracks = []
            for item in pl["tracks"]:
                uri = item.get("track_uri") if isinstance(item, dict) else None
                if not isinstance(uri, str) or not uri:
                    s.error(f"{path}: playlist {pl['pid']}: a track without \"track_uri\"; skipped")
                    continue
                tracks.append(_MpdTrack(uri, item.get("track_name"), item.get("artist_name"), item.get("album_name"),
                                        item.get("duration_ms"), item.get("pos")))
            out.append(_MpdPlaylist(pl["pid"], tracks, pl.get("name")))
        return _ordered(out)

    def _mpd_write(self, path: Path, playlists: list[_MpdPlaylist]) -> None:
        conn, s, c = self.conn, self.summary, self._mpd
        assert c is not None
        next_artist, next_album, next_track, next_playlist = (
            int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0]) + 1
            for t in ("artists", "albums", "tracks", "playlists")
        )
        first_new_track = next_track
        artists, albums, tracks, playlist_ids = c.artists, c.albums, c.tracks, c.playlists
        new_artists: list[tuple[int, str]] = []
        new_albums: list[tuple[int, str, int | None]] = []
        new_tracks: list[tuple] = []
        changed_tracks: list[tuple] = []
        new_playlists: list[tuple[int, str, str]] = []
        renamed: list[tuple[str, int]] = []
        replaced: list[int] = []
        members: list[tuple[int, str]] = []  # (playlist id, JSON array of its track ids in order)
        n_members = 0
        unchanged_tracks = 0

        # Resolve each distinct track of the file once, in order of first appearance (new tracks get the next
        # ids; the first entry of a URI gives its names). The per-entry steps run in C (map / zip / dict); only the
        # distinct tracks go through this Python loop (the same check done with map / operator.ne measured slower:
        # at this size the work is memory-bound, and more passes over the entries cost more than the bytecode).
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
        ids = list(map(in_file.__getitem__, uris))

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
                pid = playlist_ids[key] = next_playlist
                next_playlist += 1
                new_playlists.append((pid, key, name))
                s.playlists_added += 1
            else:
                row = conn.execute("SELECT name FROM playlists WHERE id = ?", (pid,)).fetchone()
                old = [r[0] for r in conn.execute(
                    "SELECT track_id FROM playlist_tracks WHERE playlist_id = ? ORDER BY position", (pid,))]
                if old == tids and row is not None and row[0] == name:
                    s.playlists_unchanged += 1
                    continue
                if row is not None and row[0] != name:
                    renamed.append((name, pid))
                replaced.append(pid)
                s.playlists_updated += 1
            if tids:
                members.append((pid, orjson.dumps(tids).decode()))
                n_members += len(tids)
        if members or replaced:
            _popularity_is_stale(conn)
        conn.executemany("INSERT INTO artists(id, name) VALUES (?, ?)", new_artists)
        conn.executemany("INSERT INTO albums(id, title, artist_id) VALUES (?, ?, ?)", new_albums)
        # Many new tracks: index them for search with one INSERT ... SELECT instead of the per-row trigger (the
        # trigger is dropped and re-created inside this transaction, so no other connection ever sees it missing).
        trigger = _search_insert_trigger(conn) if len(new_tracks) > 100 else None
        if trigger is not None:
            conn.execute("DROP TRIGGER track_search_insert")
        conn.executemany(
            "INSERT INTO tracks(id, uri, title, artist_id, album_id, duration) VALUES (?, ?, ?, ?, ?, ?)", new_tracks
        )
        if trigger is not None:
            conn.execute(
                "INSERT INTO track_search(rowid, title, artist, album)"
                " SELECT id, title, artist, album FROM track_text WHERE id >= ?", (first_new_track,)
            )
            conn.execute(trigger)
        conn.executemany("UPDATE tracks SET title = ?, artist_id = ?, album_id = ? WHERE id = ?", changed_tracks)
        conn.executemany("INSERT INTO playlists(id, source_key, name) VALUES (?, ?, ?)", new_playlists)
        conn.executemany("UPDATE playlists SET name = ? WHERE id = ?", renamed)
        conn.executemany("DELETE FROM playlist_tracks WHERE playlist_id = ?", ((p,) for p in replaced))
        # One statement per playlist; SQLite unpacks the JSON array of track ids (3x less CPU than one bound
        # row per membership). Positions are 0 .. n-1 in playlist order.
        conn.executemany(
            "INSERT INTO playlist_tracks(playlist_id, position, track_id) SELECT ?, key, value FROM json_each(?)",
            members,
        )
        s.tracks_added += len(new_tracks)
        s.tracks_updated += len(changed_tracks)
        s.tracks_unchanged += unchanged_tracks
        s.memberships_written += n_members

    def audio_map(self, path: str | Path) -> None:
        """Give Spotify tracks their audio: a CSV (``track_uri,path``) or JSON (``{uri: path}`` or
        ``[{"track_uri", "path"}]``) mapping; relative paths are relative to the mapping file (one transaction)."""
        path = Path(path).resolve()
        s = self.summary
        pairs: list[tuple[int, str, str]] = []  # (line or entry number, uri, audio path)
        try:
            if path.suffix.lower() == ".json":
                try:
                    data = orjson.loads(path.read_bytes())
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}"
                                     f" (char {exc.pos}): {exc.msg}") from None
                items = data.items() if isinstance(data, dict) else (
                    (d.get("track_uri"), d.get("path") or d.get("audio_path")) if isinstance(d, dict) else (None, None)
                    for d in (data if isinstance(data, list) else [])
                )
                for n, (uri, audio) in enumerate(items, 1):
                    if isinstance(uri, str) and isinstance(audio, str) and uri and audio:
                        pairs.append((n, uri, audio))
                    else:
                        s.error(f"{path}: entry {n}: expected a track_uri and a path")
            else:
                reader = _csv_reader(_read_text(path))
                for row in reader:
                    if not row or not any(c.strip() for c in row):
                        continue
                    if reader.line_num == 1 and row[0].strip().lower() in {"track_uri", "uri"}:
                        continue
                    if len(row) < 2 or not row[0].strip() or not row[1].strip():
                        s.error(f"{path}:{reader.line_num}: expected track_uri,path")
                        continue
                    pairs.append((reader.line_num, row[0].strip(), row[1].strip()))
        except (OSError, ValueError, csv.Error) as exc:
            s.sources_failed += 1
            s.error(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc))
            return

        def work() -> None:
            for n, uri, audio in pairs:
                row = self.conn.execute("SELECT id FROM tracks WHERE uri = ?", (uri,)).fetchone()
                if row is None:
                    s.unmatched_entry(path, n, uri)
                    continue
                tid = row[0]
                audio_path = Path(audio.replace("\\", "/"))
                try:
                    audio_path = (audio_path if audio_path.is_absolute() else path.parent / audio_path).resolve()
                    info = read_audio_file(audio_path)
                except UnreadableAudio as exc:
                    s.skip(audio_path, str(exc))
                    continue
                except _ENTRY_ERRORS as exc:
                    self._entry_error(path, n, exc)
                    continue
                if info.warning:
                    s.warn(f"{audio_path}: {info.warning}")
                holder = self.conn.execute(
                    "SELECT id, uri FROM tracks WHERE audio_path = ? AND id != ?", (str(audio_path), tid)
                ).fetchone()
                if holder is not None:
                    if not holder[1].startswith("file:"):
                        s.error(f"{path}:{n}: {audio_path} is already the audio of {holder[1]}; skipped")
                        continue
                    # The folder scan made a track of this file: merge it into the Spotify track.
                    self.conn.execute("UPDATE playlist_tracks SET track_id = ? WHERE track_id = ?", (tid, holder[0]))
                    self.conn.execute("DELETE FROM tracks WHERE id = ?", (holder[0],))
                    _popularity_is_stale(self.conn)
                    self._reset_caches()
                cur = self.conn.execute(
                    "UPDATE tracks SET audio_path = ?, duration = ? WHERE id = ? AND (audio_path IS NOT ? OR duration IS NOT ?)",
                    (str(audio_path), info.duration, tid, str(audio_path), info.duration),
                )
                if cur.rowcount:
                    s.tracks_updated += 1
                    if self._by_audio is not None:
                        self._by_audio[str(audio_path)] = tid
                else:
                    s.tracks_unchanged += 1
                self._new_file(audio_path)

        self._run_source(str(path), work)

    # ---- end of run

    def update_popularity(self) -> None:
        """popularity = number of playlist entries, recounted from the DB for every track in a playlist (one
        set-based UPDATE; tracks in no playlist keep theirs) when memberships changed since the last recount.

        What changed is not remembered in this process: every transaction that changes memberships also sets
        the meta key ``popularity_stale``, and the recount clears it in its own transaction. A run killed between
        two playlist commits leaves the key set, so the next run recounts, even if it finds every playlist
        unchanged."""
        if database.get_meta(self.conn, _POPULARITY_STALE) is None:
            return
        with _transaction(self.conn):
            self.conn.execute(
                "UPDATE tracks SET popularity = c.n FROM (SELECT track_id, COUNT(*) AS n FROM playlist_tracks"
                " GROUP BY track_id) AS c WHERE tracks.id = c.track_id AND tracks.popularity IS NOT c.n"
            )
            self.conn.execute("DELETE FROM meta WHERE key = ?", (_POPULARITY_STALE,))

    def finish(self) -> IngestSummary:
        """Update popularity and return the summary (with the elapsed seconds)."""
        self.update_popularity()
        self.summary.seconds = round(time.perf_counter() - self._start, 3)
        return self.summary


class _MpdTrack(msgspec.Struct, gc=False):
    """One playlist entry of an MPD slice (other keys are ignored). Only ``track_uri`` is typed: the other values
    are used as the JSON gives them, as the lenient path does."""

    track_uri: Annotated[str, msgspec.Meta(min_length=1)]
    track_name: Any = None
    artist_name: Any = None
    album_name: Any = None
    duration_ms: Any = None
    pos: Any = None


class _MpdPlaylist(msgspec.Struct, gc=False):
    pid: int | str
    tracks: list[_MpdTrack]
    name: Any = None


class _MpdSlice(msgspec.Struct, gc=False):
    playlists: list[_MpdPlaylist]


# A slice of any other shape (a track without a string "track_uri", a playlist without "pid" or "tracks", ...)
# fails this decoder and goes through Ingester._mpd_lenient, which reports and skips the bad parts.
_MPD_DECODER = msgspec.json.Decoder(_MpdSlice)
_TRACKS = attrgetter("tracks")
_URI = attrgetter("track_uri")
_POS = attrgetter("pos")


def _ordered(playlists: list[_MpdPlaylist]) -> list[_MpdPlaylist]:
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


def _search_insert_trigger(conn: sqlite3.Connection) -> str | None:
    """The SQL of schema.sql's search-index insert trigger, or None when this DB indexes new tracks otherwise (then
    nothing may be deferred)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'track_search_insert'").fetchone()
    if row is None or "INSERT INTO track_search(rowid, title, artist, album)" not in row[0]:
        return None
    return row[0]


@dataclass
class _MpdCaches:
    artists: dict[str, int]
    albums: dict[tuple[str, int | None], int]
    # uri -> (id, title, artist name, album title, artist id, album id)
    tracks: dict[str, tuple[int, str, str | None, str | None, int | None, int | None]]
    playlists: dict[str, int]  # source key -> id

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> _MpdCaches:
        return cls(
            artists={r[0]: r[1] for r in conn.execute("SELECT name, id FROM artists")},
            albums={(r[0], r[1]): r[2] for r in conn.execute("SELECT title, artist_id, id FROM albums")},
            tracks={r[0]: r[1:] for r in conn.execute(
                "SELECT t.uri, t.id, t.title, ar.name, al.title, t.artist_id, t.album_id FROM tracks t"
                " LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id")},
            playlists={r[0]: r[1] for r in conn.execute("SELECT source_key, id FROM playlists")},
        )


def ingest(
    conn: sqlite3.Connection,
    *,
    folders: Iterable[str | Path] = (),
    m3u: Iterable[str | Path] = (),
    csv_files: Iterable[str | Path] = (),
    mpd: Iterable[str | Path] = (),
    mpd_audio_map: str | Path | None = None,
    progress: bool = False,
) -> IngestSummary:
    """Ingest all given sources into ``conn`` and return the summary.

    Order: folders, MPD slices, the audio map, then M3U and CSV playlists (so that playlist entries can match
    the tracks the other sources made). Missing MPD paths raise FileNotFoundError before anything is written;
    every other problem is reported in the summary.
    """
    mpd_files = [f for p in mpd for f in _mpd_files(Path(p))]
    ing = Ingester(conn, progress=progress)
    for folder in folders:
        ing.folder(folder)
    ing.mpd_files(mpd_files)
    if mpd_audio_map is not None:
        ing.audio_map(mpd_audio_map)
    for file in m3u:
        ing.m3u(file)
    for file in csv_files:
        ing.csv(file)
    return ing.finish()
