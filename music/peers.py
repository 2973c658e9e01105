"""Benchmark-only peers: implicit's ALS and scikit-surprise's SVD, imported lazily.

Why lazily and here: they are pinned in ``requirements-bench.txt`` only; the app never imports
this module, and evaluation reports "not installed" instead of failing when they are missing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from music.model import Recommender

log = logging.getLogger(__name__)


class PeerMissing(ImportError):
    """A benchmark-only package is not installed."""


class ImplicitALS(Recommender):
    """implicit's ``AlternatingLeastSquares`` behind our interface (scores only; not saved by the app).

    Confidence is ``1 + alpha·log(1 + plays)`` (raw play counts on Last.fm span 1..350k, so a
    linear confidence would let a few heavy rotations dominate).
    """

    name = "implicit_als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed

    def _fit(self, **kwargs: Any) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as exc:
            raise PeerMissing("implicit is not installed (pip install -r requirements-bench.txt)") from exc
        conf = self.catalogue.history.copy().astype(np.float32)
        conf.data = 1.0 + self.alpha * np.log1p(conf.data)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit's own advice: BLAS threads fight its OpenMP loop
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            iterations=self.iterations, random_state=self.seed, num_threads=1,
                                            calculate_training_loss=False)
            model.fit(conf.tocsr(), show_progress=False)
        self.U = np.asarray(model.user_factors, np.float32)
        self.V = np.asarray(model.item_factors, np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.U[np.asarray(users)] @ self.V.T

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations}


def surprise_svd(train: pd.DataFrame, test: pd.DataFrame, *, seed: int = 0,
                 rating_scale: tuple[float, float] = (1.0, 5.0), **params: Any) -> np.ndarray:
    """Fit Surprise's SVD on ``train`` (user, item, weight) and predict ``test`` rows (clipped like ours)."""
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError as exc:
        raise PeerMissing("scikit-surprise is not installed (pip install -r requirements-bench.txt)") from exc
    data = Dataset.load_from_df(train[["user", "item", "weight"]], Reader(rating_scale=rating_scale))
    algo = SVD(random_state=seed, **params)
    algo.fit(data.build_full_trainset())
    return np.array([algo.predict(u, i).est for u, i in zip(test["user"], test["item"])], dtype=np.float64)
