"""The non-neural music models: popularity (for every task) and genre picks (cold start, thin histories).

Why one ``Popularity``: "most played first" is the floor every model is compared with, in the
tab (listeners per item), in the top-N evaluation and in "up next" (plays in the training baskets).
One class fitted on either shape of training data keeps that floor defined once.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
from scipy import sparse

from music.data import MusicDataset
from music.mf.model import CatalogRecommender
from music.recommender import Recommendation, top_n

log = logging.getLogger(__name__)

#: The score of the padding column of basket sequences (never recommended).
NEG = -1e9


# ----------------------------------------------------------------------------------------------
# popularity


class Popularity(CatalogRecommender):
    """Most listeners (or plays) first: the baseline every personalised model must beat.

    Fitted on a ``MusicDataset`` (and a training frame) it counts listeners per item and serves the
    tab with titles and reasons. Fitted on basket sequences (``music.next.data.SequenceData`` and
    per-user training basket counts) it counts plays in the training baskets, and its score row has
    the padding column 0 first, as every "up next" model's does.
    """

    name = "popularity"

    def fit(self, data: Any, train: Any = None, **kwargs: Any) -> "Popularity":
        if isinstance(data, MusicDataset):
            super().fit(data, train, **kwargs)
            self.sequences = None
            return self
        self.sequences = data
        self.counts = data.item_counts(train)
        return self

    def _fit(self, **kwargs: Any) -> None:
        h = self.catalog.history
        self.counts = np.asarray((h > 0).sum(axis=0)).ravel().astype(np.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        if getattr(self, "sequences", None) is not None:
            s = np.log1p(self.counts).astype(np.float32)
            s[0] = NEG
            return np.tile(s, (len(users), 1))
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))

    def recommend(self, user: Any, n: int = 10, exclude_seen: bool = True, *,
                  history: np.ndarray | None = None) -> list[Any]:
        """Catalog: ``Recommendation``s for an external user id. Sequences: (item index, score, reason)."""
        if getattr(self, "sequences", None) is not None:
            exclude = history if exclude_seen and history is not None else None
            return [(i, s, self.explain(int(user), i, history)) for i, s in self.top_items(int(user), n, exclude=exclude)]
        return super().recommend(user, n, exclude_seen)

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        if getattr(self, "sequences", None) is not None:
            return f"popular: played {int(self.counts[item])} times in training"
        return super().explain(user, item, history)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _from_arrays(self, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        self.counts = arrays["counts"]


# ----------------------------------------------------------------------------------------------
# genres


class GenreRecommender(CatalogRecommender):
    """Popular, well-liked items in the listener's genres.

    Cold start: ``recommend_for_genres(["jazz", "folk"])``. Known users: their genres are read off
    their history (weighted by plays/ratings), so the same model serves users with little history.
    Item quality = log listeners (popular) + how much those listeners liked it (mean log plays, or a
    Bayesian-averaged rating for explicit data, so one 5-star rating does not top the list).
    """

    name = "genre"

    def _fit(self, prior: float = 10.0, **kwargs: Any) -> None:
        c = self.catalog
        h = c.history
        n = np.asarray((h > 0).sum(axis=0)).ravel().astype(np.float64)
        s = np.asarray(h.sum(axis=0)).ravel().astype(np.float64)
        if c.kind == "explicit":
            mean = s.sum() / max(n.sum(), 1)
            liked = (s + prior * mean) / (n + prior) - mean  # Bayesian average, centred
        else:
            logs = h.copy()
            logs.data = np.log1p(logs.data)
            ls = np.asarray(logs.sum(axis=0)).ravel()
            liked = np.where(n > 0, ls / np.maximum(n, 1), 0) * n / (n + prior)
            liked = liked - liked.mean()
        self.quality = (np.log1p(n) + liked).astype(np.float32)
        self.genre_names = sorted({g for gs in c.genres for g in gs})
        gidx = {g: k for k, g in enumerate(self.genre_names)}
        rows = [gidx[g] for gs in c.genres for g in gs]
        cols = [i for i, gs in enumerate(c.genres) for _ in gs]
        self.item_genre = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                            shape=(len(self.genre_names), c.n_items))

    def genre_vector(self, genres: Sequence[str]) -> np.ndarray:
        gidx = {g.lower(): k for k, g in enumerate(self.genre_names)}
        v = np.zeros(len(self.genre_names), np.float32)
        for g in genres:
            if g.lower() in gidx:
                v[gidx[g.lower()]] = 1.0
        return v

    def user_genres(self, u: int) -> np.ndarray:
        """Genre preference from history: plays (log) per genre, normalised to sum 1."""
        row = self.catalog.history[u]
        w = np.zeros(self.catalog.n_items, np.float32)
        w[row.indices] = np.log1p(np.abs(row.data))
        v = self.item_genre @ w
        return v / v.sum() if v.sum() > 0 else v

    def _score_pref(self, pref: np.ndarray) -> np.ndarray:
        match = np.asarray(pref @ self.item_genre).ravel()
        q = self.quality - self.quality.min() + 1e-3
        return np.where(match > 0, match * q, 0.0).astype(np.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        return np.stack([self._score_pref(self.user_genres(int(u))) for u in users])

    def recommend_for_genres(self, genres: Sequence[str], n: int = 10) -> list[Recommendation]:
        """Cold start: picks for a new listener who chose ``genres``; empty if none is known."""
        pref = self.genre_vector(genres)
        if pref.sum() == 0:
            return []
        scores = self._score_pref(pref / pref.sum())
        scores[scores <= 0] = -np.inf
        return [self._rec(i, scores[i], self._genre_reason(i, set(g.lower() for g in genres)))
                for i in top_n(scores, n)]

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        pref = self.user_genres(user)
        liked = {self.genre_names[k].lower() for k in np.flatnonzero(pref > 0)}
        return self._genre_reason(item, liked)

    def _genre_reason(self, i: int, wanted: set[str]) -> str:
        gs = [g for g in self.catalog.genres[i] if g.lower() in wanted] or self.catalog.genres[i]
        return f"popular in {gs[0]}" if gs else "popular with all listeners"

    def _arrays(self) -> dict[str, np.ndarray]:
        ig = self.item_genre.tocoo()
        return {"quality": self.quality, "ig_row": ig.row.astype(np.int32), "ig_col": ig.col.astype(np.int32)}

    def _config(self) -> dict[str, Any]:
        return {"genre_names": self.genre_names}

    def _from_arrays(self, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        self.quality = arrays["quality"]
        self.genre_names = list(manifest["genre_names"])
        self.item_genre = sparse.csr_matrix(
            (np.ones(len(arrays["ig_row"]), np.float32), (arrays["ig_row"], arrays["ig_col"])),
            shape=(len(self.genre_names), self.catalog.n_items))
