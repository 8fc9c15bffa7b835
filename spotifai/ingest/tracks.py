"""Tracks and playlists of a music library in the DB: finding the track of a playlist entry, writing tracks of
audio files and playlists, counting what changed into the summary."""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from spotifai import database
from spotifai.ingest.audio_files import AUDIO_EXTENSIONS, AudioFileInfo, UnreadableAudio, read_audio_file
from spotifai.ingest.db import popularity_is_stale
from spotifai.ingest.parsers import norm
from spotifai.ingest.summary import IngestSummary

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


class Tracks:
    """Track lookups (by audio path, by the last two path parts, by artist and title) over one connection, kept
    for a whole run, and the writes of file tracks and playlists. Call :meth:`reset` after a rolled-back
    transaction: the lookups may hold ids that no longer exist."""

    def __init__(self, conn: sqlite3.Connection, summary: IngestSummary) -> None:
        self.conn = conn
        self.summary = summary
        self._by_audio: dict[str, int] | None = None  # audio path -> track id
        self._by_tail: dict[str, int | None] | None = None  # last 2 path parts, lower case -> id (None: ambiguous)
        self._by_name: dict[tuple[str, str], int] | None = None  # (artist, title) normalized -> id

    # ---- lookups

    def reset(self) -> None:
        self._by_audio = self._by_tail = self._by_name = None

    def audio_index(self) -> dict[str, int]:
        if self._by_audio is None:
            self._by_audio = {
                r[0]: r[1] for r in self.conn.execute("SELECT audio_path, id FROM tracks WHERE audio_path IS NOT NULL")
            }
        return self._by_audio

    def _tail_index(self) -> dict[str, int | None]:
        if self._by_tail is None:
            self._by_tail = {}
            for audio_path, tid in self.audio_index().items():
                self._add_tail(audio_path, tid)
        return self._by_tail

    def _add_tail(self, audio_path: str, tid: int) -> None:
        if self._by_tail is None:
            return
        key = "/".join(Path(audio_path).parts[-2:]).lower()
        self._by_tail[key] = tid if self._by_tail.get(key, tid) == tid else None

    def by_name(self, artist: str | None, title: str | None) -> int | None:
        """The track with this artist and title (case and spacing ignored; a track with audio wins a tie)."""
        if self._by_name is None:
            self._by_name = {}
            rows = self.conn.execute(
                "SELECT t.id, ar.name, t.title, t.audio_path IS NOT NULL FROM tracks t"
                " LEFT JOIN artists ar ON ar.id = t.artist_id ORDER BY t.audio_path IS NULL, t.id"
            )
            for tid, a, t, _ in rows:  # tracks with audio first: they win ties
                self._by_name.setdefault((norm(a), norm(t)), tid)
        return self._by_name.get((norm(artist), norm(title)))

    def _remember(self, tid: int, audio_path: str | None, artist: str | None, title: str) -> None:
        if audio_path and self._by_audio is not None:
            self._by_audio[audio_path] = tid
        if audio_path:
            self._add_tail(audio_path, tid)
        if self._by_name is not None:
            self._by_name.setdefault((norm(artist), norm(title)), tid)

    def resolve(self, base: Path, entry: str, extinf: str | None = None) -> int | None:
        """Track id for a playlist entry (a path relative to ``base`` or absolute, a file:// URL), else by the
        ``Artist - Title`` of an #EXTINF line; None when nothing matches. An entry naming an audio file not yet in
        the DB adds it. Raises OSError / ValueError / RuntimeError when the entry cannot be looked up."""
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
                    tid = self.audio_index().get(str(path))
                    if tid is None and path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
                        try:
                            info = read_audio_file(path, root=path.parent.parent.parent)
                        except UnreadableAudio as exc:
                            self.summary.skip(path, str(exc))
                            return None
                        if info.warning:
                            self.summary.warn(f"{path}: {info.warning}")
                        tid = self.file_track(path, info)
                        self.new_file(path)
                if tid is None:
                    tid = self._tail_index().get("/".join(path.parts[-2:]).lower())
        if tid is None and extinf and " - " in extinf:
            artist, title = extinf.split(" - ", 1)
            tid = self.by_name(artist, title)
        return tid

    # ---- writes

    def file_track(self, path: Path, info: AudioFileInfo) -> int:
        """Add or update the track of audio file ``path`` (absolute); returns its id."""
        audio_path = str(path)
        s = self.summary
        tid = self.audio_index().get(audio_path)
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

    def set_audio(self, tid: int, audio_path: Path, info: AudioFileInfo) -> None:
        """Give track ``tid`` (of a playlist dataset) the audio file ``audio_path``."""
        cur = self.conn.execute(
            "UPDATE tracks SET audio_path = ?, duration = ? WHERE id = ? AND (audio_path IS NOT ? OR duration IS NOT ?)",
            (str(audio_path), info.duration, tid, str(audio_path), info.duration),
        )
        if cur.rowcount:
            self.summary.tracks_updated += 1
            if self._by_audio is not None:
                self._by_audio[str(audio_path)] = tid
        else:
            self.summary.tracks_unchanged += 1
        self.new_file(audio_path)

    def write_playlist(self, source_key: str, name: str, track_ids: Sequence[int]) -> None:
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
        popularity_is_stale(self.conn)
        s.memberships_written += len(track_ids)

    def new_file(self, path: Path, root: Path | None = None) -> None:
        """Record where the audio file ``path`` (just ingested) really is, unless that is below ``root`` (a folder
        being ingested) or below a folder recorded before: the web demo serves audio from recorded places only."""
        real = path.resolve()
        if root is not None and real.is_relative_to(root):
            return
        if not database.audio_locations(self.conn, real):
            database.add_library_location(self.conn, real)
