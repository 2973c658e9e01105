"""Simulated relevance-feedback sessions: how much does a user's 👍 / 👎 on page one improve page two?

Shared by the tabs that re-rank with Rocchio (fashion, product search) so they measure feedback the same
way: the first page is a query's top 10; a simulated user likes the items that share the query's label and
dislikes the rest; the second page is the next 10 items not yet shown, ranked by the same query
(``without``) or by the Rocchio query (``with``). ``choose_weights`` grid-searches (β, γ) with α = 1 on
validation queries; ``choose_method`` then gives every other re-ranker of ``core.feedback.rerank`` (per-example
fusion, a linear SVM) a grid of the same size on the same queries, each re-ranking the pool of the chosen
Rocchio query exactly as the tab does, and keeps the best.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from core.feedback.rerank import POOL, FeedbackMethod, feedback_scores, one_blas_thread
from core.feedback.rocchio import RocchioWeights, rocchio_batch
from core.metrics import precision_at_k, summarize

PAGE = 10
BETAS = (0.0, 0.5, 1.0, 2.0, 4.0)
GAMMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
#: Every candidate gets the same budget as Rocchio's 5 × 7 grid: 35 settings.
FUSION_TAUS = (0.0, 0.02, 0.05, 0.2, math.inf)
FUSION_PAIRS = ((0.5, 0.5), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (2.0, 2.0))
SVM_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
SVM_LAMBDAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def candidate_grids() -> dict[str, list[FeedbackMethod]]:
    """The settings each re-ranker other than Rocchio is tuned over (35 each)."""
    return {
        "fusion": [FeedbackMethod("fusion", beta=b, gamma=g, tau=t) for t in FUSION_TAUS for b, g in FUSION_PAIRS],
        "svm": [FeedbackMethod("svm", c=c, lam=lam) for c in SVM_CS for lam in SVM_LAMBDAS],
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def second_pages(
    vectors: np.ndarray,
    labels: Sequence[str],
    catalog_rows: np.ndarray,
    query_rows: np.ndarray,
    settings: Sequence[RocchioWeights],
    *,
    block: int = 500,
) -> dict[str, np.ndarray]:
    """Per-query relevance (n, 10) of the first page, the second page without feedback, and the second page
    with feedback for each weight setting (keys ``first``, ``without``, ``with:<i>``).

    A query row that is also in the catalog is left out of its own results (validation on train).
    """
    unit = _unit(np.asarray(vectors, dtype=np.float32))
    labels = np.asarray(labels)
    catalog = unit[catalog_rows]
    catalog_labels = labels[catalog_rows]
    position = {int(r): i for i, r in enumerate(catalog_rows)}
    out: dict[str, list[np.ndarray]] = {"first": [], "without": [], **{f"with:{i}": [] for i in range(len(settings))}}
    for start in range(0, len(query_rows), block):
        rows = query_rows[start : start + block]
        q = unit[rows]
        truth = labels[rows][:, None]
        self_pos = np.asarray([position.get(int(r), -1) for r in rows])
        has_self = self_pos >= 0
        scores = q @ catalog.T
        scores[np.nonzero(has_self)[0], self_pos[has_self]] = -np.inf
        top = _top(scores, 2 * PAGE)
        first = top[:, :PAGE]
        liked = catalog_labels[first] == truth
        out["first"].append(liked)
        out["without"].append(catalog_labels[top[:, PAGE:]] == truth)
        shown = catalog[first]  # (b, 10, d)
        n_like, n_dislike = liked.sum(1), (~liked).sum(1)
        like_mean = (shown * liked[..., None]).sum(1) / np.maximum(n_like, 1)[:, None]
        dislike_mean = (shown * ~liked[..., None]).sum(1) / np.maximum(n_dislike, 1)[:, None]
        for i, w in enumerate(settings):
            q2 = rocchio_batch(q, like_mean, n_like > 0, dislike_mean, n_dislike > 0, w)
            s2 = q2 @ catalog.T
            np.put_along_axis(s2, first, -np.inf, axis=1)  # the next page: nothing already shown
            s2[np.nonzero(has_self)[0], self_pos[has_self]] = -np.inf
            out[f"with:{i}"].append(catalog_labels[_top(s2, PAGE)] == truth)
    return {k: np.concatenate(v) for k, v in out.items()}


def choose_weights(
    vectors: np.ndarray, labels: Sequence[str], catalog_rows: np.ndarray, query_rows: np.ndarray, source: str
) -> tuple[RocchioWeights, dict[str, Any]]:
    """Grid-search (β, γ) with α = 1 on validation queries searched against ``catalog_rows``."""
    grid = [RocchioWeights(1.0, b, g) for b, g in itertools.product(BETAS, GAMMAS)]
    pages = second_pages(vectors, labels, catalog_rows, query_rows, grid)
    table = [{"beta": w.beta, "gamma": w.gamma,
              "precision@10": round(float(precision_at_k(pages[f"with:{i}"], PAGE).mean()), 4)}
             for i, w in enumerate(grid)]
    best = max(range(len(grid)), key=lambda i: (table[i]["precision@10"], -grid[i].gamma, -grid[i].beta))
    info = {"queries": int(len(query_rows)), "source": source,
            "without_feedback": round(float(precision_at_k(pages["without"], PAGE).mean()), 4), "grid": table}
    return grid[best], info


def precision_summary(values: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Per-query second-page precision@10 → ``{"precision@10", "ci95", "queries"}`` (+ ``small_set``)."""
    s = summarize(values, seed=seed)
    return {"precision@10": round(s["mean"], 4), "ci95": [round(x, 4) for x in s["ci95"]], "queries": s["n"],
            **({"small_set": True} if s.get("small_set") else {})}


