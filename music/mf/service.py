"""What the tab and the CLI ask of a trained bundle: a user's history, their picks, a new listener's picks.

Why a separate module: the policy lives here, not in the UI. Users with a thin history (fewer
than ``BLEND_BELOW`` items) get MF blended with their genre picks, because a few plays give
an embedding little to stand on while the genres of those plays are already informative.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from music.mf.train import Bundle
from music.recommender import Recommendation, UnknownUser, top_n

log = logging.getLogger(__name__)

#: Below this many history items, MF scores are blended with genre scores (weight n / BLEND_BELOW).
BLEND_BELOW = 5


def users(bundle: Bundle) -> list[str]:
    """Every known user id, in the model's order."""
    return bundle.mf.catalog.users.ids


def history(bundle: Bundle, user: str, n: int = 10) -> pd.DataFrame:
    """The user's top ``n`` history items (most played / best rated first) with metadata."""
    c = bundle.mf.catalog
    u = bundle.mf.user_index(user)
    row = c.history[u]
    order = np.argsort(-row.data, kind="stable")[:n]
    idx = row.indices[order]
    return pd.DataFrame({
        "item": c.items.externals(idx),
        "title": [c.titles[i] for i in idx],
        "artist": [c.artists[i] for i in idx],
        "genres": [", ".join(c.genres[i]) for i in idx],
        ("rating" if c.kind == "explicit" else "plays"): row.data[order],
    })


def _z(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    mu, sd = x[finite].mean(), x[finite].std() + 1e-9
    return (x - mu) / sd


def recommend_user(bundle: Bundle, user: str, n: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
    """Top-``n`` for a known user; ``UnknownUser`` if the id is not in the data.

    Users with an empty history get genre-free popularity picks (there is nothing to go on).
    """
    mf = bundle.mf
    u = mf.user_index(user)
    seen = mf.catalog.seen(u)
    if len(seen) == 0:
        return bundle.popularity.recommend(user, n, exclude_seen)
    if len(seen) >= BLEND_BELOW:
        return mf.recommend(user, n, exclude_seen)
    w = len(seen) / BLEND_BELOW
    s_mf = _z(mf.score(np.array([u]))[0].astype(np.float64))
    s_g = _z(bundle.genre.score(np.array([u]))[0].astype(np.float64))
    scores = w * s_mf + (1 - w) * s_g
    if exclude_seen:
        scores[seen] = -np.inf
    out = []
    for i in top_n(scores, n):
        reason = mf.explain(u, i) if w * s_mf[i] >= (1 - w) * s_g[i] else bundle.genre.explain(u, i)
        out.append(mf._rec(i, scores[i], reason))
    return out


def recommend_new_listener(bundle: Bundle, genres: Sequence[str], n: int = 10) -> list[Recommendation]:
    """Cold start: picks from the genres a new listener chose (empty list if none is known)."""
    return bundle.genre.recommend_for_genres(genres, n)


def genres(bundle: Bundle) -> list[str]:
    """Genres on offer for new listeners, most common first."""
    c = bundle.genre.catalog
    counts: dict[str, int] = {}
    for gs in c.genres:
        for g in gs:
            counts[g] = counts.get(g, 0) + 1
    return sorted(counts, key=lambda g: (-counts[g], g))


__all__ = ["users", "history", "recommend_user", "recommend_new_listener", "genres", "UnknownUser", "BLEND_BELOW"]
