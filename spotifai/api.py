"""The Python API: load a trained model, embed any audio, find similar tracks (the cold start).

    import spotifai

    model = spotifai.load("experiments/demo")          # an experiment folder, a checkpoint or an exported model.pt
    vector = model.embed_file("song.mp3")              # full-song vector (projections; space="features" too)
    for hit in model.similar("song.mp3", k=5):         # a file, a waveform, a vector or a track id of the DB
        print(hit["rank"], hit["similarity"], hit["title"], hit["artist"], hit["album"])

A :class:`Model` carries its audio settings (mel bands, patch length), so callers never configure
preprocessing. Vectors are computed exactly as ``spotifai embed`` computes the stored ones (up to 64 evenly
spaced patches of the whole song, pooled as the checkpoint's ``model.pooling`` says and L2-normalized; see
:mod:`spotifai.embed`), so a file's vector can be compared with the experiment's index: :meth:`Model.similar`
queries the experiment's ChromaDB collections (the embedded ``EXP/chroma`` or a Chroma server).

Bad input is a :class:`EmbeddingError` (a ValueError) naming the file and the problem; :meth:`Model.embed_files`
reports the files it could not read in ``failures`` and embeds the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SPACES = ("projections", "features")
MAX_PATCHES = 64  # as `spotifai embed`
BATCH_SIZE = 64


class EmbeddingError(ValueError):
    """An input that could not be embedded: ``path`` (or ``"<waveform>"``) and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = str(path), str(reason)
        super().__init__(f"{self.path}: {self.reason}")


@dataclass
class FileEmbeddings:
    """Output of :meth:`Model.embed_files`: rows in input order for the files that worked."""

    paths: list[str]
    features: np.ndarray  # (N, model_dim) float32, unit rows
    projections: np.ndarray  # (N, projection_dim) float32, unit rows
    failures: list[dict] = field(default_factory=list)  # [{path, reason}]

    def vectors(self, space: str = "projections") -> np.ndarray:
        _check_space(space)
        return self.projections if space == "projections" else self.features

    def __len__(self) -> int:
        return len(self.paths)


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown embedding space {space!r} (expected 'projections' or 'features')")
    return space


