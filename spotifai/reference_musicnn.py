"""Worker: musicnn's pretrained MSD model, penultimate layer, one vector per track.

Run by the musicnn venv's python (``bash scripts/install_musicnn.sh``), never imported by the main venv::

    .venv-musicnn/bin/python spotifai/reference_musicnn.py --input paths.json --output out.npz

``paths.json`` is a JSON list of audio paths. For each track: decode the first ``--seconds`` (120) with
librosa at musicnn's 16 kHz, musicnn's own log-mel (96 bands, FFT 512, hop 256, ``log10(10000 x + 1)`` of the
float16 mel power), cut into non-overlapping 3 s windows (187 frames, musicnn's default: the models were
trained on 3 s; a tail shorter than a window is dropped, as musicnn does), the 200 activations of the
penultimate layer (``bn_dense``) for each window, and their mean over windows.

Against musicnn's own ``musicnn.extractor.extractor(path, model="MSD_musicnn", extract_features=True)``
(tests/test_reference.py): every window's activations here equal its taggram and, for the first window, its
``features["penultimate"]``. Its later rows of ``features["penultimate"]`` are NOT the later windows: musicnn
0.1.0's loop over batches unpacks them into ``backend_`` and concatenates the first batch's ``penultimate_``
again, so the mean of that array is the first 3 s window only (for a track of one window the two agree).
The mean over all windows within the first 120 s is what is computed here.

The graph comes from musicnn's own ``models.define_model`` and ``configuration``, but the checkpoint is
restored here with a ``tf.compat.v1`` Saver and no ``except``: musicnn's extractor swallows a failed restore in
a bare ``except`` and then runs on freshly initialized weights; here a missing or mismatched checkpoint is
an error (exit status 2). A track that cannot be decoded or is shorter than one window is skipped and listed
with its reason, never fatal. The output npz is written atomically (temporary file + rename):

* ``paths`` (N,) str and ``vectors`` (N, 200) float32, the tracks that worked, in input order;
* ``windows`` (N,) int, the number of 3 s windows averaged; ``seconds`` (N,) float, the audio decoded;
* ``failed_paths`` / ``failed_reasons`` (M,) str;
* ``meta``: a JSON string (model, layer, seconds, sample rate, window, checkpoint, package versions).

Imports only the standard library, numpy, librosa, tensorflow and musicnn (no spotifai module: those import
torch, which the musicnn venv does not have). Exit status 3 when tensorflow, librosa or musicnn is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

# Run as a script, this file's folder (spotifai/: modules named audio, model, index, search...) comes first
# on sys.path and could shadow a library's top-level import; take it off (reference.py also runs python -I).
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import numpy as np  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before tensorflow is imported: no info lines on stderr

MODELS = ("MSD_musicnn", "MTT_musicnn")  # same architecture (musicnn, 200-unit penultimate layer)
LAYER = "penultimate"
INPUT_LENGTH = 3.0  # seconds per window: musicnn's default, the length its models were trained on
# windows per session.run: 8 holds the worker at 1.0 GB resident (a whole 120 s track, 40 windows, at once:
# 2.3 GB, the front-end's feature maps) at the same speed and identical vectors (5 real tracks, measured)
BATCH = 8


class Musicnn:
    """The musicnn graph with its checkpoint restored (raises when the restore fails)."""

    def __init__(self, model: str = "MSD_musicnn", checkpoint: str | None = None, threads: int = 0):
        import librosa
        import musicnn
        import tensorflow as tf
        from musicnn import configuration as config
        from musicnn import models

        tf.compat.v1.disable_eager_execution()  # graph mode, as musicnn.extractor: the v1 Saver needs it
        # musicnn builds with tf.compat.v1.layers, each of which warns that it is deprecated
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*is deprecated")
        if model not in MODELS:
            raise ValueError(f"model {model!r}: choose from {', '.join(MODELS)}")
        self.config, self.librosa = config, librosa
        labels = config.MSD_LABELS if model.startswith("MSD") else config.MTT_LABELS
        # musicnn.extractor: frames per window = time_to_frames(3 s) + 1 = 187
        self.n_frames = int(librosa.time_to_frames(INPUT_LENGTH, sr=config.SR, n_fft=config.FFT_SIZE,
                                                   hop_length=config.FFT_HOP)) + 1
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):  # the scope musicnn.extractor builds under
                self.x = tf.compat.v1.placeholder(tf.float32, [None, self.n_frames, config.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                outputs = models.define_model(self.x, self.is_training, model, len(labels))
            self.penultimate = outputs[-1]
            self.tags = tf.nn.sigmoid(outputs[0])  # musicnn's taggram (for the check against its extractor)
            saver = tf.compat.v1.train.Saver()
        # The wheel's checkpoint is the prefix "<package>/<model>/" (files .index, .data-00000-of-00001); its
        # `checkpoint` file names the author's disk, so the prefix is restored directly.
        self.checkpoint = checkpoint or os.path.join(os.path.dirname(musicnn.__file__), model, "")
        if not os.path.isfile(self.checkpoint + ".index"):
            raise FileNotFoundError(f"musicnn checkpoint {self.checkpoint!r}: no {self.checkpoint}.index")
        session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                  inter_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
        saver.restore(self.session, self.checkpoint)  # NotFoundError / InvalidArgumentError on a mismatch
        self.meta = {
            "model": model, "layer": LAYER, "dim": int(self.penultimate.shape[-1]), "sr": config.SR,
            "n_mels": config.N_MELS, "fft_size": config.FFT_SIZE, "fft_hop": config.FFT_HOP,
            "window_s": INPUT_LENGTH, "window_frames": self.n_frames, "pooling": "mean over windows",
            "checkpoint": os.path.join(model, ""), "versions": {
                "tensorflow": tf.__version__, "numpy": np.__version__, "librosa": librosa.__version__,
                "musicnn": _version("musicnn")},
        }

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 96) musicnn's input representation (musicnn.extractor.batch_data, same operations)."""
        c = self.config
        rep = self.librosa.feature.melspectrogram(y=audio, sr=c.SR, hop_length=c.FFT_HOP, n_fft=c.FFT_SIZE,
                                                  n_mels=c.N_MELS).T
        rep = rep.astype(np.float16)
        return np.log10(10000 * rep + 1)

    def windows(self, rep: np.ndarray) -> np.ndarray:
        """(n, 187, 96) non-overlapping windows from the start; the tail shorter than a window is dropped."""
        n = max(0, (rep.shape[0] - self.n_frames) // self.n_frames + 1)
        return rep[:n * self.n_frames].reshape(n, self.n_frames, rep.shape[1])

    def activations(self, batch: np.ndarray, batch_size: int = BATCH, tags: bool = False):
        """(n, 200) penultimate activations of each window (inference mode: batch norm uses moving stats);
        with ``tags``, also the (n, 50) tag probabilities."""
        fetch = [self.penultimate, self.tags] if tags else [self.penultimate]
        out = [self.session.run(fetch, feed_dict={self.x: batch[i:i + batch_size], self.is_training: False})
               for i in range(0, len(batch), batch_size)]
        arrays = [np.concatenate([o[j] for o in out], axis=0) for j in range(len(fetch))]
        return tuple(arrays) if tags else arrays[0]

    def track(self, path: str, seconds: float) -> tuple[np.ndarray, int, float]:
        """(200,) mean penultimate vector of the first ``seconds`` of ``path``, windows, seconds decoded."""
        with warnings.catch_warnings():  # librosa's "PySoundFile failed. Trying audioread instead." and such
            warnings.simplefilter("ignore")
            audio, _ = self.librosa.load(path, sr=self.config.SR, mono=True, duration=seconds)
        batch = self.windows(self.log_mel(audio))
        if not len(batch):
            raise ValueError(f"shorter than one {INPUT_LENGTH:g} s window ({len(audio) / self.config.SR:.2f} s)")
        vector = self.activations(batch).mean(axis=0)
        if not np.all(np.isfinite(vector)):
            raise ValueError("non-finite activations")
        return vector.astype(np.float32), len(batch), len(audio) / self.config.SR


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def write_npz_atomic(path: str, **arrays) -> None:
    """np.savez to a temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".musicnn-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(net: Musicnn, paths: list[str], output: str, seconds: float = 120.0, log=None) -> dict:
    """Embed ``paths`` and write ``output``; returns the counts. Per-track errors are listed, not raised."""
    ok, vectors, windows, decoded, failed = [], [], [], [], []
    start = time.perf_counter()
    for i, path in enumerate(paths, 1):
        try:
            vector, n, s = net.track(path, seconds)
        except Exception as exc:  # one bad file: listed with its reason, never fatal
            failed.append((path, f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__))
        else:
            ok.append(path)
            vectors.append(vector)
            windows.append(n)
            decoded.append(s)
        if log:
            log(f"[musicnn] {i}/{len(paths)} {time.perf_counter() - start:.1f} s, {len(failed)} failed")
    meta = dict(net.meta, seconds=seconds)
    write_npz_atomic(
        output, paths=np.array(ok, dtype=str),
        vectors=np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, meta["dim"]), np.float32),
        windows=np.array(windows, dtype=np.int64), seconds=np.array(decoded, dtype=np.float64),
        failed_paths=np.array([p for p, _ in failed], dtype=str),
        failed_reasons=np.array([r for _, r in failed], dtype=str), meta=np.array(json.dumps(meta)))
    return {"ok": len(ok), "failed": len(failed), "time_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="JSON list of audio paths")
    parser.add_argument("--output", required=True, help="npz to write (atomically)")
    parser.add_argument("--model", default="MSD_musicnn", choices=MODELS)
    parser.add_argument("--seconds", type=float, default=120.0, help="decode the first SECONDS of each track")
    parser.add_argument("--checkpoint", default=None, help="checkpoint prefix (default: the one in the wheel)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    parser.add_argument("--quiet", action="store_true", help="no per-track progress on stderr")
    args = parser.parse_args(argv)
    with open(args.input, encoding="utf-8") as f:
        paths = json.load(f)
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        parser.error(f"{args.input}: expected a JSON list of paths")
    try:
        import librosa  # noqa: F401
        import musicnn  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as exc:
        print(f"reference_musicnn: {exc} (set up the musicnn venv: bash scripts/install_musicnn.sh)",
              file=sys.stderr)
        return 3
    try:
        net = Musicnn(args.model, checkpoint=args.checkpoint, threads=args.threads)
    except Exception as exc:  # a missing or mismatched checkpoint: an error (status 2), never random weights
        print(f"reference_musicnn: cannot load the {args.model} checkpoint: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    counts = run(net, paths, args.output, seconds=args.seconds, log=log)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
