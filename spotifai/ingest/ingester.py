"""The coordinator: :class:`Ingester` runs each source as one transaction (read, parse, resolve, write, count)
and :func:`ingest` runs a set of sources in their order. The pieces: :mod:`.parsers` (playlist files),
:mod:`.audio_files` (durations and tags), :mod:`.mpd` (MPD slices), :mod:`.tracks` (lookups and writes of tracks
and playlists), :mod:`.db` (transactions, popularity, bulk load), :mod:`.summary` (what a run did)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tqdm import tqdm

from spotifai import database
from spotifai.ingest import db, parsers
from spotifai.ingest import mpd as mpd_slices
from spotifai.ingest.audio_files import AUDIO_EXTENSIONS, AudioFileInfo, UnreadableAudio, read_audio_file
from spotifai.ingest.summary import IngestSummary
from spotifai.ingest.tracks import Tracks
from spotifai.printable import printable

log = logging.getLogger(__name__)

_BULK_MIN_ENTRIES = 200_000  # smaller MPD batches are not worth a bulk load
# Errors of one playlist entry (a name too long for the system, an unreadable folder, a symbolic link loop): the
# entry is reported with its file and line and skipped; the playlist keeps its other entries.
_ENTRY_ERRORS = (OSError, ValueError, RuntimeError)


class Ingester:
    """Ingests sources into one open DB connection; keeps lookup caches for the whole run.

    Call the source methods (:meth:`folder`, :meth:`m3u`, :meth:`csv`, :meth:`mpd`, :meth:`audio_map`) in any
    order, then :meth:`finish` (updates popularity, returns the summary)."""

    def __init__(self, conn: sqlite3.Connection, *, progress: bool = False) -> None:
        self.summary = IngestSummary()
        self.tracks = Tracks(conn, self.summary)
        self.conn = conn
        self.progress = progress
        # A large page cache keeps the membership index's hot pages in memory during big MPD runs (per
        # connection; memory is only used as the DB grows).
        conn.execute("PRAGMA cache_size = -262144")  # KiB: 256 MiB
        self._start = time.perf_counter()
        self._mpd: mpd_slices.MpdCaches | None = None
        self._bulk = False  # inside bulk_load()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    @conn.setter
    def conn(self, conn: sqlite3.Connection) -> None:
        self._conn = self.tracks.conn = conn

    def _reset_caches(self) -> None:
        """Drop the lookup caches (after a rolled-back transaction: they may hold ids that no longer exist)."""
        self.tracks.reset()
        self._mpd = None

    def _run_source(self, label: str, work) -> bool:
        """Run ``work()`` as one transaction; an unexpected error rolls it back and is reported (and the write
        counters of the summary are given back: nothing of it was written)."""
        counts = self.summary.write_counts()
        try:
            with db.transaction(self.conn):
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

    def _failed(self, message: str) -> None:
        """A source that cannot be used at all (nothing of it is written)."""
        self.summary.sources_failed += 1
        self.summary.error(message)

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as exc:
            self._failed(f"{path}: cannot read ({exc.strerror or exc})")
            return None

    def _entry_error(self, file: Path, line: int, exc: Exception) -> None:
        """Report a playlist entry that could not be looked up (a name longer than the system allows, a folder
        that cannot be read, ...): one error naming the file and line; the entry is skipped, the playlist kept."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.summary.error(f"{file}:{line}: entry skipped: {reason}")

    def _read_audio(self, path: Path, root: Path | None = None) -> AudioFileInfo | None:
        """The info of an audio file, or None (listed as skipped with the reason) when it is unreadable."""
        try:
            info = read_audio_file(path, root)
        except UnreadableAudio as exc:
            self.summary.skip(path, str(exc))
            return None
        if info.warning:
            self.summary.warn(f"{path}: {info.warning}")
        return info

    # ---- music folders and playlist files

    def folder(self, root: str | Path) -> None:
        """Ingest every audio file below ``root`` (one transaction)."""
        root = Path(root).resolve()
        if not root.is_dir():
            self._failed(f"{root}: not a folder")
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
            info = self._read_audio(path, root)
            if info is not None:
                infos.append((path, info))

        def work() -> None:
            database.add_library_location(self.conn, root)
            for path, info in infos:
                self.tracks.file_track(path, info)
                if path.is_symlink():  # a link may lead out of the folder: record where its file really is
                    self.tracks.new_file(path, root)

        self._run_source(str(root), work)

    def m3u(self, path: str | Path) -> None:
        """Ingest one M3U / M3U8 playlist (one transaction)."""
        path = Path(path).resolve()
        raw = self._read(path)
        if raw is None:
            return
        playlist = parsers.parse_m3u(path, parsers.decode_text(raw))
        for message in playlist.errors:
            self.summary.error(message)

        def work() -> None:
            ids = []
            for e in playlist.entries:
                try:
                    tid = self.tracks.resolve(path.parent, e.entry, e.extinf)
                except _ENTRY_ERRORS as exc:
                    self._entry_error(path, e.line, exc)
                    continue
                if tid is None:
                    self.summary.unmatched_entry(path, e.line, e.entry)
                else:
                    ids.append(tid)
            self.tracks.write_playlist(f"m3u:{path}", playlist.name, ids)

        self._run_source(str(path), work)

    def csv(self, path: str | Path) -> None:
        """Ingest a CSV of playlists (columns playlist + path, or playlist + artist + title; one transaction)."""
        path = Path(path).resolve()
        raw = self._read(path)
        if raw is None:
            return
        parsed = parsers.parse_csv(path, parsers.decode_text(raw))
        for message in parsed.errors:
            self.summary.error(message)
        if parsed.failure is not None:
            self._failed(parsed.failure)
            return

        def work() -> None:
            playlists: dict[str, list[int]] = {}
            for e in parsed.entries:
                try:
                    tid = self.tracks.resolve(path.parent, e.path) if e.path else None
                except _ENTRY_ERRORS as exc:
                    self._entry_error(path, e.line, exc)
                    continue
                if tid is None and e.title:
                    tid = self.tracks.by_name(e.artist, e.title)
                members = playlists.setdefault(e.playlist, [])
                if tid is None:
                    self.summary.unmatched_entry(path, e.line, e.path or f"{e.artist} - {e.title}")
                else:
                    members.append(tid)
            for name, ids in playlists.items():
                self.tracks.write_playlist(f"csv:{path}:{name}", name, ids)

        self._run_source(str(path), work)

    # ---- Million Playlist Dataset

    def mpd(self, path: str | Path) -> None:
        """Ingest a Million Playlist Dataset slice, or every ``mpd.slice.*.json`` in a folder (one transaction
        per file; a big batch runs as a :meth:`bulk_load`)."""
        self.mpd_files(mpd_slices.mpd_files(Path(path)))

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
        """Bulk-load mode for a big batch of sources (:func:`spotifai.ingest.db.bulk_load`: secondary indexes
        dropped inside, re-created and popularity updated on exit); nested calls are no-ops."""
        if self._bulk:
            yield
            return
        self._bulk = True
        try:
            with db.bulk_load(self.conn):
                yield
        finally:
            self._bulk = False

    def mpd_file(self, path: str | Path) -> None:
        path = Path(path).resolve()
        raw = self._read(path)
        if raw is None:
            return
        parsed = mpd_slices.parse_slice(path, raw)
        for message in parsed.errors:
            self.summary.error(message)
        if parsed.failure is not None:
            self._failed(parsed.failure)
            return
        if self._mpd is None:
            self._mpd = mpd_slices.MpdCaches.load(self.conn)
        # Every id written comes from the caches (built from the DB) or from rows inserted in the same
        # transaction, so the per-row foreign-key lookups are redundant here; they cost a third of the time.
        fk = self.conn.execute("PRAGMA foreign_keys").fetchone()[0]
        if fk:
            self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self._run_source(str(path), lambda: self._mpd_write(path, parsed.playlists))
        finally:
            if fk:
                self.conn.execute("PRAGMA foreign_keys = ON")

    def _mpd_write(self, path: Path, playlists: list[mpd_slices.MpdPlaylist]) -> None:
        assert self._mpd is not None
        mpd_slices.write_slice(self.conn, self.summary, self._mpd, path, playlists)

    def audio_map(self, path: str | Path) -> None:
        """Give Spotify tracks their audio: a CSV (``track_uri,path``) or JSON (``{uri: path}`` or
        ``[{"track_uri", "path"}]``) mapping; relative paths are relative to the mapping file (one transaction)."""
        path = Path(path).resolve()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._failed(f"{path}: {exc}")
            return
        parsed = parsers.parse_audio_map(path, raw)
        for message in parsed.errors:
            self.summary.error(message)
        if parsed.failure is not None:
            self._failed(parsed.failure)
            return

        def work() -> None:
            for n, uri, audio in parsed.pairs:
                self._map_audio(path, n, uri, audio)

        self._run_source(str(path), work)

    def _map_audio(self, path: Path, n: int, uri: str, audio: str) -> None:
        """One entry of an audio map: the Spotify track ``uri`` gets the file ``audio``; a folder track of that
        file is merged into it."""
        s = self.summary
        row = self.conn.execute("SELECT id FROM tracks WHERE uri = ?", (uri,)).fetchone()
        if row is None:
            s.unmatched_entry(path, n, uri)
            return
        tid = row[0]
        audio_path = Path(audio.replace("\\", "/"))
        try:
            audio_path = (audio_path if audio_path.is_absolute() else path.parent / audio_path).resolve()
            info = self._read_audio(audio_path)
        except _ENTRY_ERRORS as exc:
            self._entry_error(path, n, exc)
            return
        if info is None:
            return
        holder = self.conn.execute(
            "SELECT id, uri FROM tracks WHERE audio_path = ? AND id != ?", (str(audio_path), tid)
        ).fetchone()
        if holder is not None:
            if not holder[1].startswith("file:"):
                s.error(f"{path}:{n}: {audio_path} is already the audio of {holder[1]}; skipped")
                return
            # The folder scan made a track of this file: merge it into the Spotify track.
            self.conn.execute("UPDATE playlist_tracks SET track_id = ? WHERE track_id = ?", (tid, holder[0]))
            self.conn.execute("DELETE FROM tracks WHERE id = ?", (holder[0],))
            db.popularity_is_stale(self.conn)
            self._reset_caches()
        self.tracks.set_audio(tid, audio_path, info)

    # ---- end of run

    def update_popularity(self) -> None:
        """Recount popularity when memberships changed since the last recount
        (:func:`spotifai.ingest.db.update_popularity`)."""
        db.update_popularity(self.conn)

    def finish(self) -> IngestSummary:
        """Update popularity and return the summary (with the elapsed seconds)."""
        self.update_popularity()
        self.summary.seconds = round(time.perf_counter() - self._start, 3)
        return self.summary


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
    files = [f for p in mpd for f in mpd_slices.mpd_files(Path(p))]
    ing = Ingester(conn, progress=progress)
    for folder in folders:
        ing.folder(folder)
    ing.mpd_files(files)
    if mpd_audio_map is not None:
        ing.audio_map(mpd_audio_map)
    for file in m3u:
        ing.m3u(file)
    for file in csv_files:
        ing.csv(file)
    return ing.finish()
