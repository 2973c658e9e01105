"""One recommender interface (after implicit's ``RecommenderBase``) and the non-neural models.

Why one interface: evaluation, the CLI and the UI call ``fit``, ``score``, ``recommend``,
``similar_items``, ``save`` and ``load`` and never special-case a model. Every model keeps the id
maps it was fitted with and the training history (for ``exclude_seen`` and for reasons), so a
recommendation is always an external item id with the title that belongs to it, and a reason.

The Keras matrix factorisation lives in ``music.mf``; the popularity baseline and the genre
recommender (cold start from picked genres, blend for users with little history) live here.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from core.artifacts import ArtifactError, load_arrays, save_arrays
from music.data import IdMap, MusicDataset

log = logging.getLogger(__name__)


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


@dataclass
class Catalogue:
    """What a model needs to know about items and users besides its parameters.

    Saved with every model so the UI and CLI work from ``models/`` alone (no dataset files).
    """

    users: IdMap
    items: IdMap
    titles: list[str]
    artists: list[str]
    genres: list[list[str]]
    history: sparse.csr_matrix  # users × items training weights
    kind: str = "implicit"
    dataset: str = ""
    checksum: str = ""

    @classmethod
    def from_dataset(cls, data: MusicDataset, train: pd.DataFrame | None = None) -> "Catalogue":
        info = data.item_info().reindex(data.item_map.ids)
        return cls(
            users=data.user_map,
            items=data.item_map,
            titles=[str(t) for t in info["title"].fillna("")],
            artists=[str(a) for a in info["artist"].fillna("")],
            genres=[list(g) if isinstance(g, list) else [] for g in info["genres"]],
            history=data.matrix(train),
            kind=data.kind,
            dataset=data.name,
            checksum=data.checksum(),
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def seen(self, u: int) -> np.ndarray:
        row = self.history[u]
        return row.indices[row.data != 0] if row.nnz else np.empty(0, dtype=np.int32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        h = self.history.tocoo()
        return {"hist_user": h.row.astype(np.int32), "hist_item": h.col.astype(np.int32),
                "hist_weight": h.data.astype(np.float32)}

    def to_manifest(self) -> dict[str, Any]:
        return {"users": self.users.to_list(), "items": self.items.to_list(), "titles": self.titles,
                "artists": self.artists, "genres": self.genres, "data_kind": self.kind,
                "dataset": self.dataset, "dataset_checksum": self.checksum}

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], m: dict[str, Any]) -> "Catalogue":
        users, items = IdMap.from_list(m["users"]), IdMap.from_list(m["items"])
        hist = sparse.csr_matrix((arrays["hist_weight"], (arrays["hist_user"], arrays["hist_item"])),
                                 shape=(len(users), len(items)), dtype=np.float32)
        return cls(users, items, m["titles"], m["artists"], m["genres"], hist, m.get("data_kind", "implicit"),
                   m.get("dataset", ""), m.get("dataset_checksum", ""))


class Recommender:
    """Base class: subclasses implement ``_fit``, ``score`` and their ``_arrays``/``_from_arrays``."""

    name: ClassVar[str] = "base"
    catalogue: Catalogue

    # -- fitting and scoring --
    def fit(self, data: MusicDataset, train: pd.DataFrame | None = None, **kwargs: Any) -> "Recommender":
        """Fit on ``train`` (default: all of ``data``'s interactions), with ``data``'s id maps."""
        self.catalogue = Catalogue.from_dataset(data, train)
        self._fit(**kwargs)
        return self

    def _fit(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for each user index in ``users``: shape (len(users), n_items)."""
        raise NotImplementedError

    # -- public API on external ids --
    def user_index(self, user: str) -> int:
        u = self.catalogue.users.get(user)
        if u < 0:
            raise UnknownUser(f"user {user!r} is not in the {self.catalogue.dataset or 'training'} data")
        return u

    def recommend(self, user: str, n: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``n`` items for a known user, each with a reason; raises ``UnknownUser`` otherwise."""
        u = self.user_index(user)
        scores = self.score(np.array([u]))[0].astype(np.float64)
        if exclude_seen:
            scores[self.catalogue.seen(u)] = -np.inf
        top = top_n(scores, n)
        return [self._rec(i, scores[i], self.reason(u, i)) for i in top]

    def similar_items(self, item: str, n: int = 10) -> list[tuple[str, float]]:
        """Items most similar to ``item`` (by co-listening here; by embeddings in MF)."""
        i = self.catalogue.items.index(item)
        h = self.catalogue.history.tocsc()
        col = (h[:, i] > 0).astype(np.float32)
        co = np.asarray((h > 0).astype(np.float32).T @ col).ravel()
        norm = np.sqrt(np.asarray((h > 0).sum(axis=0)).ravel() * max(co[i], 1.0)) + 1e-9
        sim = co / norm
        sim[i] = -np.inf
        return [(self.catalogue.items.external(j), float(sim[j])) for j in top_n(sim, n)]

    def reason(self, u: int, i: int) -> str:
        g = self.catalogue.genres[i]
        return f"popular in {g[0]}" if g else "popular with all listeners"

    def _rec(self, i: int, score: float, reason: str) -> Recommendation:
        c = self.catalogue
        return Recommendation(c.items.external(i), c.titles[i], c.artists[i], list(c.genres[i]), float(score), reason)

    # -- persistence (arrays + JSON manifest; never pickle) --
    def save(self, stem: str | Path) -> Path:
        arrays = {**self.catalogue.to_arrays(), **self._arrays()}
        manifest = {"kind": f"music-{self.name}", "schema": 1, **self.catalogue.to_manifest(), **self._config()}
        return save_arrays(stem, arrays, manifest)

    @classmethod
    def load(cls, stem: str | Path, *, expect_checksum: str | None = None) -> "Recommender":
        expect = {"dataset_checksum": expect_checksum} if expect_checksum else None
        arrays, m = load_arrays(stem, kind=f"music-{cls.name}", expect=expect, hint="python -m music train --force")
        try:
            obj = cls.__new__(cls)
            m = dict(m, _stem=str(stem))
            obj.catalogue = Catalogue.from_saved(arrays, m)
            obj._from_arrays(arrays, m)
        except (KeyError, ValueError, IndexError) as exc:
            raise ArtifactError(f"{stem} is corrupt or from another version ({exc!r}); "
                                "rebuild with `python -m music train --force`.") from exc
        return obj

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _config(self) -> dict[str, Any]:
        return {}

    def _from_arrays(self, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        pass


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best finite scores, best first (argpartition, then sort the few)."""
    finite = np.isfinite(scores)
    k = int(min(n, finite.sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-np.where(finite, scores, -np.inf), k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# ----------------------------------------------------------------------------------------------
# popularity


class Popularity(Recommender):
    """Most listeners first: the baseline every personalised model must beat."""

    name = "popularity"

    def _fit(self, **kwargs: Any) -> None:
        h = self.catalogue.history
        self.counts = np.asarray((h > 0).sum(axis=0)).ravel().astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _from_arrays(self, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        self.counts = arrays["counts"]


# ----------------------------------------------------------------------------------------------
# genres


class GenreRecommender(Recommender):
    """Popular, well-liked items in the listener's genres.

    Cold start: ``recommend_for_genres(["jazz", "folk"])``. Known users: their genres are read off
    their history (weighted by plays/ratings), so the same model serves users with little history.
    Item quality = log listeners (popular) + how much those listeners liked it (mean log plays, or a
    Bayesian-averaged rating for explicit data, so one 5-star rating does not top the list).
    """

    name = "genre"

    def _fit(self, prior: float = 10.0, **kwargs: Any) -> None:
        c = self.catalogue
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
        row = self.catalogue.history[u]
        w = np.zeros(self.catalogue.n_items, np.float32)
        w[row.indices] = np.log1p(np.abs(row.data))
        v = self.item_genre @ w
        return v / v.sum() if v.sum() > 0 else v

    def _score_pref(self, pref: np.ndarray) -> np.ndarray:
        match = np.asarray(pref @ self.item_genre).ravel()
        q = self.quality - self.quality.min() + 1e-3
        return np.where(match > 0, match * q, 0.0).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
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

    def reason(self, u: int, i: int) -> str:
        pref = self.user_genres(u)
        liked = {self.genre_names[k].lower() for k in np.flatnonzero(pref > 0)}
        return self._genre_reason(i, liked)

    def _genre_reason(self, i: int, wanted: set[str]) -> str:
        gs = [g for g in self.catalogue.genres[i] if g.lower() in wanted] or self.catalogue.genres[i]
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
            shape=(len(self.genre_names), self.catalogue.n_items))
