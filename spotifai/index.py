"""ChromaDB collections of track vectors: build, upsert, query, recommend.

Two collections per experiment, ``<prefix>-features`` and ``<prefix>-projections``, cosine space, ids = ``str(track_id)``, metadata = title,
artist, album, duration and genre where known (Chroma rejects ``None`` values, so unknown fields are left
out). Embeddings are always passed explicitly and ``embedding_function=None``: Chroma's default embedding
function downloads a model, which must never happen here.

The prefix is stored in the experiment (``EXP/index.json``, written by the first build: ``spotifai-<folder
name>-<8 random hex digits>``), so renaming or copying the experiment folder keeps its index; a copy shares
the prefix, and so, on a shared Chroma server, the collections. Indexes built before that file existed were
named ``spotifai-<folder name>``: they are still found under that name (and the next build records it), and an
experiment's own ``chroma`` folder holding exactly one spotifai collection pair is found whatever its name.
Reading (:func:`open_index` with ``create=False``, used by ``spotifai recommend`` and the web demo) never
creates a file or folder: a missing experiment or index is a FileNotFoundError naming it.

Client: an embedded :class:`chromadb.PersistentClient` at ``experiments/<name>/chroma/`` by default, or a
:class:`chromadb.HttpClient` against a Chroma server (``chroma run --path DIR --host H --port P``) when a host
is given: how several users share one index, or an index outgrows one process.

HNSW settings favour recall: :data:`DEFAULT_HNSW` (ef_search 200, ef_construction 200, max_neighbors 32)
instead of Chroma's defaults (100 / 100 / 16), whose recall@10 against exact search is too low for random and
embedding-like vectors; the measurements (``bench/index.py``) are in README's benchmark section, and
tests/test_index.py checks the recall on 10k random vectors. They are set through the collection
``configuration`` (chromadb >= 1.0) and can be overridden per build; ``ef_search`` can be changed on an
existing collection (``spotifai index EXP --ef-search N``; it applies to clients opened afterwards, as chromadb
caches a loaded index per process), the others require ``rebuild``.

Builds are idempotent and resumable: the collection's metadata records the checkpoint the vectors come
from and a ``complete`` flag that is set to false first and to true last. A build upserts only the track
ids not yet in the collection (in batches below the client's maximum batch size) and deletes ids no
longer embedded, so re-running an interrupted build completes it, and re-running a finished one is a
no-op. A different checkpoint (or ``rebuild=True``) recreates the collections.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spotifai import atomic, database
from spotifai.embeddings_file import Embeddings, load_embeddings

log = logging.getLogger(__name__)

SPACES = ("features", "projections")
DEFAULT_HNSW: dict[str, Any] = {"space": "cosine", "ef_search": 200, "ef_construction": 200, "max_neighbors": 32}
# Keys of DEFAULT_HNSW that are fixed when a collection is created (changing them needs a rebuild).
_FIXED_HNSW_KEYS = ("space", "ef_construction", "max_neighbors")
_MUTABLE_HNSW_KEYS = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
_METADATA_FIELDS = ("title", "artist", "album", "duration", "genre")
INDEX_FILE = "index.json"  # in the experiment folder: {"collection_prefix": ...}


def _collection_prefix(name: str) -> str:
    """A Chroma-valid name prefix: [a-zA-Z0-9._-], starting with an alphanumeric character."""
    clean = re.sub(r"[^a-zA-Z0-9._-]+", "-", name).strip("-._") or "default"
    return f"spotifai-{clean}"[:400]


def track_metadata(row: dict) -> dict[str, str | int | float]:
    """Chroma metadata of a track (a :func:`spotifai.database.track` dict); None / empty values left out."""
    out: dict[str, str | int | float] = {"track_id": int(row["id"])}
    for key in _METADATA_FIELDS:
        value = row.get(key)
        if value is None or value == "":
            continue
        out[key] = float(value) if key == "duration" else str(value)
    return out


class TrackIndex:
    """The two track collections of one experiment in one Chroma instance.

    ``path``: folder of an embedded PersistentClient; or ``host`` (+ ``port``, default 8000) of a Chroma
    server. ``collection_prefix``: collections are named ``<prefix>-features`` / ``<prefix>-projections``.
    ``hnsw``: overrides of :data:`DEFAULT_HNSW` (keys of chromadb's HNSW configuration). ``create=False``: an
    embedded index must exist already (FileNotFoundError otherwise; nothing is created).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        collection_prefix: str = "spotifai-default",
        hnsw: dict[str, Any] | None = None,
        ssl: bool = False,
        create: bool = True,
    ) -> None:
        import chromadb
        from chromadb.config import Settings

        if (path is None) == (host is None):
            raise ValueError("TrackIndex needs exactly one of path (embedded Chroma) or host (Chroma server)")
        self.path = Path(path) if path is not None else None
        self.host, self.port = host, int(port or 8000)
        self.collection_prefix = collection_prefix
        self.hnsw = {**DEFAULT_HNSW, **(hnsw or {})}
        self._handles: dict[str, Any] = {}  # space -> chromadb Collection, looked up once
        settings = Settings(anonymized_telemetry=False)
        if self.path is not None:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            elif not (self.path / "chroma.sqlite3").is_file():
                raise FileNotFoundError(f"{self.path}: no ChromaDB index here (build it with `spotifai index`)")
            self.client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        else:
            try:
                self.client = chromadb.HttpClient(host=host, port=self.port, ssl=ssl, settings=settings)
            except Exception as exc:  # chromadb raises plain ValueError/ConnectionError variants here
                raise RuntimeError(f"cannot reach the Chroma server at {host}:{self.port} ({exc})") from exc

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else f"http://{self.host}:{self.port}"
        return f"TrackIndex({where}, prefix={self.collection_prefix!r})"

    # ------------------------------------------------------------------------------------- collections

    def collection_name(self, space: str) -> str:
        if space not in SPACES:
            raise ValueError(f"unknown embedding space {space!r} (expected one of {SPACES})")
        return f"{self.collection_prefix}-{space}"

    def _get(self, space: str, *, refresh: bool = False):
        """The collection of ``space``, or None when it does not exist. The handle is kept (one lookup per
        TrackIndex); ``refresh=True`` looks it up again (fresh metadata / configuration)."""
        name = self.collection_name(space)
        if not refresh and space in self._handles:
            return self._handles[space]
        try:
            col = self.client.get_collection(name, embedding_function=None)
        except Exception as exc:  # NotFoundError / ValueError depending on the client
            if "does not exist" in str(exc) or "not found" in str(exc).lower():
                self._handles.pop(space, None)
                return None
            raise
        self._handles[space] = col
        return col

    def collection(self, space: str = "projections"):
        """The ``chromadb`` Collection of ``space`` (handle kept across calls), for direct queries.

        FileNotFoundError naming the index and the collection when it was never built."""
        col = self._get(space)
        if col is None:
            where = self.path if self.path is not None else f"{self.host}:{self.port}"
            raise FileNotFoundError(
                f"{where}: no collection {self.collection_name(space)!r} (build it with `spotifai index`)"
            )
        return col

    def _create(self, space: str, metadata: dict):
        col = self.client.create_collection(
            self.collection_name(space),
            configuration={"hnsw": dict(self.hnsw)},
            metadata=metadata,
            embedding_function=None,
        )
        self._handles[space] = col
        return col

    def prefixes(self) -> set[str]:
        """Prefixes of the spotifai collections in this Chroma instance (names ``<prefix>-<space>``)."""
        names = [getattr(c, "name", c) for c in self.client.list_collections()]
        return {n.rsplit("-", 1)[0] for n in names if n.startswith("spotifai-") and n.rsplit("-", 1)[-1] in SPACES}

    def is_complete(self, space: str = "projections") -> bool:
        col = self._get(space, refresh=True)
        return bool(col is not None and (col.metadata or {}).get("complete"))

    def info(self) -> dict:
        """Per space: exists, count, complete, checkpoint_id, hnsw configuration."""
        out: dict[str, Any] = {"client": repr(self)}
        for space in SPACES:
            col = self._get(space, refresh=True)
            if col is None:
                out[space] = {"exists": False}
                continue
            meta = col.metadata or {}
            out[space] = {
                "exists": True,
                "name": col.name,
                "count": col.count(),
                "complete": bool(meta.get("complete")),
                "checkpoint_id": meta.get("checkpoint_id"),
                "hnsw": (col.configuration or {}).get("hnsw"),
            }
        return out

    # -------------------------------------------------------------------------------------------- build

    def _existing_ids(self, col, page: int) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            got = col.get(include=[], limit=page, offset=offset)["ids"]
            ids.update(got)
            if len(got) < page:
                return ids
            offset += page

    def _hnsw_conflict(self, col) -> list[str]:
        have = (col.configuration or {}).get("hnsw") or {}
        return [k for k in _FIXED_HNSW_KEYS if k in self.hnsw and have.get(k) != self.hnsw[k]]

    def _recreate_reasons(self, col, checkpoint_id: str, dim: int, rebuild: bool) -> list[str]:
        """Why the existing collection ``col`` cannot be updated in place for vectors of ``dim`` made with
        ``checkpoint_id`` (empty when it can): rebuild requested, other checkpoint, other dimension, or
        HNSW settings that Chroma cannot change after creation."""
        meta = col.metadata or {}
        reasons = []
        if rebuild:
            reasons.append("rebuild requested")
        if meta.get("checkpoint_id") != checkpoint_id:
            reasons.append(f"checkpoint {meta.get('checkpoint_id')} -> {checkpoint_id}")
        if meta.get("dim") not in (None, dim):
            reasons.append(f"dimension {meta.get('dim')} -> {dim}")
        conflicts = self._hnsw_conflict(col)
        if conflicts:
            reasons.append(f"HNSW settings {conflicts} changed")
        return reasons

    def build_space(
        self,
        space: str,
        track_ids: np.ndarray,
        vectors: np.ndarray,
        metadatas: Sequence[dict],
        *,
        checkpoint_id: str,
        rebuild: bool = False,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> dict:
        """Make the ``space`` collection hold exactly ``track_ids`` -> ``vectors`` (N, dim) with ``metadatas``.

        Returns added, deleted, count, recreated, seconds.
        """
        t0 = time.perf_counter()
        track_ids = np.asarray(track_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != track_ids.shape[0] or len(metadatas) != len(track_ids):
            raise ValueError(
                f"build_space: {len(track_ids)} ids, vectors {vectors.shape}, {len(metadatas)} metadatas do not match"
            )
        max_batch = int(self.client.get_max_batch_size())
        batch = max(1, min(batch_size or 5000, max_batch - 1 if max_batch > 1 else 1))
        col = self._get(space, refresh=True)
        recreated = False
        if col is not None:
            reasons = self._recreate_reasons(col, checkpoint_id, int(vectors.shape[1]), rebuild)
            if reasons:
                log.info("recreating %s: %s", col.name, "; ".join(reasons))
                self.client.delete_collection(col.name)
                self._handles.pop(space, None)
                col = None
        meta = {"complete": False, "checkpoint_id": checkpoint_id, "dim": int(vectors.shape[1]), "space": space}
        if col is None:
            col = self._create(space, meta)
            recreated = True
        else:
            col.modify(metadata=meta)
            have_search = ((col.configuration or {}).get("hnsw") or {}).get("ef_search")
            update = {k: self.hnsw[k] for k in _MUTABLE_HNSW_KEYS if k in self.hnsw}
            if update and have_search != update.get("ef_search", have_search):
                col.modify(configuration={"hnsw": update})

        existing = set() if recreated else self._existing_ids(col, page=max(batch, 1000))
        str_ids = [str(int(t)) for t in track_ids]
        wanted = set(str_ids)
        todo = [i for i, s in enumerate(str_ids) if s not in existing]
        stale = sorted(existing - wanted)
        for start in range(0, len(stale), batch):
            col.delete(ids=stale[start : start + batch])
        bar = tqdm(total=len(todo), desc=f"indexing {space}", unit="vec", disable=not progress)
        for start in range(0, len(todo), batch):
            rows = todo[start : start + batch]
            col.upsert(
                ids=[str_ids[i] for i in rows],
                embeddings=vectors[rows],
                metadatas=[metadatas[i] for i in rows],
            )
            bar.update(len(rows))
        bar.close()
        count = col.count()
        if count != len(wanted):
            raise RuntimeError(f"{col.name}: holds {count} vectors after the build, expected {len(wanted)}")
        col.modify(metadata={**meta, "complete": True, "count": int(count)})
        return {
            "collection": col.name,
            "added": len(todo),
            "deleted": len(stale),
            "count": int(count),
            "recreated": recreated,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def build(
        self,
        embeddings: Embeddings,
        metadata: dict[int, dict],
        *,
        rebuild: bool = False,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> dict:
        """Index ``embeddings`` (both spaces); ``metadata`` = {track_id: chroma metadata}."""
        metas = [metadata.get(int(t), {"track_id": int(t)}) for t in embeddings.track_ids]
        return {
            space: self.build_space(
                space,
                embeddings.track_ids,
                embeddings.vectors(space),
                metas,
                checkpoint_id=embeddings.checkpoint_id,
                rebuild=rebuild,
                batch_size=batch_size,
                progress=progress,
            )
            for space in SPACES
        }

    # -------------------------------------------------------------------------------------------- query

    def query(
        self,
        vectors: np.ndarray,
        k: int = 10,
        space: str = "projections",
        *,
        where: dict | None = None,
        metadata: bool = True,
    ) -> list[list[dict]]:
        """Approximate nearest neighbours of each row of ``vectors`` (Q, dim): Q lists of up to ``k`` dicts
        (track_id, similarity = 1 - cosine distance, and the stored metadata unless ``metadata=False``),
        most similar first. All Q rows go to Chroma in one call.

        No ``count()`` first: chromadb (1.5.9, checked) returns fewer than ``k`` results, without an error,
        when the collection (or the ``where`` filter) holds fewer; an empty collection gives empty lists."""
        col = self.collection(space)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if k <= 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        include = ["distances", "metadatas"] if metadata else ["distances"]
        res = col.query(query_embeddings=vectors, n_results=int(k), where=where, include=include)
        metas_all = res.get("metadatas") if metadata else None
        out: list[list[dict]] = []
        for row, (ids, dists) in enumerate(zip(res["ids"], res["distances"], strict=True)):
            metas = metas_all[row] if metas_all is not None else [None] * len(ids)
            out.append(
                [
                    {**(m or {}), "track_id": int(i), "similarity": float(1.0 - d)}
                    for i, d, m in zip(ids, dists, metas, strict=True)
                ]
            )
        return out

    def vectors(self, track_ids: Sequence[int], space: str = "projections") -> dict[int, np.ndarray]:
        """Stored vectors by track id ({id: (dim,) float32}); ids not in the index are left out."""
        col = self.collection(space)
        if len(track_ids) == 0:
            return {}
        got = col.get(ids=[str(int(t)) for t in track_ids], include=["embeddings"])
        return {int(i): np.asarray(e, dtype=np.float32) for i, e in zip(got["ids"], got["embeddings"], strict=True)}

    def vector(self, track_id: int, space: str = "projections") -> np.ndarray | None:
        """The stored (dim,) vector of ``track_id``, or None when it is not indexed."""
        return self.vectors([track_id], space).get(int(track_id))

    def recommend(
        self, track_id: int, k: int = 10, space: str = "projections", *, metadata: bool = True
    ) -> list[dict]:
        """The ``k`` tracks most similar to ``track_id`` (itself excluded): dicts with track_id,
        similarity (1 - cosine distance), and title, artist, album, duration, genre (where known) unless
        ``metadata=False`` (then only Chroma's ids and distances are read: faster).
        KeyError when the track is not indexed."""
        vec = self.vector(track_id, space)
        if vec is None:
            raise KeyError(f"track {track_id} is not in the index {self.collection_name(space)!r}")
        hits = self.query(vec[None], k + 1, space, metadata=metadata)[0]
        return [h for h in hits if h["track_id"] != int(track_id)][:k]


# ------------------------------------------------------------------------------------------ experiments


def open_index(
    experiment_path: str | Path,
    *,
    path: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    hnsw: dict[str, Any] | None = None,
    create: bool = True,
) -> TrackIndex:
    """The TrackIndex of an experiment: embedded at ``path`` (default ``experiments/<name>/chroma``) or on the
    Chroma server ``host:port``; collections named by the experiment's stored prefix (see the module docstring).

    ``create=False`` (reading: recommendations, the web demo) creates nothing: FileNotFoundError naming the
    experiment folder or the index folder when it is missing. ``create=True`` (building) records the prefix in
    ``EXP/index.json`` if it is not there yet."""
    experiment_path = Path(experiment_path)
    if not create and not experiment_path.is_dir():
        raise FileNotFoundError(f"{experiment_path}: no such experiment folder")
    own = not host and not path
    if host:
        index = TrackIndex(host=host, port=port, hnsw=hnsw)
    else:
        index = TrackIndex(path=Path(path) if path else experiment_path / "chroma", hnsw=hnsw, create=create)
    index.collection_prefix = _experiment_prefix(experiment_path, index, create=create, own_folder=own)
    return index


def _experiment_prefix(experiment: Path, index: TrackIndex, *, create: bool, own_folder: bool) -> str:
    """The collection prefix of ``experiment``: the stored one, else an existing index's (the old folder-name
    prefix; in the experiment's own chroma folder, its only spotifai collection pair), else a new one. Stored in
    ``EXP/index.json`` when ``create``."""
    stored = _stored_prefix(experiment)
    if stored is not None:
        return stored
    legacy = _collection_prefix(experiment.resolve().name)
    present = index.prefixes()
    if legacy in present:
        prefix = legacy
    elif own_folder and len(present) == 1:
        prefix = next(iter(present))
    elif create:
        prefix = f"{legacy}-{uuid.uuid4().hex[:8]}"[:400]
    else:
        return legacy  # nothing to find: the missing-collection error names the experiment's old-style name
    if create:
        atomic.write_text(experiment / INDEX_FILE, json.dumps({"collection_prefix": prefix}) + "\n")
    return prefix


def _stored_prefix(experiment: Path) -> str | None:
    try:
        data = json.loads((experiment / INDEX_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{experiment / INDEX_FILE}: not a valid index file ({exc})") from exc
    prefix = data.get("collection_prefix") if isinstance(data, dict) else None
    if not isinstance(prefix, str) or _collection_prefix(prefix.removeprefix("spotifai-")) != prefix:
        raise ValueError(f"{experiment / INDEX_FILE}: collection_prefix must be a valid collection name prefix")
    return prefix


def build_index(
    experiment_path: str | Path,
    *,
    path: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    rebuild: bool = False,
    hnsw: dict[str, Any] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict:
    """Index the experiment's ``embeddings.npz`` (run ``spotifai embed`` first) with track metadata from its
    music DB. Returns {features: {...}, projections: {...}, client, checkpoint_id}."""
    from spotifai.experiment import database_path, load_config

    experiment_path = Path(experiment_path)
    emb = load_embeddings(experiment_path)
    conn = database.connect(database_path(experiment_path, load_config(experiment_path)), create=False)
    try:
        rows = database.tracks(conn, emb.track_ids.tolist())
    finally:
        conn.close()
    metadata = {int(r["id"]): track_metadata(r) for r in rows}
    index = open_index(experiment_path, path=path, host=host, port=port, hnsw=hnsw)
    summary = index.build(emb, metadata, rebuild=rebuild, batch_size=batch_size, progress=progress)
    summary["client"] = repr(index)
    summary["checkpoint_id"] = emb.checkpoint_id
    return summary


def recommend(
    experiment_path: str | Path,
    track_id: int,
    k: int = 10,
    space: str = "projections",
    *,
    path: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
) -> list[dict]:
    """:meth:`TrackIndex.recommend` on the experiment's index (no model is loaded; nothing is written)."""
    index = open_index(experiment_path, path=path, host=host, port=port, create=False)
    index.collection(space)  # FileNotFoundError naming it when it was never built
    if not index.is_complete(space):
        log.warning("%s: the index build did not finish (re-run `spotifai index`): answers come from part of it",
                    index.collection_name(space))
    return index.recommend(track_id, k=k, space=space)
