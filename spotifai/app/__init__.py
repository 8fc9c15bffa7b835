"""The Song Recommender web demo: a FastAPI server with a small JSON API and one static page.

Search (``spotifai.search``) and recommendations (``spotifai.index``, vectors stored in ChromaDB; no model
is loaded) are called, never reimplemented here. Start it with ``spotifai serve`` or :func:`serve`.
"""

from spotifai.app.server import create_app, serve

__all__ = ["create_app", "serve"]
