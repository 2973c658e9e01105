"""The one recommender interface every music model honours, after implicit's ``RecommenderBase``.

Why one interface: evaluation, the CLI and the tabs call the same four methods on matrix
factorisation, popularity, genres, the implicit/Surprise peers, Caser, repeat/recency and
session-kNN, and never special-case a model:

- ``fit(data, train)`` learns from the training part of ``data`` only (a frame of interactions of a
  ``MusicDataset``, or per-user basket counts of basket sequences);
- ``score(users, histories)`` scores every item for each user index (sequence models also read each
  user's ordered history; order-blind models ignore it);
- ``recommend(user, n, ...)`` returns the best ``n`` items, each with a reason;
- ``explain(user, item, history)`` says in words why ``item`` is recommended.

Models that can also do ``similar_items``, ``save`` and ``load`` implement them (``music.mf.model``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np


@dataclass
class Recommendation:
    """One pick, ready for JSON and for the UI."""

    item: str
    title: str
    artist: str
    genres: list[str]
    score: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UnknownUser(KeyError):
    """The user id is not in the model's training data."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown user"


class Recommender(ABC):
    """fit / score / recommend / explain: what every music model offers (see the module docstring)."""

    name: ClassVar[str] = "base"

    @abstractmethod
    def fit(self, data: Any, train: Any = None, **kwargs: Any) -> "Recommender":
        """Learn from the ``train`` part of ``data``; return ``self``."""

    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Scores of every item for each user index: shape ``(len(users), n_columns)``."""

    @abstractmethod
    def recommend(self, user: Any, n: int = 10, **kwargs: Any) -> list[Any]:
        """The best ``n`` items for ``user``, best first, each with its reason."""

    @abstractmethod
    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        """Why ``item`` is recommended to ``user`` (with ``history`` for sequence models), in words."""

    def top_items(self, user: int, n: int, history: np.ndarray | None = None,
                  exclude: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(item index, score) of the ``n`` best finite scores for one user; ``exclude`` items are skipped."""
        scores = np.asarray(self.score(np.array([user]), None if history is None else [history]),
                            dtype=np.float64)[0].copy()
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        return [(int(i), float(scores[i])) for i in top_n(scores, n)]


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best finite scores, best first (argpartition, then sort the few)."""
    finite = np.isfinite(scores)
    k = int(min(n, finite.sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-np.where(finite, scores, -np.inf), k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
