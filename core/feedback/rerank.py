"""Relevance-feedback re-rankers beyond Rocchio: per-example fusion and a linear SVM on the page's 👍 / 👎.

Why more than Rocchio: Rocchio replaces the likes and dislikes by their means, which is the right move when
the two sides are far apart, but a page that mixes two look-alike kinds (shirts and T-shirts) has liked and
disliked items close together, and their means barely tell them apart. Two classic alternatives keep each
example:

- **fusion** (multi-query retrieval): ``score(x) = x·q + β·agg_l(x·l) − γ·agg_d(x·d)``, where ``agg`` is a
  smooth maximum (``τ·log mean exp(s/τ)``; τ = 0 is the max, τ = ∞ the mean, i.e. Rocchio without the
  re-normalisation).
- **svm** (SVM relevance feedback, Tong & Chang 2001; Drucker et al. 2001): a linear SVM
  (``sklearn.svm.LinearSVC``) separates the query and the liked items from the disliked ones; its signed
  distance to the hyperplane is added to the query's cosine, ``score(x) = x·q + λ·(w·x + b)/‖w‖``. With no
  dislike there is nothing to separate, and the query moves toward the likes as Rocchio does (β = 1, γ = 0).

All methods re-rank a **candidate pool**: the top ``POOL`` items of the Rocchio query over the whole index
(one matrix-vector product), so a click costs one scan plus a small fit, never a per-item model over the
catalog. ``FeedbackMethod(kind="rocchio")`` re-ranks the pool by the Rocchio query itself, which is the
Rocchio ranking. Which method and constants a tab uses is chosen on validation sessions
(``core.feedback.relevance.choose_method``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
from threadpoolctl import ThreadpoolController

from core.feedback.rocchio import RocchioWeights, rocchio

#: Candidates re-ranked per click: enough that every method's top 20 on validation lies inside it (a
#: class of Fashion-MNIST has 6,000 items; the pool is the Rocchio query's best 1,000).
POOL = 1000
KINDS = ("rocchio", "fusion", "svm")
_BLAS: list[ThreadpoolController] = []


def one_blas_thread():
    """A context in which BLAS runs on one thread. A click's products are small (1,000 × 128); on a busy
    machine BLAS's extra threads only spin, which made a re-rank 5-10× slower than on one thread."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class FeedbackMethod:
    """One re-ranker and its constants: ``beta`` / ``gamma`` (rocchio, fusion), ``tau`` (fusion; 0 = max,
    ``math.inf`` = mean), ``c`` (the SVM's regularisation) and ``lam`` (the SVM score's weight)."""

    kind: str = "rocchio"
    beta: float = 1.0
    gamma: float = 1.0
    tau: float = 0.0
    c: float = 1.0
    lam: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown feedback method {self.kind!r}; one of {', '.join(KINDS)}")

    def describe(self) -> dict[str, Any]:
        """The method's constants that matter, JSON-safe (``tau`` = ∞ is written "inf")."""
        keys = {"rocchio": ("beta", "gamma"), "fusion": ("beta", "gamma", "tau"), "svm": ("c", "lam")}[self.kind]
        values = asdict(self)
        return {"kind": self.kind, **{k: ("inf" if values[k] == math.inf else values[k]) for k in keys}}


def _unit_rows(x: Optional[np.ndarray], dim: int) -> np.ndarray:
    if x is None:
        return np.zeros((0, dim), np.float32)
    rows = np.atleast_2d(np.asarray(x, dtype=np.float32)).reshape(-1, dim)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _aggregate(sims: np.ndarray, tau: float) -> np.ndarray:
    """Smooth maximum over the columns of (P, n) similarities; zeros when n = 0."""
    if sims.shape[1] == 0:
        return np.zeros(sims.shape[0], np.float32)
    if tau == 0:
        return sims.max(axis=1)
    if math.isinf(tau):
        return sims.mean(axis=1)
    top = sims.max(axis=1, keepdims=True)
    return (top + tau * np.log(np.exp((sims - top) / tau).mean(axis=1, keepdims=True)))[:, 0]


