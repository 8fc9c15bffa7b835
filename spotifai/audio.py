"""The audio processor: decode -> mono -> resample to 16 kHz -> log-mel -> normalize -> patches.

Pipeline and conventions
------------------------
* **Decode** with ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...); integer PCM is read as
  integers and scaled here, everything else as float32.  Reads longer than 2 x
  :data:`PARALLEL_DECODE_MIN_SECONDS` are split into chunks decoded by parallel threads (:data:`DECODE_THREADS`);
  libsndfile seeks sample-accurately, so this equals a sequential read.  What libsndfile cannot read (m4a/AAC,
  opus, ...) falls back to ``torchcodec`` (FFmpeg), and so do whole-file reads of long OGG/Vorbis files
  (:data:`WHOLE_FILE_FFMPEG_SUBTYPES`: the same samples for about 0.6x the CPU).
* **Mono**: the mean of the channels.
* **Resample** to :data:`SAMPLE_RATE` = 16 kHz with torchaudio's windowed-sinc kernel
  (``torchaudio.transforms.Resample``, Hann window, ``lowpass_filter_width`` = :data:`RESAMPLE_FILTER_WIDTH`,
  rolloff 0.99).  The kernel is cached per source rate and applied *polyphase-sparsely*: torchaudio convolves
  every output phase with a ``2 * width + orig`` tap kernel of which only ~``2 * width`` taps are non-zero
  (for 44.1 kHz -> 16 kHz: 475 taps, 34 non-zero); we multiply groups of neighbouring phases with just the
  columns they use (see :class:`_Resampler`).  The result equals ``torchaudio.functional.resample`` up to float
  rounding (tested).
* **Log-mel** (``torch.stft`` + torchaudio's mel filterbank; equals torchaudio ``MelSpectrogram``): 25 ms Hann
  windows (:data:`WIN_LENGTH` = 400 samples, ``n_fft`` = 400), 10 ms hop (:data:`HOP_LENGTH` = 160), power
  spectrum, Slaney mel scale and filter normalization (as Whisper), 0 - 8 kHz.  Frames are *not* centred:
  frame ``k`` covers samples
  ``[160 k, 160 k + 400)``, so ``n_frames = 1 + (n_samples - 400) // 160`` and a window read of frames
  ``f0 .. f0 + P`` needs exactly samples ``[160 f0, 160 (f0 + P - 1) + 400)`` - no edge padding that would make a
  window differ from the same frames of a whole-file read.
* **Normalize** with fixed constants (never a per-file maximum, so a windowed read gives the same values as the
  same frames of the whole file)::

      x = (clamp(log10(mel_power), LOG_FLOOR, LOG_CEIL) - LOG_CENTER) / LOG_HALF_RANGE    in [-1, 1]

  with ``LOG_CEIL = 2.5`` (a full-scale sine peaks at log10 power ~2.3 with this filterbank),
  ``LOG_FLOOR = -5.5`` (80 dB below the ceiling; -80 dBFS noise sits below it), ``LOG_CENTER = -1.5`` and
  ``LOG_HALF_RANGE = 4``.  Silence maps to -1 (:data:`PAD_VALUE`, also used to pad the last patch).
* **Patches**: ``patch_frames`` consecutive frames; the last partial patch is padded with :data:`PAD_VALUE` when at
  least ``(1 - max_time_padding)`` of it is real audio, otherwise dropped.

Windowed reads seek (soundfile ``start``/``frames``; torchcodec ``get_samples_played_in_range``) and decode only
the window plus a small margin.  The margin is aligned to the resampler's period (e.g. 441 source samples =
160 output samples for 44.1 kHz) so the resampled window lies on the same 16 kHz grid as a whole-file read and
equals it (exactly for WAV/FLAC, approximately for lossy formats whose decoders prime differently after a seek).

Errors: every bad input raises :class:`AudioError` naming the file and the reason (missing, empty, unreadable,
no samples, silent, too short, window beyond the end).  Batch callers catch it and count the skip.  Silence is
checked on whole-file reads (:func:`load_audio` without a window, :func:`track_patches`); a silent *window* of a
song (an intro, a pause) is legitimate data and is returned as is.

Speed (bench/audio.py, 30 s 44.1 kHz stereo -> 64-mel patches): resample ~3 ms and mel ~4 ms of CPU; decoding
dominates compressed formats (libsndfile: FLAC ~28 ms, OGG/Vorbis ~46 ms, MP3 ~27 ms of CPU, WAV ~3.5 ms).  The
torch ops take a few ms each: run them on one torch thread in data workers (waking a second OpenMP thread for
every small op costs more than it saves on a busy machine).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from spotifai.configs import HOP_LENGTH, SAMPLE_RATE, AudioConfig

log = logging.getLogger(__name__)

WIN_LENGTH = 400
"""STFT window = FFT size, samples (25 ms at 16 kHz)."""
N_FFT = WIN_LENGTH

LOG_CEIL = 2.5
LOG_FLOOR = -5.5
LOG_CENTER = (LOG_CEIL + LOG_FLOOR) / 2  # -1.5
LOG_HALF_RANGE = (LOG_CEIL - LOG_FLOOR) / 2  # 4.0
PAD_VALUE = -1.0
"""Normalized value of silence; used to pad the last patch."""

RESAMPLE_FILTER_WIDTH = 6
"""torchaudio ``lowpass_filter_width`` (zero crossings of the sinc on each side).  Kept at torchaudio's default:
with the sparse polyphase application its cost is small, and a narrower filter only widens the transition band
around 8 kHz, i.e. in the top mel band."""
SILENCE_THRESHOLD = 1e-4
"""A decoded file whose peak absolute amplitude is below this (-80 dBFS) is 'silent'."""


class AudioError(Exception):
    """A file that cannot give audio: missing, empty, unreadable, silent, too short.

    Attributes: ``path`` (str) and ``reason`` (str); ``str(err) == f"{path}: {reason}"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


