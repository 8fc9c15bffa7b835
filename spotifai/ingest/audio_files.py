"""One audio file of a music library: its duration (what really decodes) and its names (tags, else the path).

Used by :mod:`spotifai.ingest`. Duration comes from libsndfile (``soundfile``), which also decodes the last frames
to catch truncated files, else from mutagen (M4A, some MP3 / Opus variants). Tags are read with mutagen; names
missing from the tags come from the path ``Artist/Album/NN Title.ext``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mutagen
import soundfile

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"})
_SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".opus"})
_TRACK_NUMBER = re.compile(r"^\s*(?:\d{1,2}[-.])?\d{1,3}\s*(?:[-._)]\s*|\s+)(?=\S)")


class UnreadableAudio(Exception):
    """An audio file that cannot be used; ``str()`` is the reason."""


@dataclass(frozen=True)
class AudioFileInfo:
    """Metadata of one audio file: duration in seconds, tags or path-derived names (None when unknown)."""

    title: str
    artist: str | None
    album: str | None
    genre: str | None
    duration: float
    warning: str | None = None  # something odd that did not stop the file from being used


def _first_tag(tags, *keys: str) -> str | None:
    if tags is None:
        return None
    for key in keys:
        try:
            value = tags.get(key)
        except (KeyError, ValueError, TypeError):
            continue
        if value is None:
            continue
        if hasattr(value, "text"):  # an ID3 frame
            value = value.text
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _names_from_path(path: Path, root: Path | None) -> tuple[str, str | None, str | None]:
    """(title, artist, album) from ``Artist/Album/NN Title.ext`` below ``root``."""
    try:
        parents = path.relative_to(root).parts[:-1] if root else ()
    except ValueError:
        parents = ()
    if not parents and root is None:
        parents = path.parts[-3:-1]
    title = _TRACK_NUMBER.sub("", path.stem).strip() or path.stem
    artist = album = None
    if len(parents) >= 2:
        artist, album = parents[-2], parents[-1]
    elif len(parents) == 1:
        artist = parents[0]
    if artist is None and " - " in title:
        artist, title = (s.strip() for s in title.split(" - ", 1))
    return title, artist, album


def _duration(path: Path) -> tuple[float | None, str | None]:
    """(seconds of audio, warning) per libsndfile, after decoding the last frames; (None, None) when libsndfile
    cannot open the format. Raises UnreadableAudio when the file is damaged.

    When the end the header announces cannot be reached (the header's frame count is larger than what the
    stream holds: real libraries have such OGG and MP3 files, which ffmpeg and libsndfile play to the end of
    their audio), the file is decoded once from the start: if that runs to the end of the stream without a
    decoder error, the decoded length is used and a warning returned; a decoder error (a file cut in the middle
    of a frame, garbage) makes it unreadable."""
    if path.suffix.lower() not in _SOUNDFILE_EXTENSIONS:
        return None, None
    try:
        f = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        if path.suffix.lower() in {".mp3", ".opus"}:
            return None, None  # let mutagen try (some MP3 / Opus variants libsndfile does not take)
        raise UnreadableAudio(f"cannot decode ({exc})") from exc
    with f:
        frames, rate = f.frames, f.samplerate
        if frames <= 0 or rate <= 0:
            raise UnreadableAudio("no audio frames")
        tail = min(frames, 4096)
        try:
            if f.seekable():
                f.seek(frames - tail)
            else:
                tail = frames
            got = len(f.read(tail, dtype="float32"))
        except (soundfile.LibsndfileError, RuntimeError):
            got = -1
    if got >= tail * 0.99:
        return frames / rate, None
    decoded = _decoded_frames(path, frames)
    if decoded <= 0:
        raise UnreadableAudio(f"truncated: the header says {frames} frames, none decode")
    return decoded / rate, (
        f"the header says {frames} frames ({frames / rate:.2f} s), the audio ends after {decoded}"
        f" ({decoded / rate:.2f} s); using the decoded length"
    )


def _decoded_frames(path: Path, header_frames: int) -> int:
    """Frames that decode from the start of ``path`` to the end of its stream (UnreadableAudio on a decoder
    error: a damaged or cut file)."""
    block = 65536
    n = 0
    try:
        with soundfile.SoundFile(str(path)) as f:
            while True:
                got = len(f.read(block, dtype="float32"))
                n += got
                if got < block or n > header_frames:
                    return n
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise UnreadableAudio(
            f"truncated or damaged: the header says {header_frames} frames, decoding fails after about {n} ({exc})"
        ) from exc


def read_audio_file(path: str | Path, root: str | Path | None = None) -> AudioFileInfo:
    """Tags and duration of one audio file. Names missing from the tags are taken from the path below
    ``root`` (``Artist/Album/NN Title.ext``). Raises :class:`UnreadableAudio` with the reason; ``warning`` of
    the result says what was odd about a file that is still used (a header that overstates the length)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableAudio("empty file")
    except OSError as exc:
        raise UnreadableAudio(f"cannot read ({exc.strerror or exc})") from exc
    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception as exc:  # mutagen raises many types for damaged files
        tagged = None
        tag_error = f"{type(exc).__name__}: {exc}"
    else:
        tag_error = None
    duration, warning = _duration(path)
    if duration is None:
        length = getattr(getattr(tagged, "info", None), "length", None)
        if not length or length <= 0:
            raise UnreadableAudio(f"not a readable audio file{f' ({tag_error})' if tag_error else ''}")
        duration = float(length)
    tags = getattr(tagged, "tags", None)
    title, artist, album = _names_from_path(path, Path(root) if root is not None else None)
    return AudioFileInfo(
        title=_first_tag(tags, "title", "TIT2", "\xa9nam") or title,
        artist=_first_tag(tags, "artist", "TPE1", "albumartist", "\xa9ART") or artist,
        album=_first_tag(tags, "album", "TALB", "\xa9alb") or album,
        genre=_first_tag(tags, "genre", "TCON", "\xa9gen"),
        duration=round(duration, 6),
        warning=warning,
    )
