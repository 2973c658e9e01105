"""Fold-in: a listener's factor solved from a few liked items, with the trained item factors held fixed.

Why fold-in and not retraining: a like must change the next screen at once. Every trained MF artifact
(Keras or Spark ALS, same ``music-mf`` format) scores ``p_u · q_i + b_u + b_i + μ``; with ``Q``, ``b_i`` and
``μ`` fixed, the best ``p_u`` for a set of likes is the minimiser of the model's *own* training objective
restricted to that one user, which for the least-squares objectives is a d × d linear solve (microseconds):

- **weighted MF** (``mode="wmf"``, the shipped objective for play counts, Hu/Koren/Volinsky's iALS):
  ``Σ_i w_i (y_i − b_i − p·q_i)² + λ‖p‖²`` with ``y_i = 1, w_i = c`` on liked items and ``y_i = 0, w_i = 1``
  on every other item. Closed form (the iALS user step, with the item bias as a fixed offset):
  ``(QᵀQ + Qᵀ(C − I)Q + λI) p = Σ_liked q_i (c(1 − b_i) + b_i) − Qᵀb``. ``QᵀQ`` and ``Qᵀb`` are computed once.
- **Spark implicit ALS** (manifest ``engine="spark"``): the same with ``b = 0`` and Spark's ALS-WR
  regularisation ``λ · |likes|``.
- **explicit** (ratings): ridge regression of the liked items' "like" rating on ``[q_i, 1]`` (factor and user
  bias), ``λ`` on both (Spark: ``λ · |likes|``, no user bias).
- **softmax / bpr** (not least squares): 100 gradient steps on the model's full-catalogue softmax
  log-likelihood of the liked items plus ``λ‖p‖²``, from ``p = 0`` (the objective is convex in ``p``).

A like carries one confidence for every liked item: the confidence the model gave the *median* training
interaction (``1 + α·log(1 + median plays)``), because a like says "I like this", not how often it was played.
Dislikes are not folded in; callers remove them from the ranking (a disliked item is never shown again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from music.mf.model import KerasMF
from music.recommender import top_n

log = logging.getLogger(__name__)

#: Gradient steps for the objectives without a closed form (softmax, bpr).
GRADIENT_STEPS = 100


@dataclass
class FoldIn:
    """A folded-in listener: factor, user bias and the liked item indices it was solved from."""

    p: np.ndarray
    bu: float
    liked: np.ndarray


class FoldInModel:
    """Fold-in on one trained MF artifact; precomputes the per-model pieces once (Gram matrix, like confidence).

    ``engine`` and the regularisation come from the artifact's manifest (``KerasMF.load`` keeps them on the
    object): Keras factors use the objective named by ``mode``; Spark factors use ALS's objective.
    """

    def __init__(self, mf: KerasMF) -> None:
        self.mf = mf
        self.Q = np.asarray(mf.Q, np.float64)
        self.bi = np.asarray(mf.bi, np.float64)
        self.mu = float(getattr(mf, "mu", 0.0))
        self.mode = str(mf.mode)
        self.engine = str(getattr(mf, "engine", "keras"))
        self.l2 = float(mf.l2)
        self.alpha = float(getattr(mf, "alpha", 1.0))
        self.gram = self.Q.T @ self.Q
        self.qb = self.Q.T @ self.bi
        w = mf.catalogue.history.data
        w = w[w != 0]
        median = float(np.median(np.abs(w))) if len(w) else 1.0
        #: weight of one like: the median training interaction (plays, or a rating)
        self.like_value = median if mf.catalogue.kind != "explicit" else float(np.quantile(w, 0.9)) if len(w) else 5.0
        self.confidence = 1.0 + self.alpha * np.log1p(self.like_value)

    # ------------------------------------------------------------------------------------------
    def solve(self, liked: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray | None = None) -> FoldIn:
        """The listener's factor (and user bias) from liked item indices; zero factor for no likes.

        ``values`` (plays or ratings, one per liked item) replaces the single like weight: with a listener's
        whole training history it reproduces the model's own user step (how the tests check the solver).
        """
        liked = np.asarray(liked, np.int64)
        if values is None:
            liked = np.unique(liked)
            v = np.full(len(liked), self.like_value)
        else:
            v = np.asarray(values, np.float64)
        d = self.Q.shape[1]
        if len(liked) == 0:
            return FoldIn(np.zeros(d), 0.0, liked)
        Ql = self.Q[liked]
        if self.mode == "explicit":
            return self._ridge(liked, Ql, v)
        if self.mode in ("softmax", "bpr"):
            return FoldIn(self._gradient(liked), 0.0, liked)
        # weighted MF / implicit ALS: the iALS user step with the item bias as a fixed offset
        c = 1.0 + self.alpha * np.log1p(np.abs(v))
        lam = self.l2 * len(liked) if self.engine == "spark" else self.l2
        A = self.gram + (Ql.T * (c - 1.0)) @ Ql + lam * np.eye(d)
        b = Ql.T @ (c * (1.0 - self.bi[liked]) + self.bi[liked]) - self.qb
        return FoldIn(np.linalg.solve(A, b), 0.0, liked)

    def _ridge(self, liked: np.ndarray, Ql: np.ndarray, v: np.ndarray) -> FoldIn:
        y = v - self.mu - self.bi[liked]
        spark = self.engine == "spark"
        X = Ql if spark else np.hstack([Ql, np.ones((len(liked), 1))])
        lam = self.l2 * len(liked) if spark else self.l2
        sol = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)
        return FoldIn(sol, 0.0, liked) if spark else FoldIn(sol[:-1], float(sol[-1]), liked)

    def _gradient(self, liked: np.ndarray) -> np.ndarray:
        """Minimise −mean log softmax(liked) + λ‖p‖² over p by gradient descent (convex; step 1/L bound)."""
        p = np.zeros(self.Q.shape[1])
        step = 1.0 / (np.linalg.eigvalsh(self.gram / len(self.Q)).max() * 2 + 2 * self.l2 + 1e-9)
        for _ in range(GRADIENT_STEPS):
            s = self.Q @ p + self.bi
            e = np.exp(s - s.max())
            prob = e / e.sum()
            grad = self.Q.T @ prob - self.Q[liked].mean(axis=0) + 2 * self.l2 * p
            p -= step * grad
        return p

    # ------------------------------------------------------------------------------------------
    def scores(self, user: FoldIn) -> np.ndarray:
        """Scores of every item for a folded-in listener (same rule as the trained model)."""
        return self.Q @ user.p + self.bi + user.bu + self.mu

    def top(self, liked: Sequence[int], n: int = 10, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
        """Best ``n`` (item, score) for a listener who liked ``liked``; liked and ``exclude`` items left out."""
        user = self.solve(liked)
        s = self.scores(user)
        drop = np.concatenate([user.liked, np.asarray(list(exclude), np.int64)])
        s[drop.astype(np.int64)] = -np.inf
        return [(int(i), float(s[i])) for i in top_n(s, n)]

    def reason(self, liked: np.ndarray, item: int) -> str:
        """'because you liked X': the liked item nearest to ``item`` in the item-factor space."""
        c = self.mf.catalogue
        if len(liked) == 0:
            return "popular with all listeners"
        j = int(liked[np.argmax(self.mf.Qn[liked] @ self.mf.Qn[item])])
        who = f" by {c.artists[j]}" if c.artists[j] and c.artists[j] != c.titles[j] else ""
        return f"because you liked {c.titles[j]}{who}"


def describe(model: Any) -> dict[str, Any]:
    """Which fold-in a model gets, for manifests and result files."""
    f = model if isinstance(model, FoldInModel) else FoldInModel(model)
    kind = {"explicit": "ridge on the liked items' rating", "softmax": "gradient steps on the softmax objective",
            "bpr": "gradient steps on the softmax objective"}.get(f.mode, "closed-form iALS user step")
    return {"engine": f.engine, "mode": f.mode, "method": kind, "l2": f.l2,
            "l2_scaled_by_likes": f.engine == "spark", "like_confidence": round(float(f.confidence), 4)}
