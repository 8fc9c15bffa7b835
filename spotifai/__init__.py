"""spotifai: learn what music sounds like from how people group it."""

__version__ = "0.1.0"
