"""Pure parsers of playlist files: M3U / M3U8, CSV playlists and the MPD audio map.

Each takes the file's path (only to name it in messages) and its content, and returns what it found: the entries
with their line numbers, the problems of single lines (``errors``, each naming the file and line) and, when the
whole file cannot be used, ``failure`` (the message; then nothing of the file may be written). No database, no
file system: :class:`spotifai.ingest.Ingester` resolves the entries and writes them.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_EXTINF = re.compile(r"^#EXTINF\s*:\s*(-?\d+(?:\.\d*)?)\b[^,]*,(.*)$", re.IGNORECASE)
_CSV_FIELD_LIMIT = 2**31 - 1


def decode_text(raw: bytes) -> str:
    """A playlist file's text: UTF-8 (BOM allowed), else Latin-1."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def csv_reader(text: str):
    """A csv.reader over ``text`` that takes fields of any length (the csv module stops a whole file at a field
    over 128 KiB; an over-long entry is an entry-level problem, reported when it is looked up)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    return csv.reader(io.StringIO(text, newline=""))


def text(value: Any) -> str | None:
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


def norm(name: str | None) -> str:
    """A name as matched against another: case-folded, runs of white space as one space."""
    return " ".join((name or "").casefold().split())


# ----------------------------------------------------------------------------------------------- M3U


@dataclass(frozen=True)
class M3uEntry:
    line: int
    entry: str  # a path (relative to the playlist's folder, or absolute), a file:// URL, ...
    extinf: str | None  # the "Artist - Title" of the #EXTINF line before it, if any


@dataclass
class M3uPlaylist:
    name: str
    entries: list[M3uEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_m3u(path: Path, content: str) -> M3uPlaylist:
    """The playlist of one M3U / M3U8 file: name from ``#PLAYLIST:``, else the file name; entries in order, each
    with the ``Artist - Title`` of its ``#EXTINF`` line; lines with a NUL byte and malformed ``#EXTINF`` lines are
    errors (the entry after a malformed ``#EXTINF`` is kept, without it)."""
    playlist = M3uPlaylist(path.stem)
    extinf: str | None = None
    for lineno, raw in enumerate(content.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if "\x00" in line:
            playlist.errors.append(f"{path}:{lineno}: malformed line (NUL byte)")
            continue
        if line.startswith("#"):
            upper = line.upper()
            if upper.startswith("#EXTINF"):
                m = _EXTINF.match(line)
                if m is None:
                    playlist.errors.append(
                        f"{path}:{lineno}: malformed #EXTINF line (expected #EXTINF:<seconds>,<title>)")
                extinf = m.group(2).strip() if m else None
            elif upper.startswith("#PLAYLIST:"):
                playlist.name = line[len("#PLAYLIST:") :].strip() or playlist.name
            continue
        playlist.entries.append(M3uEntry(lineno, line, extinf))
        extinf = None
    return playlist


# ----------------------------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class CsvEntry:
    line: int
    playlist: str
    path: str  # "" when the file has no path column or the row leaves it empty
    artist: str
    title: str


@dataclass
class CsvPlaylists:
    entries: list[CsvEntry] = field(default_factory=list)  # in file order; rows of one playlist keep theirs
    errors: list[str] = field(default_factory=list)
    failure: str | None = None  # the whole file is unusable (no valid header, malformed CSV)


def parse_csv(path: Path, content: str) -> CsvPlaylists:
    """The entries of a CSV of playlists: a header with ``playlist`` and ``path``, or ``playlist``, ``artist`` and
    ``title`` (both may be present). Rows with the wrong number of fields, without a playlist name or with
    neither a path nor a title are errors; a header without the columns or malformed CSV fails the file."""
    result = CsvPlaylists()
    reader = csv_reader(content)
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        col = {h: i for i, h in enumerate(header) if h}
        if "playlist" not in col or ("path" not in col and not {"artist", "title"} <= col.keys()):
            result.failure = (f"{path}:1: CSV header needs columns playlist and path, or playlist, artist and title"
                              f" (found: {', '.join(header) or 'nothing'})")
            return result
        rows: list[tuple[int, list[str]]] = []
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                result.errors.append(f"{path}:{reader.line_num}: expected {len(header)} fields, found {len(row)}")
                continue
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        result.failure = f"{path}:{reader.line_num}: malformed CSV ({exc}); nothing from this file was written"
        return result

    def get(row: list[str], name: str) -> str:
        return row[col[name]].strip() if name in col else ""

    for lineno, row in rows:
        entry = CsvEntry(lineno, get(row, "playlist"), get(row, "path"), get(row, "artist"), get(row, "title"))
        if not entry.playlist:
            result.errors.append(f"{path}:{lineno}: empty playlist name")
        elif not entry.path and not entry.title:
            result.errors.append(f"{path}:{lineno}: neither a path nor a title")
        else:
            result.entries.append(entry)
    return result


# ----------------------------------------------------------------------------------------- audio map


@dataclass
class AudioMap:
    pairs: list[tuple[int, str, str]] = field(default_factory=list)  # (line or entry number, track URI, audio path)
    errors: list[str] = field(default_factory=list)
    failure: str | None = None


def parse_audio_map(path: Path, raw: bytes) -> AudioMap:
    """The (track URI, audio path) pairs of an MPD audio map: JSON (``{uri: path}`` or ``[{"track_uri", "path"}]``)
    when the file ends in ``.json``, else CSV (``track_uri,path``, header optional). Paths are as written."""
    result = AudioMap()
    try:
        if path.suffix.lower() == ".json":
            _audio_map_json(path, raw, result)
        else:
            _audio_map_csv(path, raw, result)
    except (ValueError, csv.Error) as exc:
        result.failure = f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)
    return result


def _audio_map_json(path: Path, raw: bytes, result: AudioMap) -> None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}"
                         f" (char {exc.pos}): {exc.msg}") from None
    items = data.items() if isinstance(data, dict) else (
        (d.get("track_uri"), d.get("path") or d.get("audio_path")) if isinstance(d, dict) else (None, None)
        for d in (data if isinstance(data, list) else [])
    )
    for n, (uri, audio) in enumerate(items, 1):
        if isinstance(uri, str) and isinstance(audio, str) and uri and audio:
            result.pairs.append((n, uri, audio))
        else:
            result.errors.append(f"{path}: entry {n}: expected a track_uri and a path")


def _audio_map_csv(path: Path, raw: bytes, result: AudioMap) -> None:
    reader = csv_reader(decode_text(raw))
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        if reader.line_num == 1 and row[0].strip().lower() in {"track_uri", "uri"}:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            result.errors.append(f"{path}:{reader.line_num}: expected track_uri,path")
            continue
        result.pairs.append((reader.line_num, row[0].strip(), row[1].strip()))
