"""Product-search relevance feedback: a profile's 👍 / 👎 re-rank the next results (per space).

The index keeps a text part and an image part side by side and fuses their cosines at query time
(``multimodal.model``), so Rocchio is applied to each part the query has: the text query moves toward the
liked products' text vectors and away from the disliked ones', the picture query likewise in image space,
and the fused Rocchio query fetches the candidates (``index.search``); the re-ranker chosen on validation
(``core.feedback.rerank``) then scores them per part from every liked and disliked product and fuses the
parts the same way. With likes but no query ("more like what I liked") both parts come from the likes
alone. Disliked products are never shown again.

Likes and dislikes live in the shared feedback store under the ``multimodal`` tab, keyed
``<index name>/<product id>``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from core.feedback import FeedbackStore, RocchioWeights, feedback_note, rocchio
from core.feedback.rerank import POOL, FeedbackMethod, feedback_scores, one_blas_thread
from core.feedback.catalog import catalog_feedback, catalog_key, record_item_feedback
from core.feedback.relevance import BETAS, GAMMAS, PAGE, candidate_grids, precision_summary
from core.metrics import bootstrap_ci
from multimodal.model import DEFAULT_ALPHA, MultimodalIndex, Result

log = logging.getLogger(__name__)

TAB = "multimodal"
#: Chosen on simulated sessions of half the Tux Paint products (``python -m multimodal evaluate-feedback``;
#: bench/results/multimodal_feedback_tuxpaint.json): the best of a 5 × 7 grid of (β, γ) with α = 1. It picks
#: the candidates that ``FEEDBACK_METHOD`` re-ranks.
FEEDBACK_WEIGHTS = RocchioWeights(alpha=1.0, beta=4.0, gamma=2.0)
#: The re-ranker of the Rocchio query's candidates, chosen on the same validation half among Rocchio,
#: per-example fusion and a linear SVM (35 settings each): fusion with the mean (τ = ∞), i.e. the query's
#: cosine plus β·mean cosine to the likes − γ·mean cosine to the dislikes, per part (validation 0.643 vs
#: Rocchio 0.640 and the SVM 0.638; 0.572 without feedback).
FEEDBACK_METHOD = FeedbackMethod("fusion", beta=2.0, gamma=1.0, tau=math.inf)


def _name(index: MultimodalIndex) -> str:
    catalog = index.manifest.get("catalog")
    return str(catalog.get("name") if isinstance(catalog, dict) else catalog or "catalog")


def item_key(index: MultimodalIndex, item_id: str) -> str:
    """The store's key of a product of this index (what likes, dislikes and the saved list use)."""
    return catalog_key(_name(index), item_id)


def _row(index: MultimodalIndex, item_id: str) -> Optional[int]:
    try:
        return index.position(item_id)
    except KeyError:
        return None


def record_feedback(store: FeedbackStore, profile: str, index: MultimodalIndex, item_id: str, signal: str) -> int:
    """Store a like or dislike of a product; a product the index does not have is refused."""
    return record_item_feedback(store, profile, TAB, _name(index), item_id, signal,
                                exists=lambda i: _row(index, i) is not None,
                                model_version=f"{_name(index)}@{index.manifest.get('created', '?')}")


def profile_feedback(store: FeedbackStore, profile: str, index: MultimodalIndex) -> tuple[list[str], list[str]]:
    """(liked ids, disliked ids) of this profile that belong to this index."""
    return catalog_feedback(store, profile, TAB, _name(index), lambda i: _row(index, i) is not None)


def _text_part(index: MultimodalIndex) -> np.ndarray:
    """Text vectors, taken from the picture's projection where a product has no text (as search does)."""
    if index.projected is None:
        return index.text
    return np.where(index.has_text[:, None], index.text, index.projected)


def _fused_scores(index: MultimodalIndex, rows: np.ndarray, text_q: Optional[np.ndarray],
                  image_q: Optional[np.ndarray], like_rows: Sequence[int], dislike_rows: Sequence[int],
                  method: FeedbackMethod, alpha: float, pure_likes: bool,
                  caches: Optional[tuple[dict, dict]] = None) -> np.ndarray:
    """``method``'s scores of ``rows``, per part the query has, fused as ``index.search`` fuses cosines
    (α·text + (1−α)·image when both parts are there, the one part otherwise)."""
    text_part = _text_part(index)
    parts = [(text_part, text_q, alpha if image_q is not None else 1.0, 0),
             (index.image, image_q, (1 - alpha) if text_q is not None else 1.0, 1)]
    total = np.zeros(len(rows), np.float32)
    for part, q, weight, i in parts:
        if q is None or weight == 0:
            continue
        total += weight * feedback_scores(part[rows], None if pure_likes else q,
                                          part[list(like_rows)] if len(like_rows) else None,
                                          part[list(dislike_rows)] if len(dislike_rows) else None, method,
                                          svm_cache=caches[i] if caches else None)
    return total


