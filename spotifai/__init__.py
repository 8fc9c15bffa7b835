"""spotifai: learn what music sounds like from how people group it.

The Python API (see :mod:`spotifai.api`)::

    import spotifai

    model = spotifai.load("experiments/demo")     # or a checkpoint, or a model file from `spotifai export`
    model.embed_file("song.mp3")                  # full-song vector
    model.similar("song.mp3", k=5)                # nearest tracks of the experiment's index

Importing the package is cheap: torch and the model load only when :func:`load` is called.
"""

__version__ = "0.1.0"

__all__ = ["EmbeddingError", "FileEmbeddings", "Model", "__version__", "export_model", "load"]


def load(path, **kwargs):
    """A trained :class:`~spotifai.api.Model` from an experiment folder, a checkpoint or an exported model
    file (see :func:`spotifai.api.load` for the options)."""
    from spotifai.api import load as _load

    return _load(path, **kwargs)


def export_model(experiment, out, checkpoint="auto") -> dict:
    """Write the experiment's encoder to one model file (see :func:`spotifai.export.export_model`)."""
    from spotifai.export import export_model as _export

    return _export(experiment, out, checkpoint)


def __getattr__(name: str):
    if name in ("EmbeddingError", "FileEmbeddings", "Model"):
        from spotifai import api

        return getattr(api, name)
    raise AttributeError(f"module 'spotifai' has no attribute {name!r}")
