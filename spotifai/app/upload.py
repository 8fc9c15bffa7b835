"""Similar songs for an audio file the user uploads to the web demo (the cold start, served).

``POST /api/similar-to-file?k=10`` with the file's bytes as the request body (``Content-Type:
application/octet-stream`` or ``audio/*``; the page sends the chosen or dropped file as is). The upload is
bounded before it is decoded:

* size: at most :data:`MAX_UPLOAD_BYTES` (``Content-Length`` checked first, then the bytes actually read): 413;
* content type: form, text or other CORS-"simple" types are refused (415), so another web site cannot make a
  visitor's browser post to the demo without a preflight the server never grants;
* format: the first bytes must be those of a format the project decodes (:data:`ACCEPTED`): 415 otherwise,
  whatever the file name says; a file that then does not decode is a 422 with the decoder's reason.

The file is written to a private temporary folder (mode 0700) only for decoding, and removed before the
answer is sent; it is never kept, listed or served. The model (:func:`spotifai.load` on the experiment)
is loaded in the background when the server starts and runs for the request only, one upload at a time
(:data:`MAX_WAIT_S` of queueing, then 503).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_WAIT_S = 30.0
ACCEPTED = "WAV, FLAC, OGG (Vorbis, Opus), MP3 or M4A/AAC"
_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/")


class UploadError(Exception):
    """A refused upload: HTTP ``status`` and a ``detail`` fit for the user (no server paths)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def sniff(head: bytes) -> str | None:
    """The file suffix of the audio format the first bytes show, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return ".mp3"
    if head[4:8] == b"ftyp":
        return ".m4a"
    return None


def check_request(content_type: str | None, content_length: str | None, max_bytes: int) -> None:
    """Refuse before reading: a CORS-simple content type (415), a declared size over ``max_bytes`` (413)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if not kind or kind.startswith(_SIMPLE_TYPES):
        raise UploadError(415, "send the audio file itself (Content-Type application/octet-stream or audio/*)")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "invalid Content-Length") from None
        if declared > max_bytes:
            raise UploadError(413, f"the file is larger than {max_bytes // (1024 * 1024)} MB")


def check_body(data: bytes, max_bytes: int) -> str:
    """The suffix of an accepted upload; UploadError for an empty, oversized or non-audio body."""
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise UploadError(422, "the file is empty")
    suffix = sniff(data[:16])
    if suffix is None:
        raise UploadError(415, f"not an audio file this demo reads ({ACCEPTED})")
    return suffix


class UploadEmbedder:
    """The experiment's model for uploads: loaded in a background thread by :meth:`start`; :meth:`embed`
    gives the vector of an upload's bytes (one request at a time)."""

    def __init__(self, experiment: str | Path, space: str = "projections", load=None) -> None:
        self.experiment = Path(experiment)
        self.space = space
        self._load = load
        self.model = None
        self.status = "loading"
        self.ready = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spotifai-model", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        start = time.perf_counter()
        try:
            if self._load is not None:
                self.model = self._load()
            else:
                from spotifai.api import load

                self.model = load(self.experiment, space=self.space)
            self.status = "ready"
            log.info("model for uploads ready in %.2f s", time.perf_counter() - start)
        except Exception as exc:  # the rest of the demo works without it
            log.error("no model for uploads: %s", exc)
            self.status = "error: no trained model for this experiment (train it, or uploads stay off)"
        finally:
            self.ready.set()

    def embed(self, data: bytes, suffix: str) -> np.ndarray:
        """The (dim,) vector of the upload ``data`` (accepted by :func:`check_body`); UploadError otherwise."""
        if not self.ready.wait(MAX_WAIT_S) or self.model is None:
            raise UploadError(503, f"uploads are unavailable ({self.status})")
        if not self._busy.acquire(timeout=MAX_WAIT_S):
            raise UploadError(503, "the server is busy with other uploads; try again")
        try:
            with tempfile.TemporaryDirectory(prefix="spotifai-upload-") as folder:  # mode 0700
                path = Path(folder) / f"upload{suffix}"
                path.write_bytes(data)
                out = self.model.embed_files([path], progress=False)
            if out.failures:
                reason = str(out.failures[0]["reason"]).replace(str(path), "the file").replace(folder, "")
                raise UploadError(422, f"could not read the audio: {reason}")
            return out.vectors(self.space)[0]
        finally:
            self._busy.release()