def rerank_with_feedback(
    index: MultimodalIndex,
    *,
    text_vec: Optional[np.ndarray] = None,
    image_vec: Optional[np.ndarray] = None,
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
    k: int = 10,
    categories: Optional[Sequence[str]] = None,
    exclude: Iterable[str] = (),
    weights: RocchioWeights = FEEDBACK_WEIGHTS,
    method: FeedbackMethod = FEEDBACK_METHOD,
) -> list[Result]:
    """Top ``k`` products: the Rocchio-updated text and / or image query (``weights``) fetches a candidate
    pool through ``index.search`` and ``method`` re-ranks it; disliked and ``exclude`` left out."""
    like_rows = [r for r in (_row(index, i) for i in liked) if r is not None]
    dislike_rows = [r for r in (_row(index, i) for i in disliked) if r is not None]
    if text_vec is None and image_vec is None:
        if not like_rows:
            raise ValueError("Type some words, upload a photo, or like a product first.")
        text_vec, image_vec = np.zeros(index.text.shape[1], np.float32), np.zeros(index.image.shape[1], np.float32)
        pure_likes = True
    else:
        pure_likes = False
    text_part = _text_part(index)

    def update(query: Optional[np.ndarray], part: np.ndarray) -> Optional[np.ndarray]:
        if query is None:
            return None
        q = None if pure_likes else query
        return rocchio(q, part[like_rows] if like_rows else None, part[dislike_rows] if dislike_rows else None,
                       weights)

    new_text, new_image = update(text_vec, text_part), update(image_vec, index.image)
    skip = {index.ids[r] for r in dislike_rows} | {str(i) for i in exclude}
    pool = k if method.kind == "rocchio" else max(k, POOL)
    results = [r for r in index.search(text_vec=new_text, image_vec=new_image, alpha=alpha, k=pool + len(skip),
                                       categories=categories) if r.id not in skip]
    if method.kind == "rocchio" or not results:
        return results[:k]
    rows = np.asarray([index.position(r.id) for r in results])
    with one_blas_thread():
        scores = _fused_scores(index, rows, text_vec, image_vec, like_rows, dislike_rows, method, alpha, pure_likes)
    order = np.argsort(-scores, kind="stable")[:k]
    return [replace(results[i], score=float(scores[i])) for i in order]


def search_with_feedback(
    store: FeedbackStore,
    profile: str,
    service,
    *,
    text: Optional[str] = None,
    image=None,
    alpha: float = DEFAULT_ALPHA,
    k: int = 10,
    categories: Optional[Sequence[str]] = None,
) -> tuple[list[Result], str]:
    """``SearchService.search`` re-ranked by the profile's feedback, and the note the tab shows."""
    index = service.index
    liked, disliked = profile_feedback(store, profile, index)
    if not liked and not disliked:
        return service.search(text=text, image=image, alpha=alpha, k=k, categories=categories), ""
    text_vec = service.encode_text(text) if text and text.strip() else None
    image_vec = service.encode_image(image) if image is not None else None
    results = rerank_with_feedback(index, text_vec=text_vec, image_vec=image_vec, liked=liked, disliked=disliked,
                                   alpha=alpha, k=k, categories=categories)
    return results, feedback_note(len(liked), len(disliked))


