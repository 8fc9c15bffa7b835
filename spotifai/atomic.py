"""The one atomic file writer of the package: every file an experiment, a cache or a figure is made of is
written through it.

A write goes to a temporary file in the target's own folder (same file system, so the final rename is atomic),
is flushed and fsynced, gets the permissions an ordinary ``open()`` would give it (``0o666 & ~umask``: 0644
under the usual umask 022; ``tempfile.mkstemp`` alone would leave it 0600, unreadable for the other users of a
shared server), and is renamed over the target. A reader therefore sees the old file or the new one, never a
half-written one; a process killed while writing leaves at most a ``.<name>.<random>.tmp`` file behind (hidden,
ending in ``.tmp``), which the next write does not trip over.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``); elsewhere it is
    set and restored under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits of a newly written file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


@contextmanager
def open_atomic(path: str | Path) -> Iterator[BinaryIO]:
    """``with open_atomic(path) as fh: fh.write(...)``: a binary file handle whose content replaces ``path``
    when the block ends without an exception (flushed, fsynced, ``0o666 & ~umask``, renamed); on an
    exception the temporary file is removed and ``path`` is left as it was. Creates missing parent folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` atomically with ``data``; returns the path."""
    with open_atomic(path) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` atomically with ``text``; returns the path."""
    return write_bytes(path, text.encode(encoding))


def write_with(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Replace ``path`` atomically with what ``write(fh)`` writes to a binary file handle (``np.save``,
    ``np.savez``, ``fig.savefig``, ...); returns the path."""
    with open_atomic(path) as fh:
        write(fh)
    return Path(path)
