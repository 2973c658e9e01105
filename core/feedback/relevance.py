"""Simulated relevance-feedback sessions: how much does a user's 👍 / 👎 on page one improve page two?

Shared by the tabs that re-rank with Rocchio (fashion, product search) so they measure feedback the same
way: the first page is a query's top 10; a simulated user likes the items that share the query's label and
dislikes the rest; the second page is the next 10 items not yet shown, ranked by the same query
(``without``) or by the Rocchio query (``with``). ``choose_weights`` grid-searches (β, γ) with α = 1 on
validation queries.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from core.feedback.rocchio import RocchioWeights, rocchio_batch
from core.metrics import precision_at_k

PAGE = 10
BETAS = (0.0, 0.5, 1.0, 2.0, 4.0)
GAMMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


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