def svm_direction(positives: np.ndarray, negatives: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(w/‖w‖, b/‖w‖) of a linear SVM that separates ``positives`` from ``negatives`` (classes balanced,
    since a page often has 9 likes and 1 dislike); the decision value is then a signed cosine-scale distance."""
    # scikit-learn loads in about a second; only the SVM feedback method needs it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = np.vstack([positives, negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    with warnings.catch_warnings():  # 11 points in 128 dimensions: separable, the dual may stop at max_iter
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LinearSVC(C=c, class_weight="balanced").fit(x, y)
    w, b = model.coef_[0].astype(np.float32), float(model.intercept_[0])
    norm = max(float(np.linalg.norm(w)), 1e-12)
    return w / norm, b / norm


def feedback_scores(
    vectors: np.ndarray,
    query: Optional[np.ndarray],
    liked: Optional[np.ndarray],
    disliked: Optional[np.ndarray],
    method: FeedbackMethod,
    *,
    svm_cache: Optional[dict[float, tuple[np.ndarray, float]]] = None,
) -> np.ndarray:
    """Scores (P,) of candidate rows ``vectors`` (P, D; unit length) for a query vector (or None: search by
    the likes alone) and the (n, D) liked / disliked vectors; higher is better.

    ``svm_cache`` (one dict per query and feedback) lets an evaluation that tries several λ fit each SVM once.
    ``ValueError`` when there is nothing to search for (no query and no like).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    likes, dislikes = _unit_rows(liked, dim), _unit_rows(disliked, dim)
    q = None if query is None else _unit_rows(query, dim)[0]
    if q is None and not len(likes):
        raise ValueError("nothing to search for: no query and no liked item")
    if method.kind == "rocchio":
        return vectors @ rocchio(q, likes, dislikes, RocchioWeights(1.0, method.beta, method.gamma))
    if method.kind == "fusion":
        base = vectors @ q if q is not None else np.zeros(len(vectors), np.float32)
        return (base + method.beta * _aggregate(vectors @ likes.T, method.tau)
                - method.gamma * _aggregate(vectors @ dislikes.T, method.tau))
    if not len(dislikes):  # nothing to separate: move toward the likes
        return vectors @ rocchio(q, likes, None, RocchioWeights(1.0, 1.0, 0.0))
    positives = likes if q is None else np.vstack([q[None], likes])
    if svm_cache is not None and method.c in svm_cache:
        w, b = svm_cache[method.c]
    else:
        w, b = svm_direction(positives, dislikes, method.c)
        if svm_cache is not None:
            svm_cache[method.c] = (w, b)
    base = vectors @ (q if q is not None else rocchio(None, likes, None))
    return base + method.lam * (vectors @ w + b)


def rerank(
    vectors: np.ndarray,
    query: Optional[np.ndarray],
    liked_rows: np.ndarray,
    disliked_rows: np.ndarray,
    method: FeedbackMethod,
    pool_weights: RocchioWeights,
    *,
    blocked: Optional[np.ndarray] = None,
    pool: int = POOL,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of the whole index ``vectors`` (N, D; unit rows) ranked best first: the top ``pool``
    rows of the Rocchio query (``pool_weights``), re-ranked by ``method``. ``blocked`` (a boolean mask of N)
    marks rows never to return (dislikes, what is on screen, other categories); only rows with a finite
    Rocchio score are candidates."""
    liked_vecs = vectors[liked_rows] if len(liked_rows) else None
    disliked_vecs = vectors[disliked_rows] if len(disliked_rows) else None
    with one_blas_thread():
        first = vectors @ rocchio(query, liked_vecs, disliked_vecs, pool_weights)
        if blocked is not None:
            first[blocked] = -np.inf
        n = min(pool, int(np.isfinite(first).sum()))
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = np.argpartition(-first, n - 1)[:n]
        scores = feedback_scores(vectors[rows], query, liked_vecs, disliked_vecs, method).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return rows[order], scores[order]
