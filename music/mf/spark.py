"""Matrix factorisation trained by Spark MLlib's ALS, saved as an ordinary ``music-mf`` artifact.

Why the same artifact as the Keras MF: the tab, fold-in, similar items and explanations read only ``P``,
``Q``, the biases and the catalog, so a model trained on a Spark cluster drops in unchanged. ALS has no
bias terms, so ``bu``, ``bi`` and ``μ`` are zero; the ``.keras`` file holds an ``MFLayer`` carrying the ALS
factors (so ``keras_model()`` and fine-tuning work as for any MF); the manifest says ``engine="spark"`` and
records ALS's parameters (fold-in then uses ALS's objective: ALS-WR regularisation ``λ·n``).

Play counts go to Spark's implicit ALS as ``log1p(plays)`` (confidence ``1 + α·log(1 + plays)``, the same
confidence implicit's ALS and our weighted MF use); ratings go to explicit ALS as they are.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifacts import atomic_path, checksum_files
from core.spark import SparkUnavailable, spark_job
from music.data import MusicDataset, Split
from music.mf.data import Catalog
from music.mf.model import KerasMF
from music.mf.spark_als import grid, train_als, tune_als

log = logging.getLogger(__name__)

#: The validation grid: 8 candidates, the same budget as implicit's ALS in ``music.mf.evaluate.ALS_GRID``
#: (rank 64/128 × two regularisations × two alphas). ``reg`` is on Spark's ALS-WR scale (λ·n per user), so
#: its values differ from implicit's.
SPARK_ALS_GRID = grid(rank=(64, 128), reg=(0.01, 0.1), alpha=(1.0, 5.0))
SPARK_ALS_GRID_EXPLICIT = grid(rank=(32, 64), reg=(0.05, 0.1), alpha=(1.0,))
DEFAULTS: dict[str, dict[str, Any]] = {"implicit": {"rank": 64, "reg": 0.1, "alpha": 1.0, "max_iter": 15},
                                       "explicit": {"rank": 64, "reg": 0.1, "alpha": 1.0, "max_iter": 15}}


def _triples(catalog: Catalog, frame_matrix: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, values) for ALS from a catalog's history: log1p(plays) when implicit, ratings as is."""
    h = (catalog.history if frame_matrix is None else frame_matrix).tocoo()
    values = h.data.astype(np.float32)
    if catalog.kind != "explicit":
        values = np.log1p(np.abs(values))
    return h.row.astype(np.int64), h.col.astype(np.int64), values


class SparkALSMF(KerasMF):
    """``KerasMF``'s artifact and serving, with factors fitted by Spark MLlib ALS (``music.mf.spark_als``)."""

    name = "mf"  # the same artifact kind ("music-mf"): load it with KerasMF.load or load_bundle

    def __init__(self, rank: int = 64, reg: float = 0.1, alpha: float = 1.0, max_iter: int = 15, seed: int = 0,
                 master: str | None = None, spark: Any = None) -> None:
        super().__init__(mode=None, dim=rank, l2=reg, epochs=max_iter, batch_size=0, lr=0.0, alpha=alpha, seed=seed)
        self.rank, self.reg, self.max_iter, self.master, self.spark = rank, reg, max_iter, master, spark
        self.engine = "spark"

    def _fit(self, **kwargs: Any) -> None:
        c = self.catalog
        implicit = c.kind != "explicit"
        self.mode = "wmf" if implicit else "explicit"
        u, i, v = _triples(c)
        t = time.time()
        if self.spark is not None:
            U, V = self._train(u, i, v, implicit, self.spark)
        else:
            with spark_job(self.master) as spark:
                U, V = self._train(u, i, v, implicit, spark)
        self.P, self.Q = U, V
        self.bu, self.bi = np.zeros(c.n_users, np.float32), np.zeros(c.n_items, np.float32)
        self.mu, self.clip = 0.0, None
        self.Qn = self.Q / np.maximum(np.linalg.norm(self.Q, axis=1, keepdims=True), 1e-9)
        self.engine_params = {"rank": self.rank, "reg": self.reg, "alpha": self.alpha, "max_iter": self.max_iter,
                              "implicit": implicit, "seed": self.seed, "master": self.master or "local[*]",
                              "values": "log1p(plays)" if implicit else "ratings",
                              "fit_seconds": round(time.time() - t, 1)}
        self.history_, self.schedule_ = [], [(1.0, self.max_iter)]
        self.model = None

    def _train(self, u: np.ndarray, i: np.ndarray, v: np.ndarray, implicit: bool, spark: Any) -> tuple[np.ndarray, np.ndarray]:
        c = self.catalog
        return train_als(u, i, v, c.n_users, c.n_items, implicit=implicit, rank=self.rank, reg=self.reg,
                         alpha=self.alpha, max_iter=self.max_iter, seed=self.seed, spark=spark)

    def save(self, stem: str | Path) -> Path:
        """The ``KerasMF`` artifact: ``.keras`` (an MFLayer holding the ALS factors) + ``.npz``/``.json``."""
        # keras (and torch) load in seconds; only saving the trained model needs them
        import keras

        from music.mf.layer import MFLayer  # keras too

        stem = Path(stem)
        c = self.catalog
        layer = MFLayer(c.n_users, c.n_items, self.dim, self.l2, self.mode, self.mu, seed=self.seed, name="mf")
        inp = keras.Input(shape=(2,), dtype="int32", name="ids")
        model = keras.Model(inp, layer(inp), name=f"mf_spark_{self.mode}")
        layer.P.assign(self.P)
        layer.Q.assign(self.Q)
        keras_path = stem.with_suffix(".keras")
        with atomic_path(keras_path) as tmp:
            model.save(tmp)
        self._keras_sum = checksum_files([keras_path])
        return super(KerasMF, self).save(stem)


