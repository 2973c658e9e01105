"""A listener's own history: reading the exports Spotify, Last.fm and ListenBrainz let people download, and
matching their artist and track names to a trained dataset's. Pure functions over files and names: storing
plays and picking from them live elsewhere."""

from .formats import History, HistoryError, read_exports
from .names import NameIndex, credits, normalize

__all__ = ["History", "HistoryError", "NameIndex", "credits", "normalize", "read_exports"]