class Model:
    """A trained encoder with its audio settings; made by :func:`load`.

    Attributes: ``audio`` (:class:`spotifai.audio.AudioConfig`), ``step``, ``checkpoint_id`` (the identity of
    the checkpoint, as stored with the experiment's vectors), ``experiment`` (the folder, or None for a model
    file loaded alone), ``device``, ``space`` (the default vector space).
    """

    def __init__(
        self,
        encoder,
        info: dict,
        *,
        experiment: str | Path | None = None,
        device: str = "cpu",
        space: str = "projections",
        index_path: str | Path | None = None,
        chroma_host: str | None = None,
        chroma_port: int | None = None,
    ) -> None:
        self.encoder = encoder.eval()
        self.audio = info["audio"]
        self.step = int(info.get("step", -1))
        self.checkpoint_id = str(info.get("checkpoint_id", ""))
        self.source = str(info.get("path", ""))
        self.experiment = Path(experiment) if experiment is not None else None
        self.device = device
        self.space = _check_space(space)
        self._index_args = {"path": index_path, "host": chroma_host, "port": chroma_port}
        self._index = None

    def __repr__(self) -> str:
        where = f", experiment={str(self.experiment)!r}" if self.experiment else ""
        return f"Model({self.source!r}, step={self.step}{where}, device={self.device!r})"

    @property
    def dim(self) -> int:
        """Length of a vector of the default space."""
        cfg = self.encoder.config
        return int(cfg.projection_dim if self.space == "projections" else cfg.model_dim)

    # ------------------------------------------------------------------------------------------ embedding

    def embed_files(
        self, paths: Sequence[str | os.PathLike], *, progress: bool = True, num_workers: int = 0
    ) -> FileEmbeddings:
        """Full-song vectors of audio files (any format the project decodes), batched across files, with a
        progress bar. Unreadable files are left out and listed in ``failures`` (path, reason), not raised."""
        from spotifai.embed import embed_tracks

        names = [str(p) for p in paths]
        res = embed_tracks(
            self.encoder, list(enumerate(names)), self.audio, device=self.device, batch_size=BATCH_SIZE,
            max_patches_per_track=MAX_PATCHES, num_workers=num_workers, progress=progress,
        )
        failures = [{"path": names[int(f["track_id"])], "reason": f["reason"]} for f in res.failures]
        return FileEmbeddings([names[int(i)] for i in res.track_ids], res.features, res.projections, failures)

    def embed_file(self, path: str | os.PathLike, space: str | None = None) -> np.ndarray:
        """The (dim,) float32 unit vector of one file; :class:`EmbeddingError` naming it when unreadable."""
        out = self.embed_files([path], progress=False)
        if out.failures:
            raise EmbeddingError(str(path), out.failures[0]["reason"])
        return out.vectors(space or self.space)[0]

    def embed_waveform(self, waveform, sample_rate: int, space: str | None = None) -> np.ndarray:
        """The (dim,) float32 unit vector of audio already in memory: ``waveform`` of shape (samples,),
        (channels, samples) or (samples, channels) (as ``soundfile.read`` returns it), float, at
        ``sample_rate`` Hz (resampled to 16 kHz as files are)."""
        import torch

        from spotifai.audio import AudioError, waveform_patches
        from spotifai.embed import embed_patches, select_patches

        space = _check_space(space or self.space)
        x = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        if x.dim() == 2 and x.shape[1] <= 8 < x.shape[0]:
            x = x.T  # (samples, channels) -> (channels, samples)
        if x.dim() not in (1, 2) or not torch.isfinite(x).all():
            raise EmbeddingError("<waveform>", f"expected finite samples of shape (samples,) or (channels, "
                                 f"samples), got shape {tuple(x.shape)}")
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or not 1000 <= int(sample_rate) <= 384000:
            raise EmbeddingError("<waveform>", f"sample rate {sample_rate!r} Hz outside 1000..384000")
        try:
            patches = waveform_patches(x, int(sample_rate), self.audio)
        except AudioError as exc:
            raise EmbeddingError("<waveform>", exc.reason) from exc
        keep = select_patches(int(patches.shape[0]), MAX_PATCHES)
        patches = patches[torch.from_numpy(keep)]
        features, projections = embed_patches(self.encoder, patches, device=self.device, batch_size=BATCH_SIZE)
        return features if space == "features" else projections

    # -------------------------------------------------------------------------------------------- search

    def _require_experiment(self, what: str) -> Path:
        if self.experiment is None:
            raise ValueError(f"{self.source}: {what} needs the experiment (spotifai.load(model_file, "
                             "experiment='experiments/NAME'))")
        return self.experiment

    @property
    def index(self):
        """The experiment's :class:`spotifai.index.TrackIndex` (opened on first use; creates nothing)."""
        if self._index is None:
            from spotifai.index import open_index

            experiment = self._require_experiment("similar()")
            index = open_index(experiment, create=False, **self._index_args)
            for space in SPACES:
                index.collection(space)  # FileNotFoundError naming it when never built
            if not index.is_complete(self.space):
                log.warning("%s: the index build did not finish (re-run `spotifai index`)",
                            index.collection_name(self.space))
            self._index = index
        return self._index

    def _query_vector(self, query, space: str, sample_rate: int | None) -> np.ndarray:
        if sample_rate is not None:
            return self.embed_waveform(query, sample_rate, space)
        if isinstance(query, (str, os.PathLike)):
            return self.embed_file(query, space)
        vec = np.asarray(query, dtype=np.float32)
        want = self.encoder.config.projection_dim if space == "projections" else self.encoder.config.model_dim
        if vec.ndim != 1 or vec.shape[0] != want:
            raise ValueError(f"a query vector of the {space} space has shape ({want},), got {vec.shape}; "
                             "for a waveform pass sample_rate=")
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("a query vector must be finite and non-zero")
        return vec / norm

    def similar(
        self, query: Any, k: int = 10, *, space: str | None = None, sample_rate: int | None = None
    ) -> list[dict]:
        """The ``k`` tracks of the experiment's index most similar to ``query``: an audio file path, a waveform
        (give ``sample_rate``), a vector of the space, or a track id of the experiment's DB (an int; the track
        itself is left out). Returns dicts, most similar first: rank, track_id, similarity (cosine), title,
        artist, album, genre, duration (where known)."""
        space = _check_space(space or self.space)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            try:
                hits = self.index.recommend(int(query), k=int(k), space=space)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from exc
        else:
            vec = self._query_vector(query, space, sample_rate)
            hits = self.index.query(vec[None], int(k), space)[0]
        return [_hit(rank, h) for rank, h in enumerate(hits, start=1)]

    # ------------------------------------------------------------------------------------- the music DB

    @property
    def database(self) -> Path:
        """The experiment's music DB."""
        from spotifai.experiment import database_path, load_config

        experiment = self._require_experiment("the music DB")
        return database_path(experiment, load_config(experiment))

    def search(self, text: str, limit: int = 10) -> list[dict]:
        """Tracks of the experiment's DB matching ``text`` (title, artist, album; typo tolerant)."""
        from spotifai import database
        from spotifai.search import search

        conn = database.connect(self.database, create=False, readonly=True)
        try:
            return search(conn, text, limit=limit)
        finally:
            conn.close()

    def track(self, track_id: int) -> dict:
        """One track of the experiment's DB (title, artist, album, audio_path, ...); KeyError when unknown."""
        from spotifai import database

        conn = database.connect(self.database, create=False, readonly=True)
        try:
            row = database.track(conn, int(track_id))
        finally:
            conn.close()
        if row is None:
            raise KeyError(f"track {track_id} is not in {self.database}")
        return row