def fit_spark_mf(data: MusicDataset, train: pd.DataFrame | None = None, *, master: str | None = None,
                 params: dict[str, Any] | None = None, spark: Any = None) -> SparkALSMF:
    """Spark ALS on ``train`` (default: all interactions) with the kind's defaults overridden by ``params``."""
    cfg = {**DEFAULTS[data.kind], **(params or {})}
    return SparkALSMF(**cfg, master=master, spark=spark).fit(data, train)  # type: ignore[return-value]


def spark_als_row(data: MusicDataset, split: Split, inner: Split, topn_metrics: Any, *, seed: int = 42,
                  tune: bool = True, master: str | None = None) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The ``spark_als`` row of the top-N evaluation: tuned on ``inner`` (validation carved from train) with
    ``SPARK_ALS_GRID`` (implicit's ALS budget), refitted on ``split.train``, scored by ``topn_metrics``.

    Returns (metrics row, chosen parameters, tuning table). ``topn_metrics(model, test)`` is the evaluation's
    own metric function, so the row is computed exactly as the others.
    """
    with spark_job(master) as spark:
        best: dict[str, Any] = dict(DEFAULTS[data.kind])
        table: list[dict[str, Any]] = []
        if tune:
            cat = Catalog.from_dataset(data, inner.train)
            val = inner.test
            vu, vi = cat.users.indices(val["user"]), cat.items.indices(val["item"])
            ok = (vu >= 0) & (vi >= 0)
            chosen, table = tune_als(_triples(cat), (vu[ok], vi[ok]), cat.n_users, cat.n_items,
                                     SPARK_ALS_GRID if data.kind != "explicit" else SPARK_ALS_GRID_EXPLICIT,
                                     implicit=data.kind != "explicit", spark=spark, seed=seed,
                                     max_iter=best["max_iter"])
            best.update(chosen)
        t = time.time()
        model = fit_spark_mf(data, split.train, params={**best, "seed": seed}, spark=spark)
        row = {**topn_metrics(model, split.test), "fit_seconds": round(time.time() - t, 1)}
    return row, best, table


def spark_als_row_or_error(data: MusicDataset, split: Split, inner: Split, topn_metrics: Any, *, seed: int = 42,
                           tune: bool = True, master: str | None = None) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """``spark_als_row``, or an ``{"error": ...}`` row when Spark cannot start here (no Java), as for a
    missing peer: the rest of the evaluation still runs."""
    try:
        return spark_als_row(data, split, inner, topn_metrics, seed=seed, tune=tune, master=master)
    except SparkUnavailable as exc:
        return {"error": f"Spark unavailable: {exc}"}, None, []
