"""Text from input made safe to print: the one helper every summary, log and error message goes through.

File names, playlist lines, tags and config values come from files that anyone may have written. Printed raw,
an ESC sequence in an M3U entry recolours or rewrites the user's terminal (or worse), and a 20 MB line floods
it. :func:`printable` shows control and format characters as Python escapes (``\\x1b``, ``\\u202e``: visible,
unambiguous, nothing is interpreted) and cuts the text to a length limit, saying how much was cut.
:class:`PrintableFormatter` applies it to every log record the ``spotifai`` command prints.
"""

from __future__ import annotations

import logging
import re

#: Default length limit of :func:`printable` (characters, before escaping).
MAX_CHARS = 300

# C0/C1 controls and DEL (Cc), format characters such as bidi overrides and zero-width ones (Cf), line and
# paragraph separators, lone surrogates (undecodable bytes of a file name under surrogateescape).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)


def _escape(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, limit: int | None = MAX_CHARS) -> str:
    """``str(value)`` with control / format characters escaped (``"\\x1b[2J"`` -> ``"\\\\x1b[2J"``) and cut to
    ``limit`` characters (None: no cut) with ``"… (N more characters)"`` appended when cut."""
    text = value if isinstance(value, str) else str(value)
    cut = 0
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit]
    text = _UNSAFE.sub(_escape, text)
    return f"{text}… ({cut} more characters)" if cut else text


class PrintableFormatter(logging.Formatter):
    """A logging formatter whose message part goes through :func:`printable` (with ``limit``)."""

    def __init__(self, fmt: str | None = None, *, limit: int | None = 2000) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message, self.limit)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return "\n".join(printable(line, None) for line in super().formatException(ei).split("\n"))


def configure_logging(level: int, fmt: str) -> None:
    """``logging.basicConfig`` for a command: records go to stderr through :class:`PrintableFormatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def error_line(command: str, exc: BaseException) -> str:
    """The one line a command prints for a failure: ``"<command>: error: <message>"``, the message printable."""
    return f"{command}: error: {printable(exc, 2000)}"