def _hit(rank: int, h: dict) -> dict:
    keys = ("title", "artist", "album", "genre", "duration")
    return {"rank": rank, "track_id": int(h["track_id"]), "similarity": round(float(h["similarity"]), 6),
            **{key: h.get(key) for key in keys}}


def load(
    path: str | os.PathLike,
    *,
    experiment: str | os.PathLike | None = None,
    checkpoint: str | int = "auto",
    device: str = "cpu",
    space: str = "projections",
    index_path: str | os.PathLike | None = None,
    chroma_host: str | None = None,
    chroma_port: int | None = None,
) -> Model:
    """A :class:`Model` from ``path``: an experiment folder (its best-validation checkpoint when kept, else the
    latest; or ``checkpoint``), a checkpoint file (``EXP/checkpoints/*.pt``) or a model file written by
    ``spotifai export``. ``experiment``: the experiment whose index :meth:`Model.similar` searches (found by
    itself for a folder or its checkpoints). ``index_path`` / ``chroma_host`` + ``chroma_port``: an index
    elsewhere than ``EXP/chroma``. ``device``: cpu, cuda or cuda:N."""
    import torch

    from spotifai import export
    from spotifai.devices import check_device

    device = check_device(device)
    path = Path(path)
    index_args = {"index_path": index_path, "chroma_host": chroma_host, "chroma_port": chroma_port}
    if path.is_dir():
        from spotifai.checkpoint import load_encoder, resolve

        export.check_experiment(path)
        encoder, info = load_encoder(path, checkpoint=resolve(path, checkpoint), device=device)
        return Model(encoder, info, experiment=experiment or path, device=device, space=space, **index_args)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such experiment folder or model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error: not a model file
        raise ValueError(f"{path}: not a spotifai model or checkpoint ({type(exc).__name__})") from exc
    if export.is_exported(state):
        encoder, info = export.read_model(state, path, device)
        return Model(encoder, info, experiment=experiment, device=device, space=space, **index_args)
    if isinstance(state, dict) and "model" in state and "config" in state:
        from spotifai.checkpoint import load_encoder

        owner = path.resolve().parent.parent if path.resolve().parent.name == "checkpoints" else None
        if experiment is None and owner is not None and (owner / "config.json").is_file():
            experiment = owner
        encoder, info = load_encoder(owner or path.parent, checkpoint=str(path.resolve()), device=device)
        return Model(encoder, info, experiment=experiment, device=device, space=space, **index_args)
    raise ValueError(f"{path}: not a spotifai model, checkpoint or experiment folder")
