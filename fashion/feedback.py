"""Fashion relevance feedback: a profile's 👍 / 👎 re-rank the next results (Rocchio on the index's vectors).

Why Rocchio: the index is a cosine space in which same-kind garments cluster (that is what its projection
was trained for), so the mean of what a user liked is a better description of what they want than one
query photo, and the mean of what they rejected marks a direction to leave. It needs no retraining and
changes the very next screen. The weights were chosen on validation queries from the train split
(``python -m fashion evaluate-feedback``; bench/results/fashion_feedback.json has the grid and the test
numbers).

Likes and dislikes live in the shared feedback store (``core.feedback``) under the ``fashion`` tab, keyed
``<catalog>/<item id>`` so the same id in two catalogs never mixes.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Sequence

import numpy as np

from core.feedback import FeedbackError, FeedbackStore, RocchioWeights, feedback_note, rocchio
from core.images import ImageSource
from core.search import Hit
from fashion.model import FashionIndex

log = logging.getLogger(__name__)

TAB = "fashion"
#: Chosen on 2,000 validation queries drawn from Fashion-MNIST train (bench/results/fashion_feedback.json):
#: the best of a 5 × 7 grid of (β, γ) with α = 1; only the ratios matter because the result is re-normalised.
FEEDBACK_WEIGHTS = RocchioWeights(alpha=1.0, beta=1.0, gamma=1.0)


class _View:
    """Row lookup and unit vectors of an index, built once per index object (70k ids → rows)."""

    def __init__(self, index: FashionIndex) -> None:
        self.index = index
        self.rows = {item: i for i, item in enumerate(index.ids)}
        vectors = np.asarray(index.vectors, dtype=np.float32)
        self.unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.labels = np.asarray(index.labels)

    def row(self, item_id: str) -> Optional[int]:
        return self.rows.get(str(item_id))

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        return np.asarray([r for r in (self.row(i) for i in ids) if r is not None], dtype=np.int64)


_VIEWS: list[_View] = []


def _view(index: FashionIndex) -> _View:
    for view in _VIEWS:
        if view.index is index:
            return view
    view = _View(index)
    _VIEWS[:] = [view, *_VIEWS[:3]]  # the app holds one or two indexes; keep a few
    return view


def item_key(index: FashionIndex, item_id: str) -> str:
    """The store's key for a catalog item: ``<catalog>/<id>``."""
    return f"{index.catalog}/{item_id}"


def record_feedback(store: FeedbackStore, profile: str, index: FashionIndex, item_id: str, signal: str) -> int:
    """Store a like or dislike of a catalog item; an item the index does not have is refused."""
    if signal not in ("like", "dislike"):
        raise FeedbackError(f"Fashion feedback is 'like' or 'dislike', not {signal!r}.")
    if _view(index).row(item_id) is None:
        raise FeedbackError(f"{str(item_id)[:40]!r} is not an item of the {index.catalog} catalog.")
    version = f"{index.catalog}@{index.manifest.get('created', '?')}"
    return store.record(profile, TAB, item_key(index, item_id), signal, model_version=version)


def profile_feedback(store: FeedbackStore, profile: str, index: FashionIndex) -> tuple[list[str], list[str]]:
    """(liked ids, disliked ids) of this profile that belong to this index's catalog."""
    prefix = f"{index.catalog}/"

    def mine(keys: Iterable[str]) -> list[str]:
        ids = [k[len(prefix):] for k in keys if k.startswith(prefix)]
        return [i for i in ids if _view(index).row(i) is not None]

    return mine(store.likes(profile, TAB)), mine(store.dislikes(profile, TAB))


def rerank_with_feedback(
    index: FashionIndex,
    query: Optional[np.ndarray],
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    k: int = 10,
    *,
    exclude: Iterable[str] = (),
    categories: Optional[Sequence[str]] = None,
    weights: RocchioWeights = FEEDBACK_WEIGHTS,
) -> list[Hit]:
    """Top ``k`` items for the Rocchio query built from ``query`` (a vector in the index's space, or None to
    search by the likes alone) and the liked / disliked item ids. Disliked items and ``exclude`` (e.g. what
    is already on screen, or the query item) are never returned."""
    view = _view(index)
    like_rows, dislike_rows = view.rows_of(liked), view.rows_of(disliked)
    q = rocchio(query, view.unit[like_rows] if len(like_rows) else None,
                view.unit[dislike_rows] if len(dislike_rows) else None, weights)
    scores = view.unit @ q
    scores[np.concatenate([dislike_rows, view.rows_of(exclude)])] = -np.inf
    if categories:
        scores[~np.isin(view.labels, list(categories))] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [Hit(id=index.ids[r], index=int(r), score=float(scores[r]),
                meta={"label": index.labels[r], "title": index.titles[r]}) for r in top]


def search_with_feedback(
    store: FeedbackStore,
    profile: str,
    index: FashionIndex,
    *,
    image: Optional[ImageSource] = None,
    item_id: Optional[str] = None,
    k: int = 10,
    categories: Optional[Sequence[str]] = None,
) -> tuple[list[Hit], str]:
    """Results for an uploaded image or a catalog item, re-ranked by the profile's feedback, and the note the
    tab shows ("re-ranked by your 3 likes"; empty when the profile has given none)."""
    liked, disliked = profile_feedback(store, profile, index)
    if image is not None:
        query = index.embed([image])[0]
    elif item_id is not None:
        row = _view(index).row(item_id)
        if row is None:
            raise FeedbackError(f"{str(item_id)[:40]!r} is not an item of the {index.catalog} catalog.")
        query = _view(index).unit[row]
    else:
        query = None
    if not liked and not disliked:
        if query is None:
            return [], ""
        hits = index.search(image, k, categories) if image is not None else index.similar(item_id, k, categories)
        return hits, ""
    if query is None and not liked:
        return [], ""
    hits = rerank_with_feedback(index, query, liked, disliked, k, exclude=[item_id] if item_id else (),
                                categories=categories)
    return hits, feedback_note(len(liked), len(disliked))
