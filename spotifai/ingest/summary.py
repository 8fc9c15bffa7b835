"""What an ingestion run did (:class:`IngestSummary`), in a form that is safe to print.

Everything recorded here comes from input files (paths, playlist lines, tags, error messages that quote them):
it is stored and logged through :func:`spotifai.printable.printable`, so an ESC sequence in an M3U entry is shown
as ``\\x1b`` instead of reaching the terminal, and a 20 MB line is cut to a few hundred characters.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from spotifai.printable import printable

log = logging.getLogger("spotifai.ingest")

MAX_LISTED = 1000  # per list in the summary: further items are counted, not listed
ENTRY_CHARS = 200  # a playlist entry is shown with at most this many characters
MESSAGE_CHARS = 600  # an error or warning message is shown with at most this many characters
# Counters of what was written: a source whose transaction is rolled back gives back what it counted here.
_WRITE_COUNTERS = ("tracks_added", "tracks_updated", "tracks_unchanged", "playlists_added", "playlists_updated",
                   "playlists_unchanged", "memberships_written")


@dataclass
class IngestSummary:
    """What an ingestion run did. ``skipped``: (path, reason) of unreadable audio files; ``unmatched``:
    (file, line or entry number, entry) of playlist entries that matched no track; ``errors``: malformed lines,
    entries that could not be looked up and aborted files, each naming the file (and line or position);
    ``warnings``: files used despite something odd (a header that overstates the length). Every text is
    escaped and cut (:func:`spotifai.printable.printable`)."""

    tracks_added: int = 0
    tracks_updated: int = 0
    tracks_unchanged: int = 0
    playlists_added: int = 0
    playlists_updated: int = 0
    playlists_unchanged: int = 0
    memberships_written: int = 0
    sources_ingested: int = 0
    sources_failed: int = 0
    skipped_files: int = 0
    unmatched_entries: int = 0
    error_count: int = 0
    warning_count: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[tuple[str, int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def playlists(self) -> int:
        """Playlists written (added or replaced) in this run."""
        return self.playlists_added + self.playlists_updated

    def skip(self, path: str | Path, reason: str) -> None:
        path, reason = printable(path, MESSAGE_CHARS), printable(reason, MESSAGE_CHARS)
        self.skipped_files += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append((path, reason))
        log.warning("skipped %s: %s", path, reason)

    def unmatched_entry(self, file: str | Path, line: int, entry: str) -> None:
        file, entry = printable(file, MESSAGE_CHARS), printable(entry, ENTRY_CHARS)
        self.unmatched_entries += 1
        if len(self.unmatched) < MAX_LISTED:
            self.unmatched.append((file, line, entry))
        log.debug("%s:%d: no track matches %s", file, line, entry)

    def error(self, message: str) -> None:
        message = printable(message, MESSAGE_CHARS)
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(message)
        log.warning("%s", message)

    def warn(self, message: str) -> None:
        message = printable(message, MESSAGE_CHARS)
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(message)
        log.warning("%s", message)

    def write_counts(self) -> dict[str, int]:
        """The counters of what was written (to give back with :meth:`restore` when a transaction fails)."""
        return {name: getattr(self, name) for name in _WRITE_COUNTERS}

    def restore(self, counts: dict[str, int]) -> None:
        for name, value in counts.items():
            setattr(self, name, value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["playlists"] = self.playlists
        return d

    def to_text(self) -> str:
        lines = [
            f"tracks: {self.tracks_added} added, {self.tracks_updated} updated, {self.tracks_unchanged} unchanged",
            f"playlists: {self.playlists_added} added, {self.playlists_updated} updated,"
            f" {self.playlists_unchanged} unchanged; {self.memberships_written} memberships written",
            f"sources: {self.sources_ingested} ingested, {self.sources_failed} failed; {self.seconds:.1f} s",
            f"skipped audio files: {self.skipped_files}",
            *(f"  {path}: {reason}" for path, reason in self.skipped),
            f"unmatched playlist entries: {self.unmatched_entries}",
            *(f"  {file}:{line}: {entry}" for file, line, entry in self.unmatched[:50]),
        ]
        if self.unmatched_entries > 50:
            lines.append(f"  … {self.unmatched_entries - 50} more")
        lines += [f"errors: {self.error_count}", *(f"  {message}" for message in self.errors)]
        if self.warning_count:
            lines += [f"warnings: {self.warning_count}", *(f"  {message}" for message in self.warnings)]
        return "\n".join(lines)

    __str__ = to_text


assert set(_WRITE_COUNTERS) <= {f.name for f in fields(IngestSummary)}