def evaluate_feedback(index: MultimodalIndex, *, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> dict[str, Any]:
    """Simulated feedback sessions on the catalog itself (``core.feedback.relevance`` protocol, category labels).

    Each product is a "more like this" query (its text and picture, itself left out); the user likes the
    first page's products of the query's category and dislikes the rest; precision@10 of the next page is
    measured without feedback, with the Rocchio update ``rerank_with_feedback`` makes, and with each other
    re-ranker of ``core.feedback.rerank`` re-ranking the Rocchio query's candidate pool, vectorised over the
    catalog. Half the products (seeded) choose the Rocchio weights (5 × 7 grid), then the re-ranker (35
    settings each, on the chosen Rocchio's pool); the other half report. Small catalogs say so.
    """
    rows = [r for r in range(len(index)) if index.has_text[r] or index.projected is not None]
    order = np.random.default_rng(seed).permutation(rows)
    halves = {"validation": order[: len(order) // 2], "test": order[len(order) // 2:]}
    text_part = _text_part(index)
    categories = np.asarray(index.categories)
    grid = [RocchioWeights(1.0, b, g) for b in BETAS for g in GAMMAS]

    def fused(q_text: np.ndarray, q_image: np.ndarray) -> np.ndarray:
        # the fused score of ``index.search`` (alpha·cos_text + (1-alpha)·cos_image), computed for all products
        # at once: rerank_with_feedback answers the same (tested) but is too slow to call 17,000 times here
        return alpha * (text_part @ q_text) + (1 - alpha) * (index.image @ q_image)

    def rocchio_scores(row: int, liked: np.ndarray, disliked: np.ndarray, w: RocchioWeights) -> np.ndarray:
        q_text = rocchio(text_part[row], text_part[liked] if len(liked) else None,
                         text_part[disliked] if len(disliked) else None, w)
        q_image = rocchio(index.image[row], index.image[liked] if len(liked) else None,
                          index.image[disliked] if len(disliked) else None, w)
        return fused(q_text, q_image)

    def sessions(query_rows: np.ndarray, settings: list, pool_weights: Optional[RocchioWeights] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per query: next-page precision without feedback, and with each setting (RocchioWeights: the
        Rocchio query over the catalog; FeedbackMethod: that re-ranker on the ``pool_weights`` pool)."""
        without, with_fb = [], [[] for _ in settings]
        for row in query_rows:
            label = categories[row]
            scores = fused(text_part[row] / max(np.linalg.norm(text_part[row]), 1e-12), index.image[row])
            scores[row] = -np.inf
            ranked = np.argsort(-scores, kind="stable")[: 2 * PAGE]
            first = ranked[:PAGE]
            liked, disliked = first[categories[first] == label], first[categories[first] != label]
            without.append(np.mean(categories[ranked[PAGE:]] == label))
            pool = None
            if pool_weights is not None:
                s = rocchio_scores(row, liked, disliked, pool_weights)
                s[first], s[row] = -np.inf, -np.inf
                pool = np.argsort(-s, kind="stable")[: min(POOL, len(s) - PAGE - 1)]
            caches: tuple[dict, dict] = ({}, {})
            for i, w in enumerate(settings):
                if isinstance(w, RocchioWeights):
                    s2 = rocchio_scores(row, liked, disliked, w)
                    s2[first] = -np.inf
                    s2[row] = -np.inf
                    page = np.argsort(-s2, kind="stable")[:PAGE]
                else:
                    s2 = _fused_scores(index, pool, text_part[row], index.image[row], liked, disliked, w, alpha,
                                       False, caches)
                    page = pool[np.argsort(-s2, kind="stable")[:PAGE]]
                with_fb[i].append(np.mean(categories[page] == label))
        return np.asarray(without), np.asarray(with_fb)

    with one_blas_thread():  # many small products
        return _evaluate(index, alpha, seed, sessions, halves, grid)


def _evaluate(index: MultimodalIndex, alpha: float, seed: int, sessions, halves: dict, grid: list) -> dict[str, Any]:
    """``evaluate_feedback``'s choice on the validation half and report on the test half."""
    val_without, val_with = sessions(halves["validation"], grid)
    best = int(np.argmax(val_with.mean(axis=1)))
    weights = grid[best]
    rocchio_val = round(float(val_with[best].mean()), 4)
    candidates: dict[str, Any] = {"rocchio": {"best": {"kind": "rocchio", "beta": weights.beta, "gamma": weights.gamma},
                                              "precision@10": rocchio_val, "settings": len(grid)}}
    method, method_val = FeedbackMethod("rocchio", beta=weights.beta, gamma=weights.gamma), rocchio_val
    for kind, settings in candidate_grids().items():
        _, values = sessions(halves["validation"], settings, weights)
        table = [{**m.describe(), "precision@10": round(float(v), 4)} for m, v in zip(settings, values.mean(axis=1))]
        top = max(range(len(settings)), key=lambda i: table[i]["precision@10"])
        candidates[kind] = {"best": settings[top].describe(), "precision@10": table[top]["precision@10"],
                            "settings": len(settings), "grid": table}
        if table[top]["precision@10"] > method_val:
            method, method_val = settings[top], table[top]["precision@10"]
    test_without, test_rocchio = sessions(halves["test"], [weights])
    test_with = test_rocchio if method.kind == "rocchio" else sessions(halves["test"], [method], weights)[1]

    def gain_of(values: np.ndarray) -> dict[str, Any]:
        diff = values - test_without
        return {"mean": round(float(diff.mean()), 4), "ci95": [round(x, 4) for x in bootstrap_ci(diff, seed=seed)]}

    return {
        "with_feedback": {**precision_summary(test_with[0], seed), "method": method.describe()},
        "without_feedback": precision_summary(test_without, seed),
        "rocchio": {**precision_summary(test_rocchio[0], seed), "gain": gain_of(test_rocchio[0])},
        "gain": gain_of(test_with[0]),
        "method": method.describe(),
        "weights": {"alpha": weights.alpha, "beta": weights.beta, "gamma": weights.gamma},
        "validation": {"queries": int(len(halves["validation"])),
                       "without_feedback": round(float(val_without.mean()), 4),
                       "grid": [{"beta": w.beta, "gamma": w.gamma, "precision@10": round(float(v), 4)}
                                for w, v in zip(grid, val_with.mean(axis=1))],
                       "candidates": candidates},
        "fusion_alpha": alpha, "catalog": _name(index), "items": len(index),
        "protocol": "each product a 'more like this' query; first page top 10; simulated user likes its category "
                    "and dislikes the rest; second page = next 10 unseen; Rocchio weights, then the re-ranker of "
                    "the Rocchio query's candidates (35 settings each), chosen on half the products, reported on "
                    "the other half",
    }
