"""Fashion relevance feedback: a profile's 👍 / 👎 re-rank the next results.

Two steps, both on the index's vectors and without retraining, so the very next screen changes:

1. Rocchio picks the candidates: the index is a cosine space in which same-kind garments cluster (that is
   what its projection was trained for), so the query moved toward the mean of what the user liked and away
   from the mean of what they rejected finds the right region; its best 1,000 items are the pool.
2. A re-ranker orders the pool using every liked and disliked item, not only their means
   (``core.feedback.rerank``): the tab uses the one that did best on validation sessions among Rocchio
   itself, per-example fusion and a linear SVM, each tuned over 35 settings
   (``python -m fashion evaluate-feedback``; bench/results/fashion_feedback.json has every candidate's
   validation numbers and the test numbers).

Likes and dislikes live in the shared feedback store (``core.feedback``) under the ``fashion`` tab, keyed
``<catalog>/<item id>`` so the same id in two catalogs never mixes.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Sequence

import numpy as np

from core.feedback import FeedbackError, FeedbackStore, RocchioWeights, feedback_note
from core.feedback.rerank import FeedbackMethod, rerank
from core.feedback.catalog import catalog_feedback, record_item_feedback
from core.images import ImageSource
from core.search import Hit
from fashion.model import FashionIndex

log = logging.getLogger(__name__)

TAB = "fashion"
#: Chosen on 3,000 Fashion-MNIST train items held out from a refitted projection (bench/results/
#: fashion_feedback.json): the best of a 5 × 7 grid of (β, γ) with α = 1; only the ratios matter because the
#: result is re-normalised. It picks the candidates that ``FEEDBACK_METHOD`` re-ranks.
FEEDBACK_WEIGHTS = RocchioWeights(alpha=1.0, beta=1.0, gamma=1.0)
#: The re-ranker of the Rocchio query's candidate pool (``core.feedback.rerank``), chosen on the same
#: validation queries among Rocchio, per-example fusion and a linear SVM, 35 settings each: the SVM
#: (second-page precision@10 0.9545 vs Rocchio 0.9502, fusion 0.9502, 0.9038 without feedback).
FEEDBACK_METHOD = FeedbackMethod("svm", c=1.0, lam=4.0)


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


def record_feedback(store: FeedbackStore, profile: str, index: FashionIndex, item_id: str, signal: str) -> int:
    """Store a like or dislike of a catalog item; an item the index does not have is refused."""
    return record_item_feedback(store, profile, TAB, index.catalog, item_id, signal,
                                exists=lambda i: _view(index).row(i) is not None,
                                model_version=f"{index.catalog}@{index.manifest.get('created', '?')}")


def profile_feedback(store: FeedbackStore, profile: str, index: FashionIndex) -> tuple[list[str], list[str]]:
    """(liked ids, disliked ids) of this profile that belong to this index's catalog."""
    return catalog_feedback(store, profile, TAB, index.catalog, lambda i: _view(index).row(i) is not None)


def rerank_with_feedback(
    index: FashionIndex,
    query: Optional[np.ndarray],
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    k: int = 10,
    *,
    exclude: Iterable[str] = (),
    categories: Optional[Sequence[str]] = None,
    method: FeedbackMethod = FEEDBACK_METHOD,
    weights: RocchioWeights = FEEDBACK_WEIGHTS,
) -> list[Hit]:
    """Top ``k`` items for ``query`` (a vector in the index's space, or None to search by the likes alone)
    and the liked / disliked item ids: the Rocchio query (``weights``) picks a candidate pool from the whole
    index and ``method`` re-ranks it. Disliked items and ``exclude`` (e.g. what is already on screen, or the
    query item) are never returned."""
    view = _view(index)
    like_rows, dislike_rows = view.rows_of(liked), view.rows_of(disliked)
    blocked = np.zeros(len(view.unit), dtype=bool)
    blocked[np.concatenate([dislike_rows, view.rows_of(exclude)])] = True
    if categories:
        blocked |= ~np.isin(view.labels, list(categories))
    rows, scores = rerank(view.unit, query, like_rows, dislike_rows, method, weights, blocked=blocked)
    return [Hit(id=index.ids[r], index=int(r), score=float(s),
                meta={"label": index.labels[r], "title": index.titles[r]}) for r, s in zip(rows[:k], scores[:k])]


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