# ------------------------------------------------------------------------------------------------ decoding


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _sf_info(path: Path):
    """soundfile info, or None when libsndfile cannot open the file."""
    try:
        return sf.info(str(path))
    except Exception:  # libsndfile: unknown format, broken header, ...
        return None


_INT_SUBTYPES = {
    "PCM_S8": ("int16", 1 / 32768),
    "PCM_U8": ("int16", 1 / 32768),
    "PCM_16": ("int16", 1 / 32768),
    "PCM_24": ("int32", 1 / 2**31),
    "PCM_32": ("int32", 1 / 2**31),
}
"""Integer PCM (WAV, FLAC, AIFF) is read as integers and converted here: libsndfile's own int -> float conversion
costs ~6x the read itself for 16-bit WAV.  Same values as ``dtype="float32"`` (libsndfile scales by 1/32768)."""


def _to_mono(data: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(frames, channels) int or float -> (frames,) float32 mean of channels, times ``scale``."""
    channels = data.shape[1]
    out = data[:, 0].astype(np.float32)  # always a fresh contiguous array
    for c in range(1, channels):
        out += data[:, c]
    factor = np.float32(scale / channels)
    if factor != 1:
        out *= factor
    return out


PARALLEL_DECODE_MIN_SECONDS = 10.0
"""Whole-file/long reads are split into chunks of at least this many seconds, decoded in parallel threads
(libsndfile releases the GIL; each thread has its own file handle and seeks).  Seeks are sample-accurate in
libsndfile for WAV/FLAC/OGG/MP3, so the result equals a sequential read bit for bit (tested)."""


DECODE_THREADS: int | None = None
"""Threads for a long read (None: the CPUs this process may use, at most 4).  Set 1 in data-loader workers
that already run one process per core."""


def _decode_threads() -> int:
    if DECODE_THREADS is not None:
        return max(1, int(DECODE_THREADS))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _decode_sf(path: Path, start: int, stop: int | None) -> np.ndarray:
    """Frames ``[start, stop)`` (None: to the end) as float32 mono."""
    with sf.SoundFile(str(path)) as f:
        if start:
            f.seek(start)
        dtype, scale = _INT_SUBTYPES.get(f.subtype, ("float32", 1.0))
        data = f.read(-1 if stop is None else max(0, stop - start), dtype=dtype, always_2d=True)
    return _to_mono(data, scale)


def _run_parallel(fn, n: int) -> list:
    """``[fn(0), ..., fn(n - 1)]`` with ``fn(0)`` in the calling thread and the rest in plain threads (not a pool:
    safe in processes forked by a DataLoader).  The first exception is re-raised here."""
    results: list = [None] * n

    def work(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(1, n)]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _split(total: int, unit: int, min_len: float) -> list[int]:
    """Chunk starts (multiples of ``unit``, first 0) splitting ``total`` items into at most ``_decode_threads()``
    chunks of at least ``min_len``; a single ``[0]`` when splitting does not pay."""
    k = min(_decode_threads(), int(total // min_len))
    if k <= 1:
        return [0]
    return [total * i // k // unit * unit for i in range(k)]


def _decode_torchcodec(
    path: Path, start_s: float = 0.0, stop_s: float | None = None
) -> tuple[np.ndarray, int]:
    from torchcodec.decoders import AudioDecoder

    dec = AudioDecoder(str(path))
    samples = (
        dec.get_all_samples()
        if start_s == 0 and stop_s is None
        else dec.get_samples_played_in_range(start_s, stop_s)
    )
    data = samples.data.to(torch.float32)
    mono = data[0].clone()  # the channel mean as _to_mono computes it (Tensor.mean over dim 0 is ~10x slower)
    for c in range(1, data.shape[0]):
        mono += data[c]
    if data.shape[0] > 1:
        mono *= 1.0 / data.shape[0]
    return mono.numpy(), int(samples.sample_rate)


@dataclass(frozen=True)
class _Info:
    sample_rate: int
    frames: int | None  # None: unknown (torchcodec without an exact count)
    backend: str  # "soundfile" | "torchcodec"
    subtype: str = ""  # soundfile's subtype ("VORBIS", "PCM_16", ...); "" for torchcodec


def _info(path: Path) -> _Info:
    _check_file(path)
    info = _sf_info(path)
    if info is not None and info.samplerate > 0:
        return _Info(int(info.samplerate), int(info.frames), "soundfile", str(info.subtype))
    try:
        from torchcodec.decoders import AudioDecoder

        meta = AudioDecoder(str(path)).metadata
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({type(exc).__name__}: {exc})".strip()) from exc
    if not meta.sample_rate:
        raise AudioError(path, "unreadable audio (no sample rate)")
    duration = meta.duration_seconds_from_header or meta.duration_seconds
    frames = None if duration is None else int(round(duration * meta.sample_rate))
    return _Info(int(meta.sample_rate), frames, "torchcodec")


WHOLE_FILE_FFMPEG_SUBTYPES = frozenset({"VORBIS"})
"""libsndfile subtypes whose *whole-file* reads of at least :data:`WHOLE_FILE_FFMPEG_MIN_SECONDS` go through FFmpeg
(torchcodec) instead: its native Vorbis decoder takes about 0.55-0.65 of libvorbis' CPU time (3-min OGG files and
the real-music corpus; MP3 stays on libsndfile's mpg123, which beats FFmpeg's decoder by ~1.4x).  Both decoders
give the same samples to ~1e-7 of full scale (checked on the real-music corpus); the result is used only when its
length equals libsndfile's frame count, otherwise libsndfile decodes the file.  Windowed reads (seeks) always use
libsndfile."""
WHOLE_FILE_FFMPEG_MIN_SECONDS = 60.0
"""Shorter files stay on libsndfile: importing torchcodec costs a process 1.5-3 s of CPU (it imports
``torch._dynamo``), which only tracks of a real library's length pay back (a 4-min OGG saves ~0.1 s)."""


