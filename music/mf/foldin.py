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
- **softmax / bpr** (not least squares): 100 gradient steps on the model's full-catalog softmax
  log-likelihood of the liked items plus ``λ‖p‖²``, from ``p = 0`` (the objective is convex in ``p``).

A like carries one confidence for every liked item, because a like says "I like this", not how often it was
played. Its value and three more constants are chosen on validation listeners by ``python -m music
evaluate-foldin`` (``FoldInConstants``), which reports its test rows with them and saves them beside the
dataset's models as ``foldin-<dataset>.json``; the tab and ``recommend --profile`` read that file, or, on a
machine where the evaluation was not run, the constants recorded in the committed evaluation result
(``bench/results/music_foldin_<dataset>.json``) when they were chosen for the same objective and engine:

- ``confidence`` c of a like (default: the confidence of the *median* training interaction,
  ``1 + α·log(1 + median plays)``);
- ``l2``, the λ of the solve (default: the model's training λ). A few likes pin a 64-d factor down poorly,
  so a λ larger than the training one (more shrinkage toward the item biases) can rank better;
- ``bias_weight`` β, the weight of the trained item bias ``b_i`` in the ranking score (default 1, the model's
  own rule): how much plain item popularity the picks keep;
- ``similarity_weight`` γ: the ranking adds γ × the liked items' mean cosine similarity to each item in the
  item-factor space, both z-scored over the catalog (default 0): item-to-item neighbours of the likes,
  which a few likes can express more directly than a solved factor;
- ``colistening_weight`` δ and ``colistening_alpha`` a: the ranking also adds δ × the liked items' mean
  co-listening similarity to each item, z-scored like the others (default 0). Co-listening is counted on the
  model's own training history (how many training listeners have both items), as an asymmetric cosine
  ``|U_l ∩ U_j| / (|U_l|^a · |U_j|^(1−a))`` (a = 0.5 is the cosine, a = 1 the share of the liked item's
  listeners who also have j): the item-to-item signal of the raw data, which the 64-d factors only
  approximate and which a few likes express directly.

Dislikes are not folded in; callers remove them from the ranking (a disliked item is never shown again).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import sparse

from core.artifacts import ArtifactError, read_json, write_json
from core.locks import LazyValue
from core.metrics import RESULTS_DIR
from music.mf.data import music_dir
from music.mf.model import KerasMF
from music.recommender import top_n

log = logging.getLogger(__name__)

#: Gradient steps for the objectives without a closed form (softmax, bpr).
GRADIENT_STEPS = 100


@dataclass(frozen=True)
class FoldInConstants:
    """The fold-in's constants (see the module docstring); ``None`` means the model's own value."""

    confidence: float | None = None
    l2: float | None = None
    bias_weight: float = 1.0
    similarity_weight: float = 0.0
    colistening_weight: float = 0.0
    colistening_alpha: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldInConstants":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (None if v is None else float(v)) for k, v in d.items() if k in names})


#: Version of ``foldin-<dataset>.json``. 2: the search includes the co-listening constants; a file of an older
#: search holds a different method's winner, so the committed evaluation's constants are used instead.
CONSTANTS_SCHEMA = 2


def constants_path(dataset: str) -> Path:
    """Where the chosen constants of ``dataset`` live: beside its trained models."""
    return music_dir() / f"foldin-{dataset}.json"


def save_constants(dataset: str, constants: FoldInConstants, *, mode: str, engine: str,
                   chosen_on: dict[str, Any]) -> Path:
    """Record the constants chosen on validation for ``dataset``'s models (objective ``mode``, ``engine``)."""
    path = constants_path(dataset)
    write_json(path, {"kind": "music-foldin-constants", "schema": CONSTANTS_SCHEMA, "dataset": dataset,
                      "mode": mode, "engine": engine, "constants": constants.to_dict(), "chosen_on": chosen_on,
                      "made_by": f"python -m music evaluate-foldin --dataset {dataset}"})
    return path


def _constants_from_results(dataset: str, mode: str, engine: str) -> FoldInConstants:
    """The constants the committed evaluation chose (``bench/results/music_foldin_<dataset>.json``), so a fresh
    machine whose models were just built folds in the same way the published numbers were measured; the model's
    own values when that evaluation is absent or was made for another objective or engine."""
    path = RESULTS_DIR / f"music_foldin_{dataset}.json"
    try:
        meta = read_json(path)["meta"]
        made_for = (meta["foldin"]["mode"], meta["foldin"].get("engine", "keras"))
        chosen = meta["validation"]["chosen"]
    except (ArtifactError, OSError, KeyError, TypeError, ValueError):
        log.info("no fold-in constants for %s; using the model's own (run `python -m music evaluate-foldin "
                 "--dataset %s`)", dataset, dataset)
        return FoldInConstants()
    if made_for != (mode, engine):
        log.info("the evaluated fold-in constants for %s were chosen for %s/%s, the model is %s/%s; using the "
                 "model's own", dataset, *made_for, mode, engine)
        return FoldInConstants()
    constants = FoldInConstants.from_dict(chosen)
    log.info("fold-in constants for %s from the evaluation %s: %s", dataset, path, constants)
    return constants


def load_constants(dataset: str, mode: str, engine: str) -> FoldInConstants:
    """The chosen constants for ``dataset``'s models; the model's own values when none were chosen for this
    objective and engine (logged, so a missing choice is visible)."""
    path = constants_path(dataset)
    if not path.is_file():
        return _constants_from_results(dataset, mode, engine)
    m = read_json(path)
    if m.get("kind") != "music-foldin-constants" or "constants" not in m:
        raise ArtifactError(f"{path} is not a fold-in constants file; rebuild it with "
                            f"`python -m music evaluate-foldin --dataset {dataset}`.")
    if m.get("schema", 1) < CONSTANTS_SCHEMA:
        log.warning("fold-in constants in %s come from an older search; using the committed evaluation's (rerun "
                    "`python -m music evaluate-foldin --dataset %s` to choose them here)", path, dataset)
        return _constants_from_results(dataset, mode, engine)
    if (m.get("mode"), m.get("engine", "keras")) != (mode, engine):
        log.warning("fold-in constants in %s were chosen for %s/%s, the model is %s/%s; using the model's own",
                    path, m.get("mode"), m.get("engine"), mode, engine)
        return FoldInConstants()
    constants = FoldInConstants.from_dict(m["constants"])
    log.info("fold-in constants for %s from %s: %s", dataset, path, constants)
    return constants


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

    def __init__(self, mf: KerasMF, constants: FoldInConstants | None = None,
                 colistening: "CoListening | None" = None) -> None:
        self.mf = mf
        self.constants = constants or FoldInConstants()
        self.Q = np.asarray(mf.Q, np.float64)
        self.bi = np.asarray(mf.bi, np.float64)
        self.mu = float(getattr(mf, "mu", 0.0))
        self.mode = str(mf.mode)
        self.engine = str(getattr(mf, "engine", "keras"))
        self.l2 = float(mf.l2)
        self.alpha = float(getattr(mf, "alpha", 1.0))
        self.gram = self.Q.T @ self.Q
        self.qb = self.Q.T @ self.bi
        w = mf.catalog.history.data
        w = w[w != 0]
        median = float(np.median(np.abs(w))) if len(w) else 1.0
        #: weight of one like as training data: the median training interaction (plays, or a rating)
        self.like_value = median if mf.catalog.kind != "explicit" else float(np.quantile(w, 0.9)) if len(w) else 5.0
        self.confidence = 1.0 + self.alpha * np.log1p(self.like_value)
        if self.constants.confidence is not None and self.mode != "explicit":
            self.confidence = float(self.constants.confidence)
        #: λ of the solve (the chosen one, else the model's training λ)
        self.lam = float(self.constants.l2) if self.constants.l2 is not None else self.l2
        # both built on first use, once, even when several sessions score with this model at the same moment
        self._Qn: LazyValue[np.ndarray] = LazyValue(
            lambda: self.Q / (np.linalg.norm(self.Q, axis=1, keepdims=True) + 1e-12))
        #: co-listening counts of the training history (shareable between models with other constants)
        self._co: LazyValue[CoListening] = LazyValue(
            lambda: colistening if colistening is not None else CoListening(self.mf.catalog.history))

    # ------------------------------------------------------------------------------------------
    def solve(self, liked: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray | None = None,
              confidence: Sequence[float] | np.ndarray | None = None) -> FoldIn:
        """The listener's factor (and user bias) from liked item indices; zero factor for no likes.

        ``values`` (plays or ratings, one per liked item) replaces the single like confidence: with a listener's
        whole training history (and the default constants) it reproduces the model's own user step (how the
        tests check the solver). ``confidence`` (one per liked item) gives the weighted objectives' confidences
        directly (an imported history's play counts on the chosen like confidence's scale).
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
        c = np.full(len(liked), self.confidence) if values is None else 1.0 + self.alpha * np.log1p(np.abs(v))
        if confidence is not None:
            c = np.maximum(np.asarray(confidence, np.float64), 1.0)
        lam = self.lam * len(liked) if self.engine == "spark" else self.lam
        A = self.gram + (Ql.T * (c - 1.0)) @ Ql + lam * np.eye(d)
        b = Ql.T @ (c * (1.0 - self.bi[liked]) + self.bi[liked]) - self.qb
        return FoldIn(np.linalg.solve(A, b), 0.0, liked)

    def _ridge(self, liked: np.ndarray, Ql: np.ndarray, v: np.ndarray) -> FoldIn:
        y = v - self.mu - self.bi[liked]
        spark = self.engine == "spark"
        X = Ql if spark else np.hstack([Ql, np.ones((len(liked), 1))])
        lam = self.lam * len(liked) if spark else self.lam
        sol = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)
        return FoldIn(sol, 0.0, liked) if spark else FoldIn(sol[:-1], float(sol[-1]), liked)

    def _gradient(self, liked: np.ndarray) -> np.ndarray:
        """Minimise −mean log softmax(liked) + λ‖p‖² over p by gradient descent (convex; step 1/L bound)."""
        p = np.zeros(self.Q.shape[1])
        step = 1.0 / (np.linalg.eigvalsh(self.gram / len(self.Q)).max() * 2 + 2 * self.lam + 1e-9)
        for _ in range(GRADIENT_STEPS):
            s = self.Q @ p + self.bi
            e = np.exp(s - s.max())
            prob = e / e.sum()
            grad = self.Q.T @ prob - self.Q[liked].mean(axis=0) + 2 * self.lam * p
            p -= step * grad
        return p

    # ------------------------------------------------------------------------------------------
    def scores(self, user: FoldIn) -> np.ndarray:
        """Ranking scores of every item for a folded-in listener: the model's rule ``q_i·p + β·b_i + b_u + μ``,
        plus γ × the liked items' mean factor-space similarity and δ × their mean co-listening similarity when
        those weights are set (each z-scored over the catalog, so the weights compare like scales)."""
        return self.scores_many([user])[0]

    def scores_many(self, users: Sequence[FoldIn]) -> np.ndarray:
        """``scores`` for many folded-in listeners at once (one matrix product): shape (len(users), n_items)."""
        P = np.stack([u.p for u in users]) if len(users) else np.zeros((0, self.Q.shape[1]))
        S = P @ self.Q.T + self.constants.bias_weight * self.bi + np.array([u.bu for u in users])[:, None] + self.mu
        g, delta = self.constants.similarity_weight, self.constants.colistening_weight
        if g == 0 and delta == 0:
            return S
        has = np.array([len(u.liked) > 0 for u in users])
        mixed = _z(S, axis=1)
        if g != 0:
            Qn = self._normed()
            M = np.stack([Qn[u.liked].mean(axis=0) if len(u.liked) else np.zeros(Qn.shape[1]) for u in users])
            mixed += g * _z(M @ Qn.T, axis=1)
        if delta != 0:
            co = self.colistening()
            a = self.constants.colistening_alpha
            mixed += delta * _z(np.stack([co.similarity(u.liked, a) for u in users]), axis=1)
        return np.where(has[:, None], mixed, S)

    def colistening(self) -> "CoListening":
        """The co-listening counts of the model's training history (computed once per model)."""
        return self._co.get()

    def _normed(self) -> np.ndarray:
        return self._Qn.get()

    def similarity(self, liked: np.ndarray) -> np.ndarray:
        """Mean cosine similarity of every item to the liked items, in the item-factor space."""
        Qn = self._normed()
        return Qn @ Qn[np.asarray(liked, np.int64)].mean(axis=0)

    def top(self, liked: Sequence[int], n: int = 10, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
        """Best ``n`` (item, score) for a listener who liked ``liked``; liked and ``exclude`` items left out."""
        user = self.solve(liked)
        s = self.scores(user)
        drop = np.concatenate([user.liked, np.asarray(list(exclude), np.int64)])
        s[drop.astype(np.int64)] = -np.inf
        return [(int(i), float(s[i])) for i in top_n(s, n)]

    def reason(self, liked: np.ndarray, item: int) -> str:
        """'because you liked X': the liked item nearest to ``item`` in the item-factor space."""
        c = self.mf.catalog
        if len(liked) == 0:
            return "popular with all listeners"
        j = int(liked[np.argmax(self.mf.Qn[liked] @ self.mf.Qn[item])])
        who = f" by {c.artists[j]}" if c.artists[j] and c.artists[j] != c.titles[j] else ""
        return f"because you liked {c.titles[j]}{who}"


class CoListening:
    """Item-to-item co-listening counts of a training history: how many listeners have both items.

    ``BᵀB`` of the binary listener × item matrix, kept sparse (Last.fm-2K: a few million non-zeros), so a
    listener's similarity row is a sparse row sum, not a pass over the catalog.
    """

    def __init__(self, history: Any) -> None:
        b = (sparse.csr_matrix(history) != 0).astype(np.float32)
        self.counts = (b.T @ b).tocsr()
        self.listeners = np.maximum(np.asarray(b.sum(axis=0)).ravel(), 1.0)

    def similarity(self, liked: np.ndarray, alpha: float) -> np.ndarray:
        """Mean over the liked items l of ``|U_l ∩ U_j| / (|U_l|^α |U_j|^(1−α))`` for every item j."""
        liked = np.asarray(liked, np.int64)
        if len(liked) == 0:
            return np.zeros(len(self.listeners))
        w = self.listeners[liked] ** -alpha / len(liked)
        row = np.asarray(self.counts[liked].T @ w).ravel()
        return row * self.listeners ** (alpha - 1.0)


def _z(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """z-scores over the catalog (per row with ``axis=1``)."""
    return (x - x.mean(axis=axis, keepdims=True)) / (x.std(axis=axis, keepdims=True) + 1e-12)


def describe(model: Any) -> dict[str, Any]:
    """Which fold-in a model gets, for manifests and result files."""
    f = model if isinstance(model, FoldInModel) else FoldInModel(model)
    kind = {"explicit": "ridge on the liked items' rating", "softmax": "gradient steps on the softmax objective",
            "bpr": "gradient steps on the softmax objective"}.get(f.mode, "closed-form iALS user step")
    return {"engine": f.engine, "mode": f.mode, "method": kind, "l2": f.lam, "training_l2": f.l2,
            "l2_scaled_by_likes": f.engine == "spark", "like_confidence": round(float(f.confidence), 4),
            "bias_weight": f.constants.bias_weight, "similarity_weight": f.constants.similarity_weight,
            "colistening_weight": f.constants.colistening_weight, "colistening_alpha": f.constants.colistening_alpha}
