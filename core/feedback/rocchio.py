"""Relevance feedback on embeddings (Rocchio): move a query toward what a user liked, away from the rest.

``q' = α·q + β·mean(liked) − γ·mean(disliked)``, re-normalised to unit length, the classic update from
Rocchio (1971) as taught in Manning, Raghavan & Schütze, *Introduction to Information Retrieval* §9.1.1.
It needs no training, works in any cosine space the tabs search (fashion's projected CNN vectors,
multimodal's text and image parts), and changes the next screen at once. The weights are chosen on
validation queries per tab (``python -m fashion evaluate-feedback``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class RocchioWeights:
    """α (the query), β (liked items), γ (disliked items)."""

    alpha: float = 1.0
    beta: float = 0.75
    gamma: float = 0.15


def rocchio(query: Optional[np.ndarray], liked: Optional[np.ndarray] = None, disliked: Optional[np.ndarray] = None,
            weights: RocchioWeights = RocchioWeights()) -> np.ndarray:
    """The Rocchio query (unit length) for one query vector (D,) or None, and (n, D) liked / disliked rows.

    Rows are normalised before averaging, so one long vector cannot dominate; an empty side contributes
    nothing. With no query and no likes there is nothing to search for and ``ValueError`` is raised.
    """
    parts: list[np.ndarray] = []
    dim = None
    for vectors, weight, sign in ((liked, weights.beta, 1.0), (disliked, weights.gamma, -1.0)):
        if vectors is None or weight == 0:
            continue
        rows = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if rows.size == 0:
            continue
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        parts.append(sign * weight * rows.mean(axis=0))
        dim = rows.shape[1]
    if query is not None:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if dim is not None and q.shape[0] != dim:
            raise ValueError(f"query has dimension {q.shape[0]}, feedback vectors {dim}")
        parts.append(weights.alpha * q / max(float(np.linalg.norm(q)), 1e-12))
    if not parts:
        raise ValueError("Rocchio needs a query or at least one liked or disliked item")
    out = np.sum(parts, axis=0)
    norm = float(np.linalg.norm(out))
    if norm < 1e-9:
        raise ValueError("the feedback cancels the query out; nothing is left to search for")
    return (out / norm).astype(np.float32)


def rocchio_batch(queries: np.ndarray, liked_mean: np.ndarray, liked_any: np.ndarray, disliked_mean: np.ndarray,
                  disliked_any: np.ndarray, weights: RocchioWeights) -> np.ndarray:
    """Vectorised Rocchio for many queries at once (evaluation): per-query means of the (normalised) liked
    and disliked rows and flags saying whether each side had any; rows with no feedback keep their query."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    out = weights.alpha * q + weights.beta * liked_mean * liked_any[:, None] - weights.gamma * disliked_mean * disliked_any[:, None]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 1e-9, out / np.maximum(norms, 1e-12), q).astype(np.float32)


def feedback_note(likes: int, dislikes: int) -> str:
    """What a tab says when it re-ranks: "re-ranked by your 3 likes and 1 dislike" ('' with no feedback)."""
    parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in ((likes, "like"), (dislikes, "dislike")) if n]
    return f"re-ranked by your {' and '.join(parts)}" if parts else ""