def method_pages(
    vectors: np.ndarray,
    labels: Sequence[str],
    catalog_rows: np.ndarray,
    query_rows: np.ndarray,
    pool_weights: RocchioWeights,
    methods: Sequence[FeedbackMethod],
    *,
    pool: int = POOL,
    block: int = 250,
) -> list[np.ndarray]:
    """Per-query second-page relevance (n, 10) for each method, in the tab's way: the first page is the
    query's top 10; the candidates are the Rocchio query's (``pool_weights``) best ``pool`` catalog items not
    yet shown; ``feedback_scores`` (what the tab calls) ranks them. A query row in the catalog is left out."""
    unit = _unit(np.asarray(vectors, dtype=np.float32))
    labels = np.asarray(labels)
    catalog = unit[catalog_rows]
    catalog_labels = labels[catalog_rows]
    position = {int(r): i for i, r in enumerate(catalog_rows)}
    pool = min(pool, len(catalog_rows) - PAGE - 1)
    out: list[list[np.ndarray]] = [[] for _ in methods]
    with one_blas_thread():  # thousands of small products
        _method_blocks(unit, labels, catalog, catalog_labels, position, query_rows, pool_weights, methods, pool,
                       block, out)
    return [np.stack(v) for v in out]


def _method_blocks(unit: np.ndarray, labels: np.ndarray, catalog: np.ndarray, catalog_labels: np.ndarray,
                   position: dict[int, int], query_rows: np.ndarray, pool_weights: RocchioWeights,
                   methods: Sequence[FeedbackMethod], pool: int, block: int, out: list[list[np.ndarray]]) -> None:
    """``method_pages``' work, block by block of queries, appending each method's pages to ``out``."""
    for start in range(0, len(query_rows), block):
        rows = query_rows[start : start + block]
        q = unit[rows]
        truth = labels[rows]
        self_pos = np.asarray([position.get(int(r), -1) for r in rows])
        has_self = np.nonzero(self_pos >= 0)[0]
        scores = q @ catalog.T
        scores[has_self, self_pos[has_self]] = -np.inf
        first = _top(scores, PAGE)
        liked = catalog_labels[first] == truth[:, None]
        shown = catalog[first]
        n_like, n_dislike = liked.sum(1), (~liked).sum(1)
        like_mean = (shown * liked[..., None]).sum(1) / np.maximum(n_like, 1)[:, None]
        dislike_mean = (shown * ~liked[..., None]).sum(1) / np.maximum(n_dislike, 1)[:, None]
        pooled = rocchio_batch(q, like_mean, n_like > 0, dislike_mean, n_dislike > 0, pool_weights) @ catalog.T
        np.put_along_axis(pooled, first, -np.inf, axis=1)
        pooled[has_self, self_pos[has_self]] = -np.inf
        candidates = np.argpartition(-pooled, pool - 1, axis=1)[:, :pool]
        for j in range(len(rows)):
            cand = candidates[j]
            vecs = catalog[cand]
            likes, dislikes = shown[j][liked[j]], shown[j][~liked[j]]
            cache: dict = {}
            for i, method in enumerate(methods):
                s = feedback_scores(vecs, q[j], likes, dislikes, method, svm_cache=cache)
                page = cand[np.argsort(-s, kind="stable")[:PAGE]]
                out[i].append(catalog_labels[page] == truth[j])


def choose_method(
    vectors: np.ndarray, labels: Sequence[str], catalog_rows: np.ndarray, query_rows: np.ndarray,
    rocchio_weights: RocchioWeights, rocchio_precision: float,
) -> tuple[FeedbackMethod, dict[str, Any]]:
    """The best re-ranker on validation: Rocchio (already tuned, ``rocchio_precision``) or the best setting of
    each grid in ``candidate_grids``; a newcomer must beat Rocchio to be chosen (ties keep the simpler one)."""
    grids = candidate_grids()
    flat = [m for grid in grids.values() for m in grid]
    pages = method_pages(vectors, labels, catalog_rows, query_rows, rocchio_weights, flat)
    values = iter(round(float(precision_at_k(p, PAGE).mean()), 4) for p in pages)
    report: dict[str, Any] = {"rocchio": {"best": {"kind": "rocchio", "beta": rocchio_weights.beta,
                                                   "gamma": rocchio_weights.gamma},
                                          "precision@10": rocchio_precision, "settings": len(BETAS) * len(GAMMAS)}}
    best = (rocchio_precision, FeedbackMethod("rocchio", beta=rocchio_weights.beta, gamma=rocchio_weights.gamma))
    for kind, grid in grids.items():
        table = [{**m.describe(), "precision@10": next(values)} for m in grid]
        top = max(range(len(grid)), key=lambda i: table[i]["precision@10"])
        report[kind] = {"best": grid[top].describe(), "precision@10": table[top]["precision@10"],
                        "settings": len(grid), "grid": table}
        if table[top]["precision@10"] > best[0]:
            best = (table[top]["precision@10"], grid[top])
    return best[1], report
