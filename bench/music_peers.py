"""The music evaluation with its benchmark-only peers: implicit's ALS and BPR, Surprise's SVD and SVD++.

    python bench/music_peers.py --dataset movielens-100k
    python bench/music_peers.py --dataset lastfm-2k --path ../shared/data/lastfm-2k

Why here and not in ``music/``: the peers are pinned in ``requirements-bench.txt`` only and the product never
serves them. ``music.mf.evaluate.evaluate`` takes peers as an argument; this script passes these, so the
committed ``bench/results/music_evaluate_<dataset>.json`` compares our models with them on the same split and
with the same tuning budget (``python -m music evaluate`` alone gives the product's rows). Each peer is a
``CatalogRecommender``, fitted, scored and explained exactly as our own models; a peer whose package is
missing gets a "not installed" row instead of failing the run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics import write_result  # noqa: E402
from music.data import load_dataset  # noqa: E402
from music.mf.evaluate import Peer, evaluate  # noqa: E402
from music.mf.model import CatalogRecommender  # noqa: E402

log = logging.getLogger(__name__)


class PeerMissing(ImportError):
    """A benchmark-only package is not installed."""


def _implicit() -> Any:
    try:
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as exc:
        raise PeerMissing("implicit is not installed (pip install -r requirements-bench.txt)") from exc
    return implicit.cpu


def _implicit_factors(model: Any, user_items: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fit an implicit model on a users × items CSR matrix; (user factors, item factors) as float32."""
    # an optional peer's dependency, loaded only when that peer runs
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit's own advice: BLAS threads fight its OpenMP loop
        model.fit(user_items.tocsr(), show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)


class _FactorPeer(CatalogRecommender):
    """An implicit peer: scores are user factors · item factors."""

    U: np.ndarray
    V: np.ndarray

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        return self.U[np.asarray(users)] @ self.V.T


class ImplicitALS(_FactorPeer):
    """implicit's ``AlternatingLeastSquares`` (scores only; not saved by the app).

    Confidence is ``1 + alpha·log(1 + plays)`` (raw play counts on Last.fm span 1..350k, so a
    linear confidence would let a few heavy rotations dominate).
    """

    name = "implicit_als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed

    def _fit(self, **kwargs: Any) -> None:
        cpu = _implicit()
        conf = self.catalog.history.copy().astype(np.float32)
        conf.data = 1.0 + self.alpha * np.log1p(conf.data)
        model = cpu.als.AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                                iterations=self.iterations, random_state=self.seed,
                                                num_threads=1, calculate_training_loss=False)
        self.U, self.V = _implicit_factors(model, conf)

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations}


class ImplicitBPR(_FactorPeer):
    """implicit's ``BayesianPersonalizedRanking`` on who-played-what (play counts binarised)."""

    name = "implicit_bpr"

    def __init__(self, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, seed: int = 0) -> None:
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.seed = iterations, seed

    def _fit(self, **kwargs: Any) -> None:
        cpu = _implicit()
        liked = (self.catalog.history > 0).astype(np.float32)
        model = cpu.bpr.BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                                    regularization=self.regularization, iterations=self.iterations,
                                                    random_state=self.seed, num_threads=1)
        self.U, self.V = _implicit_factors(model, liked)

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "learning_rate": self.learning_rate, "regularization": self.regularization,
                "iterations": self.iterations}


class SurpriseSVD(CatalogRecommender):
    """Surprise's ``SVD`` (biased MF by SGD) on the catalog's training ratings.

    Predictions are clipped to the rating scale, as ours are; a user or item absent from training
    gets Surprise's own fallback (biases, then the global mean).
    """

    name = "surprise_svd"
    algorithm = "SVD"

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed, self.params_ = seed, dict(params)

    def _fit(self, **kwargs: Any) -> None:
        try:
            import surprise
        except ImportError as exc:
            raise PeerMissing("scikit-surprise is not installed (pip install -r requirements-bench.txt)") from exc
        # an optional peer's dependency, loaded only when that peer runs
        import pandas as pd

        h = self.catalog.history.tocoo()
        lo, hi = (float(h.data.min()), float(h.data.max())) if h.nnz else (1.0, 5.0)
        frame = pd.DataFrame({"user": h.row, "item": h.col, "rating": h.data.astype(np.float64)})
        data = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(lo, hi)))
        self.algo = getattr(surprise, self.algorithm)(random_state=self.seed, **self.params_)
        self.algo.fit(data.build_full_trainset())

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Pairwise predictions for user and item indices (index -1, or no training data: Surprise's fallback)."""
        return np.array([self.algo.predict(int(u), int(i)).est for u, i in zip(users, items)], dtype=np.float64)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        items = np.arange(self.catalog.n_items)
        return np.stack([self.predict(np.full(len(items), u), items) for u in np.asarray(users)])

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        return f"predicted rating {self.predict(np.array([user]), np.array([item]))[0]:.2f} ({self.algorithm})"

    def params(self) -> dict[str, Any]:
        return dict(self.params_)


class SurpriseSVDpp(SurpriseSVD):
    """Surprise's ``SVDpp`` (SVD with the implicit "who rated what" term), the peer of our ``svdpp`` MF."""

    name = "surprise_svdpp"
    algorithm = "SVDpp"


# ----------------------------------------------------------------------------------------------
# validation grids (chosen on the same validation split as our MF; never on test)

ALS_GRID = [{"factors": f, "regularization": r, "alpha": a} for f in (64, 128) for r in (0.05, 1.0)
            for a in (1.0, 5.0)]
#: implicit's BPR on the same validation split (as many configurations as ALS).
BPR_GRID = [{"factors": f, "learning_rate": lr, "regularization": r} for f in (64, 128) for lr in (0.01, 0.05)
            for r in (0.01, 0.001)]
#: Surprise SVD: learning rate, regularisation and epochs (its factors stay at the default 100, like MF's 100).
SVD_GRID = [{"lr_all": lr, "reg_all": r, "n_epochs": e} for lr in (0.005, 0.01) for r in (0.05, 0.1) for e in (20, 40)]
#: Surprise SVD++ is slow (minutes per fit here): four regularisation strengths at its default size and epochs.
SVDPP_GRID = [{"reg_all": r} for r in (0.02, 0.05, 0.1, 0.15)]


def peers_for(kind: str) -> list[Peer]:
    """The peers of one kind of data: rating predictors for explicit ratings, top-N rankers otherwise."""
    if kind == "explicit":
        return [("surprise_svd", SurpriseSVD, SVD_GRID), ("surprise_svdpp", SurpriseSVDpp, SVDPP_GRID)]
    return [("implicit_als", ImplicitALS, ALS_GRID), ("implicit_bpr", ImplicitBPR, BPR_GRID)]


def main(argv: Optional[list[str]] = None) -> int:
    """Evaluate one dataset with the peers and write ``bench/results/music_evaluate_<dataset>.json``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="movielens-100k", choices=("simulated", "movielens-100k", "lastfm-2k"))
    p.add_argument("--path", default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-tune", action="store_true", help="skip the validation grids (use defaults)")
    p.add_argument("--no-spark", action="store_true", help="leave out the Spark ALS row (no JVM is started)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = load_dataset(args.dataset, args.path, **({"download": True} if args.dataset == "movielens-100k" else {}))
    results = evaluate(args.dataset, args.path, seed=args.seed, tune=not args.no_tune, spark=not args.no_spark,
                       data=data, peers=peers_for(data.kind))
    write_result(f"music_evaluate_{args.dataset}", results, seeds={"split": args.seed, "validation": args.seed + 1})
    return 0


if __name__ == "__main__":
    sys.exit(main())