def _whole_via_ffmpeg(info: _Info) -> bool:
    return (
        info.backend == "soundfile"
        and info.subtype in WHOLE_FILE_FFMPEG_SUBTYPES
        and bool(info.frames)
        and info.frames >= WHOLE_FILE_FFMPEG_MIN_SECONDS * info.sample_rate
    )


def _decode_whole_ffmpeg(path: Path, info: _Info) -> np.ndarray | None:
    """The whole file through torchcodec as float32 mono, or None when FFmpeg disagrees with libsndfile's header
    (sample rate or number of samples) or fails: the caller then decodes with libsndfile."""
    try:
        data, sr = _decode_torchcodec(path)
    except Exception as exc:  # noqa: BLE001 - libsndfile gets its turn
        log.debug("%s: FFmpeg whole-file decode failed (%s); using libsndfile", path, exc)
        return None
    if sr != info.sample_rate or data.shape[0] != info.frames:
        log.debug("%s: FFmpeg gave %d samples at %d Hz, libsndfile %s at %d Hz; using libsndfile",
                  path, data.shape[0], sr, info.frames, info.sample_rate)
        return None
    return data


def _decode(path: Path, info: _Info, start: int, stop: int | None) -> np.ndarray:
    """Source samples ``[start, stop)`` (None: to the end) as (n,) float32 mono at ``info.sample_rate``."""
    try:
        if start == 0 and stop is None and _whole_via_ffmpeg(info):
            data = _decode_whole_ffmpeg(path, info)
            if data is not None:
                return data
        if info.backend == "soundfile":
            return _decode_sf(path, start, stop)
        sr = info.sample_rate
        data, sr2 = _decode_torchcodec(path, start / sr, None if stop is None else stop / sr)
        if sr2 != sr:
            raise RuntimeError(f"decoder sample rate {sr2} != header sample rate {sr}")
        return data
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({type(exc).__name__}: {exc})") from exc


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (fast, no decoding).  AudioError if unreadable."""
    path = Path(path)
    info = _info(path)
    if info.frames is None:
        raise AudioError(path, "unreadable audio (no duration in the header)")
    return info.frames / info.sample_rate


# ---------------------------------------------------------------------------------------------- resampling


class _Resampler:
    """torchaudio's sinc resampling kernel, applied sparsely per group of output phases.

    ``orig``/``new`` are the rates divided by their gcd: every ``orig`` input samples give ``new`` output samples.
    torchaudio pads the input by ``width`` (left) and ``width + orig`` (right), convolves with a
    ``(new, 1, 2 * width + orig)`` kernel at stride ``orig`` and interleaves the ``new`` phases.  Phase ``i`` only
    has non-zero taps around ``i * orig / new`` (for 44.1 -> 16 kHz: 34 of 475).  We view the padded signal as
    overlapping blocks ``U`` (n_blocks, 2 * width + orig) - a strided view, no copy - and compute each group of
    neighbouring phases as one GEMM ``U[:, a:b] @ K[phases, a:b]^T`` over just the columns the group uses: the
    same sums with ~7x fewer multiply-adds and a dozen BLAS calls instead of a wide convolution.  The (n_blocks,
    new) result is already in output order (block-major, phase-minor).

    Small periods (48 -> 16 kHz: ``orig`` = 3, ``new`` = 1) would make these products matrix-vector products over
    overlapping rows, which BLAS cannot take without a copy of every block (~14x the signal); the period is then
    widened to ``m`` periods (``orig * m`` >= :data:`_RESAMPLE_MIN_PERIOD` input samples giving ``new * m``
    phases, each phase the original kernel shifted by whole periods): the same sums, 6-8x faster for 32/48 kHz.
    Long signals are processed in chunks of about :data:`_RESAMPLE_CHUNK` input samples, so the blocks every
    group re-reads stay in the CPU cache.
    """

    def __init__(
        self, orig_sr: int, new_sr: int = SAMPLE_RATE, lowpass_filter_width: int = RESAMPLE_FILTER_WIDTH
    ):
        self.orig_sr, self.new_sr = orig_sr, new_sr
        g = math.gcd(orig_sr, new_sr)
        self.orig, self.new = orig_sr // g, new_sr // g
        t = torchaudio.transforms.Resample(orig_sr, new_sr, lowpass_filter_width=lowpass_filter_width)
        base = t.kernel.to(torch.float32)[:, 0]  # (new, 2 * width + orig)
        self.width = int(t.width)
        m = -(-_RESAMPLE_MIN_PERIOD // self.orig) if self.orig != self.new else 1
        if m > 1:  # m periods at once: phase j * new + i is phase i shifted by j * orig input samples
            kernel = base.new_zeros(self.new * m, 2 * self.width + self.orig * m)
            for j in range(m):
                kernel[j * self.new : (j + 1) * self.new, j * self.orig : j * self.orig + base.shape[1]] = base
            self.orig, self.new = self.orig * m, self.new * m
        else:
            kernel = base
        self.kernel_len = kernel.shape[-1]
        self.chunk = max(1, _RESAMPLE_CHUNK // self.orig)  # blocks per chunk
        nz = kernel.abs() > 0
        cols = torch.arange(self.kernel_len)
        first = torch.where(nz, cols, self.kernel_len).min(dim=1).values.tolist()
        last = torch.where(nz, cols, -1).max(dim=1).values.tolist()
        support = max(b - a + 1 for a, b in zip(first, last, strict=True))
        group = max(1, round(support * self.new / self.orig))  # phases per group: span added ~= support
        self.groups: list[tuple[int, int, torch.Tensor]] = []  # (col0, col1, kernel slice^T (cols, phases))
        for p0 in range(0, self.new, group):
            p1 = min(self.new, p0 + group)
            a, b = min(first[p0:p1]), max(last[p0:p1]) + 1
            self.groups.append((a, b, kernel[p0:p1, a:b].T.contiguous()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) float32 at ``orig_sr`` -> (..., ceil(n * new / orig)) at ``new_sr``."""
        if self.orig == self.new:
            return x
        shape, length = x.shape, x.shape[-1]
        x2 = x.reshape(-1, length)
        n_blocks = length // self.orig + 1  # of the signal padded by (width, width + orig)
        groups = [(a, b, k.to(x.device)) for a, b, k in self.groups]
        y = x2.new_empty((x2.shape[0], n_blocks, self.new))
        for b0 in range(0, n_blocks, self.chunk):
            b1 = min(n_blocks, b0 + self.chunk)
            # padded samples [b0 * orig, (b1 - 1) * orig + kernel_len) = signal samples shifted by -width;
            # only the chunks at the two ends are copied to add the zeros
            s0, s1 = b0 * self.orig - self.width, (b1 - 1) * self.orig + self.kernel_len - self.width
            part = x2[:, max(0, s0) : min(length, s1)]
            if s0 < 0 or s1 > length:
                part = torch.nn.functional.pad(part, (max(0, -s0), max(0, s1 - length)))
            blocks = part.unfold(-1, self.kernel_len, self.orig)  # (B, b1 - b0, kernel_len), a view
            for row in range(x2.shape[0]):
                torch.cat([blocks[row, :, a:b] @ k for a, b, k in groups], dim=-1, out=y[row, b0:b1])
        target = -(-self.new * length // self.orig)
        return y.reshape(x2.shape[0], -1)[:, :target].reshape(*shape[:-1], -1)


_RESAMPLE_MIN_PERIOD = 128
"""Input samples per block of :class:`_Resampler` at least (small periods are widened to this)."""
_RESAMPLE_CHUNK = 1 << 18
"""Input samples per chunk of :class:`_Resampler` (about 6 s at 44.1 kHz; 1 MiB of float32)."""


@lru_cache(maxsize=32)
def _resampler(orig_sr: int) -> _Resampler:
    return _Resampler(orig_sr)


def resample(waveform: torch.Tensor, orig_sr: int) -> torch.Tensor:
    """Resample (..., n) float32 from ``orig_sr`` Hz to 16 kHz (torchaudio sinc kernel, cached per rate)."""
    if orig_sr == SAMPLE_RATE:
        return waveform
    return _resampler(int(orig_sr))(waveform)


# ---------------------------------------------------------------------------------------------- loading


def _load_16k(
    path: Path, start: int = 0, n_out: int | None = None, check_silence: bool = True
) -> torch.Tensor:
    """16 kHz mono samples ``[start, start + n_out)`` of the 16 kHz version of the file (to the end if None).

    A long whole-file read is split into windows (aligned to the resampler period) that threads decode and
    resample concurrently; windows equal the same samples of a sequential whole-file read.
    """
    info = _info(path)
    whole = start == 0 and n_out is None
    wav = None
    if whole and info.backend == "soundfile" and info.frames and not _whole_via_ffmpeg(info):
        sr = info.sample_rate
        total = -(-info.frames * SAMPLE_RATE // sr)  # = torchaudio's output length
        unit = math.lcm(_resampler(sr).new if sr != SAMPLE_RATE else 1, HOP_LENGTH)
        starts = _split(total, unit, PARALLEL_DECODE_MIN_SECONDS * SAMPLE_RATE)
        if len(starts) > 1:
            ends = [*starts[1:], None]
            try:
                wav = torch.cat(_run_parallel(
                    lambda i: _window_16k(
                        path, info, starts[i], None if ends[i] is None else ends[i] - starts[i]
                    ),
                    len(starts),
                ))
            except AudioError:  # a header that overstates the length (a window past the real end): read it whole
                wav = None
    if wav is None:
        wav = _window_16k(path, info, start, n_out)
    if check_silence and whole and float(wav.abs().max()) < SILENCE_THRESHOLD:
        raise AudioError(path, f"silent audio (peak amplitude below {SILENCE_THRESHOLD:g})")
    return wav


def _window_16k(path: Path, info: _Info, start: int, n_out: int | None) -> torch.Tensor:
    """16 kHz samples ``[start, start + n_out)``: decode the source window plus a margin aligned to the resampler
    period, so the result lies on the same grid as, and equals, the same samples of a whole-file read."""
    sr = info.sample_rate
    whole = start == 0 and n_out is None
    if whole:
        src0, src1, js = 0, None, 0
    elif sr == SAMPLE_RATE:
        src0, src1, js = start, start + n_out if n_out is not None else None, start
    else:
        r = _resampler(sr)
        margin = -(-r.width // r.orig) + 1  # blocks of `orig` source samples
        b0 = max(0, start // r.new - margin)
        src0, js = b0 * r.orig, b0 * r.new
        src1 = None if n_out is None else (-(-(start + n_out) // r.new) + margin) * r.orig
        if info.frames is not None and src1 is not None and src1 >= info.frames:
            src1 = None
    beyond = f"window starts at {start / SAMPLE_RATE:.3f} s, beyond the end of the audio"
    if info.frames is not None and src0 >= info.frames > 0:
        raise AudioError(path, beyond)
    data = _decode(path, info, src0, src1)
    if data.size == 0:
        raise AudioError(path, "no audio samples" if whole else beyond)
    if not np.isfinite(data).all():
        raise AudioError(path, "decoded samples contain NaN or infinity")
    wav = resample(torch.from_numpy(data), sr)
    if not whole:
        lo = start - js
        wav = wav[lo:] if n_out is None else wav[lo : lo + n_out]
        if wav.numel() == 0:
            raise AudioError(path, beyond)
    return wav


def load_audio(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> torch.Tensor:
    """Decode ``path`` to (samples,) float32 mono at 16 kHz, in [-1, 1].

    ``offset``/``duration`` (seconds) select a window, read by seeking where the format allows; the window's
    samples equal the same samples of a whole-file read (up to lossy-decoder differences).  A window reaching past
    the end is shortened.  Raises AudioError (missing, empty, unreadable, no samples, silent whole file, window
    beyond the end).
    """
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"{path}: bad window offset={offset} duration={duration}")
    start = int(round(offset * SAMPLE_RATE))
    n_out = None if duration is None else int(round(duration * SAMPLE_RATE))
    return _load_16k(Path(path), start, n_out)


# ------------------------------------------------------------------------------------------------- log-mel


def n_frames(n_samples: int) -> int:
    """Number of mel frames for ``n_samples`` 16 kHz samples (un-centred frames): 0 if shorter than a window."""
    return 0 if n_samples < WIN_LENGTH else 1 + (n_samples - WIN_LENGTH) // HOP_LENGTH


class LogMel(torch.nn.Module):
    """Normalized log-mel spectrogram of 16 kHz audio (see the module docstring for the constants).

    forward: (B, samples) -> (B, n_mels, frames) or (samples,) -> (n_mels, frames), float32, in [-1, 1];
    ``frames = 1 + (samples - 400) // 160``.  Move it with ``.to(device)``; batching a whole batch on a GPU works.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.n_mels = n_mels
        # The same window and filterbank as torchaudio.transforms.MelSpectrogram(n_fft=400, hop_length=160,
        # center=False, norm="slaney", mel_scale="slaney") (tested equal); the power is computed as
        # re^2 + im^2 into a contiguous tensor (|X|^2 via abs() costs a sqrt per bin and ~4x the time).
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("fb_t", fb.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.shape[-1] < WIN_LENGTH:
            raise ValueError(f"need at least {WIN_LENGTH} samples for one frame, got {waveform.shape[-1]}")
        x = waveform.to(device=self.window.device, dtype=torch.float32)
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]),
            N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (B, n_freqs, frames)
        re, im = torch.view_as_real(spec).unbind(-1)
        power = re * re  # contiguous (a strided .real view would slow the matmul down 4x)
        power.addcmul_(im, im)
        mel = torch.matmul(self.fb_t, power)  # (B, n_mels, frames)
        logmel = mel.clamp_(min=10.0**LOG_FLOOR).log10_()
        logmel = logmel.clamp_(max=LOG_CEIL).sub_(LOG_CENTER).div_(LOG_HALF_RANGE)
        return logmel.reshape(*x.shape[:-1], self.n_mels, logmel.shape[-1])


@lru_cache(maxsize=16)
def _logmel(n_mels: int, device: str) -> LogMel:
    return LogMel(n_mels).to(device)


def _device_key(device) -> str:
    return str(torch.device(device)) if device is not None else "cpu"


# ------------------------------------------------------------------------------------------------- patches


def to_patches(mel: torch.Tensor, patch_frames: int, max_time_padding: float = 0.25) -> torch.Tensor:
    """Split (n_mels, frames) into (n_patches, n_mels, patch_frames).

    Full patches are taken left to right; the remaining frames become a last patch padded with
    :data:`PAD_VALUE` when they are at least ``(1 - max_time_padding) * patch_frames``, else they are dropped.
    The result may have 0 patches.
    """
    n_mels, frames = mel.shape
    n_full, rem = divmod(frames, patch_frames)
    full = mel[:, : n_full * patch_frames].reshape(n_mels, n_full, patch_frames).transpose(0, 1)
    if rem > 0 and rem >= (1.0 - max_time_padding) * patch_frames:
        last = mel.new_full((1, n_mels, patch_frames), PAD_VALUE)
        last[0, :, :rem] = mel[:, n_full * patch_frames :]
        return torch.cat([full, last], dim=0)
    return full.contiguous()


def waveform_patches(
    waveform: torch.Tensor, sample_rate: int, config: AudioConfig, device=None, path: str = "<waveform>"
) -> torch.Tensor:
    """(samples,) or (channels, samples) float audio at ``sample_rate`` -> (n_patches, n_mels, patch_frames).

    Raises AudioError (naming ``path``) if silent or too short for one patch.
    """
    wav = waveform.to(torch.float32)
    if wav.dim() == 2:
        wav = wav.mean(dim=0)
    wav = resample(wav, int(sample_rate))
    if wav.numel() == 0:
        raise AudioError(path, "no audio samples")
    if float(wav.abs().max()) < SILENCE_THRESHOLD:
        raise AudioError(path, f"silent audio (peak amplitude below {SILENCE_THRESHOLD:g})")
    return _patches_from_16k(wav, config, device, path)


def _patches_from_16k(wav: torch.Tensor, config: AudioConfig, device, path) -> torch.Tensor:
    need = int(math.ceil((1.0 - config.max_time_padding) * config.patch_frames))
    frames = n_frames(wav.numel())
    if frames < max(need, 1):
        raise AudioError(
            path,
            f"too short: {wav.numel() / SAMPLE_RATE:.2f} s gives {frames} frames, "
            f"a patch needs at least {need} of {config.patch_frames}",
        )
    dev = _device_key(device)
    lm = _logmel(config.n_mels, dev)
    starts = (
        _split(wav.numel(), HOP_LENGTH, PARALLEL_DECODE_MIN_SECONDS * SAMPLE_RATE) if dev == "cpu" else [0]
    )
    if (
        len(starts) > 1
    ):  # frames partition exactly: chunk [s_i, s_(i+1) + 240) gives (s_(i+1) - s_i) / 160 frames
        ends = [s + WIN_LENGTH - HOP_LENGTH for s in starts[1:]] + [wav.numel()]
        mel = torch.cat(_run_parallel(lambda i: lm(wav[starts[i] : ends[i]]), len(starts)), dim=-1)
    else:
        mel = lm(wav.to(dev))
    return to_patches(mel, config.patch_frames, config.max_time_padding)


def track_patches(path: str | os.PathLike, config: AudioConfig, device=None) -> torch.Tensor:
    """The whole song as (n_patches, n_mels, patch_frames) float32 patches (mel computed on ``device``).

    Raises AudioError for missing/empty/unreadable/silent files and for files too short for one patch.
    """
    path = Path(path)
    wav = _load_16k(path)
    return _patches_from_16k(wav, config, device, path)


def read_patch(path: str | os.PathLike, offset_s: float, config: AudioConfig) -> torch.Tensor:
    """One (n_mels, patch_frames) patch whose first frame starts at ``offset_s`` seconds (rounded to a 10 ms frame).

    Windowed read: only the needed samples (+ a small resampling margin) are decoded.  Equals
    ``to_patches(whole-file mel)[...]`` frames ``f0 .. f0 + patch_frames`` where ``f0 = round(offset_s * 100)``.
    A window reaching past the end is padded with :data:`PAD_VALUE` if at least ``1 - max_time_padding`` of it
    is audio; otherwise AudioError.
    """
    path = Path(path)
    if offset_s < 0:
        raise ValueError(f"{path}: negative offset {offset_s}")
    f0 = int(round(offset_s * SAMPLE_RATE / HOP_LENGTH))
    n_samples = (config.patch_frames - 1) * HOP_LENGTH + WIN_LENGTH
    wav = _load_16k(path, f0 * HOP_LENGTH, n_samples, check_silence=False)
    frames = n_frames(wav.numel())
    need = (1.0 - config.max_time_padding) * config.patch_frames
    if frames < max(need, 1):
        raise AudioError(
            path,
            f"window at {offset_s:.2f} s has only {frames} of {config.patch_frames} frames before the end",
        )
    mel = _logmel(config.n_mels, "cpu")(wav)
    if frames < config.patch_frames:
        padded = mel.new_full((config.n_mels, config.patch_frames), PAD_VALUE)
        padded[:, :frames] = mel
        return padded
    return mel
