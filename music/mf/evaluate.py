"""Evaluation as one function per task: models, one split, metrics → one table (RecBole/Cornac style).

Protocols (leak-free; the test split is never used to choose anything):

- **Top-N (implicit data)**: per-user holdout (20 % of each user's items, users with ≥ 5 items),
  full ranking over every item the user has not interacted with in train; precision@10, recall@10
  (hits / held-out items), NDCG@10, HR@10 and catalog coverage (share of items in any top-10).
  Hyper-parameters of MF, implicit's ALS and BPR are picked on one validation split carved from
  train the same way, then each is refitted on the whole train split. Genres (for the genre
  recommender) come from tag events dated before the test period only.
- **Rating prediction (explicit data)**: fixed seeded 80/20 split of ratings; RMSE and MAE. MF,
  Surprise's SVD and SVD++ are each tuned on the same 90/10 validation split of train, then
  refitted on all of train.

Every headline metric carries a 95 % bootstrap interval (``core.metrics.bootstrap_ci``): over test
users for top-N, over test ratings for RMSE/MAE.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from core.artifacts import write_json
from core import evaluation
from core.metrics import bootstrap_ci
from music.data import MusicDataset, Split, load_dataset, period_starts, ratio_split, user_holdout_split
from music.data.dataset import check_trainable
from music.mf import data as mfdata
from music.mf.baselines import GenreRecommender, Popularity
from music.mf.model import CatalogRecommender, KerasMF, mf_config
from music.mf.spark import spark_als_row_or_error
from music.recommender import top_n

log = logging.getLogger(__name__)

K = 10
#: Small, explicit grids (chosen on validation only). Kept short so an evaluation runs in minutes.
MF_GRID_IMPLICIT = [{"mode": "wmf", "dim": d, "l2": l2, "alpha": a}
                    for d, l2, a in ((64, 0.05, 1.0), (64, 0.15, 1.0), (64, 0.05, 2.0), (128, 0.05, 1.0),
                                     (128, 0.15, 1.0))]
#: The softmax objective is tried too where the catalog is small enough for it to be cheap here
#: (on Last.fm-2K's 17.6k artists one fit took ~15 min on this shared 2-core machine, and scored
#: 0.132 validation NDCG@10 against 0.170 for the weighted objective).
MF_GRID_SOFTMAX = [{"mode": "softmax", "dim": 64, "l2": 1e-3, "lr": 5e-3, "batch_size": 256}]
SOFTMAX_MAX_ITEMS = 5000
MF_GRID_EXPLICIT = [{"l2": 0.1, "svdpp": True}, {"l2": 0.1, "svdpp": False}]

#: A benchmark peer: (row name, a class built as ``cls(**params, seed=seed)`` into a ``CatalogRecommender``,
#: its validation grid). The product has none; ``bench/music_peers.py`` passes implicit's and Surprise's. A peer
#: whose package is missing raises ``ImportError`` when fitted and gets an ``error`` row instead of numbers.
Peer = tuple[str, Callable[..., Any], list[dict[str, Any]]]


# ----------------------------------------------------------------------------------------------
# metrics


class UnseenRanker:
    """A fitted model as a ``core.evaluation.Ranker`` over user indices: the top items outside each user's
    training history (they are not "new" picks), every other item competing; it remembers every item it showed,
    for catalog coverage."""

    def __init__(self, model: CatalogRecommender, batch: int = 256) -> None:
        self.model, self.batch, self.shown = model, batch, set()
        self.name = str(getattr(model, "name", "model"))

    def rank(self, users: np.ndarray, k: int) -> list[list[int]]:
        hist = self.model.catalog.history
        out: list[list[int]] = []
        for start in range(0, len(users), self.batch):
            ub = users[start:start + self.batch]
            scores = np.asarray(self.model.score(ub), dtype=np.float64).copy()
            rows = hist[ub]
            scores[np.repeat(np.arange(len(ub)), np.diff(rows.indptr)), rows.indices] = -np.inf
            for r in range(len(ub)):
                top = top_n(scores[r], k).tolist()
                self.shown.update(top)
                out.append(top)
        return out


def topn_table(model: CatalogRecommender, test: pd.DataFrame, k: int = K, batch: int = 256, n_boot: int = 0
               ) -> tuple[evaluation.Row, dict[str, Any]]:
    """Full-ranking top-``k`` metrics of a fitted ``model`` on held-out ``test`` interactions (``core.evaluation``).

    Test rows whose item the model never saw stay relevant for their (known) user but cannot be ranked: they are
    misses that recall and NDCG still count. Unknown users are skipped and counted. Returns the row (one value per
    evaluated user and metric, with 95 % intervals when ``n_boot``) and ``{"coverage", "users",
    "skipped_unknown_users"}``.
    """
    c = model.catalog
    uidx = c.users.indices(test["user"])
    iidx = c.items.indices(test["item"])
    known = uidx >= 0
    truth: dict[int, set[int]] = {}
    for u, i in zip(uidx[known], iidx[known]):
        truth.setdefault(int(u), set())
        if i >= 0:
            truth[int(u)].add(int(i))
    truth_n = pd.Series(uidx[known]).value_counts().to_dict()
    users = np.array(sorted(truth), dtype=np.int64)
    ranker = UnseenRanker(model, batch)
    split = evaluation.Split(users, [truth[u] for u in users.tolist()], n_relevant=[truth_n[u] for u in users.tolist()])
    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"hr@{k}"]
    row = evaluation.evaluate([ranker], split, names, k=k, n_boot=n_boot)[ranker.name]
    return row, {"coverage": len(ranker.shown) / c.n_items, "users": int(len(users)),
                 "skipped_unknown_users": int((~known).sum())}


def topn_metrics(model: CatalogRecommender, test: pd.DataFrame, k: int = K, batch: int = 256,
                 ci: bool = False) -> dict[str, Any]:
    """Mean full-ranking top-``k`` metrics (see ``topn_table``); ``ci`` adds a 95 % interval over users per metric."""
    row, extra = topn_table(model, test, k, batch, n_boot=2000 if ci else 0)
    out: dict[str, Any] = {name: s.mean if len(s.values) else 0.0 for name, s in row.metrics.items()}
    if ci:
        out.update({f"{name}_ci95": s.ci95 for name, s in row.metrics.items()})
    return {**out, **extra}


def val_ndcg(model: CatalogRecommender, val: pd.DataFrame) -> float:
    """NDCG@10 on held-out interactions: the criterion MF's early stopping and tuning use on implicit data."""
    return float(topn_metrics(model, val)["ndcg@10"])


def rating_metrics(pred: np.ndarray, truth: np.ndarray, ci: bool = False) -> dict[str, Any]:
    """RMSE and MAE; ``ci`` adds 95 % bootstrap intervals over test ratings (``rmse_ci95``, ``mae_ci95``)."""
    err = np.asarray(pred, float) - np.asarray(truth, float)
    out: dict[str, Any] = {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
                           "n": int(len(err))}
    if ci:
        out["rmse_ci95"] = bootstrap_ci(err ** 2, statistic=_root_mean)
        out["mae_ci95"] = bootstrap_ci(np.abs(err))
    return out


def _root_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sqrt(np.mean(x, axis=axis))


# ----------------------------------------------------------------------------------------------
# top-N with tuning on validation


def _tune(name: str, grid: list[dict[str, Any]], make: Callable[[dict[str, Any]], CatalogRecommender],
          data: MusicDataset, inner: Split) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit each config on the inner train, score NDCG@10 on validation; return the best config."""
    table = []
    for params in grid:
        t = time.time()
        model = make(params)
        model.fit(data, inner.train, val=inner.test, validate=val_ndcg) if name == "mf" else model.fit(data, inner.train)
        m = topn_metrics(model, inner.test)
        row = {**params, "val_ndcg@10": round(m["ndcg@10"], 5), "seconds": round(time.time() - t, 1)}
        if name == "mf":  # replayed (same epochs and learning-rate steps) when refitting on all of train
            row["schedule"] = model.schedule_  # type: ignore[attr-defined]
        table.append(row)
        log.info("tune %s %s", name, row)
    best = max(table, key=lambda r: r["val_ndcg@10"])
    return {k: v for k, v in best.items() if k not in ("val_ndcg@10", "seconds")}, table


def genres_before_test_period(data: MusicDataset) -> tuple[MusicDataset, str | None]:
    """``data`` with genres from tag events dated before the test period only (where it has dated tags).

    The play counts of Last.fm-2K carry no time, so the test period is dated from its tag events: the
    latest 10 % of them, from the start of that calendar month on. No tag given then feeds the genre
    recommender.
    """
    if data.tags is None or data.events is None or not len(data.events):
        return data, None
    _, t_test = period_starts(data.events["timestamp"].to_numpy(np.int64), val_share=0.0, snap="month")
    return data.genres_before(t_test), str(pd.Timestamp(t_test, unit="s", tz="UTC").date())


def evaluate_topn(data: MusicDataset, *, seed: int = 42, tune: bool = True,
                  mf_params: dict[str, Any] | None = None, spark: bool = True, peers: Sequence[Peer] = ()
                  ) -> dict[str, Any]:
    """MF vs popularity, genre, the ``peers`` and Spark's ALS on one per-user holdout split of ``data``."""
    data, genres_before = genres_before_test_period(data)
    split = user_holdout_split(data.interactions, test_fraction=0.2, min_items=5, seed=seed)
    inner = user_holdout_split(split.train, test_fraction=0.2, min_items=5, seed=seed + 1)
    methods: dict[str, dict[str, Any]] = {}
    tuning: dict[str, Any] = {}
    mf_cfg = mf_config(data.name, "implicit", mf_params)
    # Without tuning, the default config still gets one validation run to fix its epochs.
    grid = MF_GRID_IMPLICIT + (MF_GRID_SOFTMAX if data.n_items <= SOFTMAX_MAX_ITEMS else [])
    best, tuning["mf"] = _tune("mf", grid if tune else [{}], lambda p: KerasMF(**dict(mf_cfg, **p)), data, inner)
    mf_cfg.update(best)
    t = time.time()
    mf = KerasMF(**mf_cfg).fit(data, split.train, validate=val_ndcg)
    methods["mf"] = {**topn_metrics(mf, split.test, ci=True), "fit_seconds": round(time.time() - t, 1)}
    methods["popularity"] = topn_metrics(Popularity().fit(data, split.train), split.test, ci=True)
    methods["genre"] = topn_metrics(GenreRecommender().fit(data, split.train), split.test, ci=True)
    params: dict[str, Any] = {"mf": mf_cfg}
    budget = {"mf": len(grid) if tune else 1}
    for name, cls, peer_grid in peers:
        try:
            cfg: dict[str, Any] = {}
            if tune:
                cfg, tuning[name] = _tune(name, peer_grid, lambda p, cls=cls: cls(**p, seed=seed), data, inner)
            budget[name] = len(peer_grid) if tune else 0
            t = time.time()
            model = cls(**cfg, seed=seed).fit(data, split.train)
            methods[name] = {**topn_metrics(model, split.test, ci=True), "fit_seconds": round(time.time() - t, 1)}
            params[name] = cfg
        except ImportError as exc:
            methods[name] = {"error": f"not installed: {exc}"}
            params[name] = None
    if spark:  # Spark MLlib ALS: same split, same validation split and grid size as implicit's ALS
        methods["spark_als"], params["spark_als"], tuning["spark_als"] = spark_als_row_or_error(
            data, split, inner, lambda model, test: topn_metrics(model, test, ci=True), seed=seed, tune=tune)
        budget["spark_als"] = len(tuning["spark_als"]) if tune else 0
    return {"methods": methods, "params": params, "tuning": tuning, "tuning_budget": budget,
            "genres_from_tags_before": genres_before,
            "interval": "95 % percentile bootstrap over test users (scipy.stats.bootstrap, 2000 resamples)",
            "protocol": f"per-user 80/20 holdout (users with ≥5 items, seed {seed}), full ranking over unseen "
                        f"items, k={K}; MF, ALS and BPR each tuned on the same validation split of train "
                        "(grid sizes in tuning_budget), then refitted on all of train"}


# ----------------------------------------------------------------------------------------------
# rating prediction


def _rating_fit_predict(model: Any, data: MusicDataset, sp: Split) -> np.ndarray:
    """Fit a Surprise peer on ``sp.train`` and predict ``sp.test`` (its own fallback for unseen ids)."""
    model.fit(data, sp.train)
    c = model.catalog
    return model.predict(c.users.indices(sp.test["user"]), c.items.indices(sp.test["item"]))


def evaluate_ratings(data: MusicDataset, *, seed: int = 42, tune: bool = True,
                     mf_params: dict[str, Any] | None = None, peers: Sequence[Peer] = ()) -> dict[str, Any]:
    """MF (explicit mode) vs the ``peers`` (each tuned on the same validation split) and the global mean."""
    split = ratio_split(data.interactions, test_size=0.2, seed=seed)
    inner = ratio_split(split.train, test_size=0.1, seed=seed + 1)
    lo, hi = float(data.interactions["weight"].min()), float(data.interactions["weight"].max())
    cfg = mf_config(data.name, "explicit", mf_params)
    tuning: dict[str, list[dict[str, Any]]] = {"mf": []}

    def fit_predict(params: dict[str, Any], sp: Split, val: pd.DataFrame | None) -> tuple[KerasMF, np.ndarray]:
        mf = KerasMF(**params).fit(data, sp.train, val=val)
        u = mf.catalog.users.indices(sp.test["user"])
        i = mf.catalog.items.indices(sp.test["item"])
        # An item/user only in test has no trained factors: mask it so only its biases count.
        u = np.where(np.asarray(mf.catalog.history.getnnz(axis=1))[np.maximum(u, 0)] > 0, u, -1)
        i = np.where(np.asarray(mf.catalog.history.getnnz(axis=0))[np.maximum(i, 0)] > 0, i, -1)
        return mf, mf.predict(u, i, clip=(lo, hi))

    # Without tuning, the default config still gets one validation run to fix its schedule.
    for p in MF_GRID_EXPLICIT if tune else [{}]:
        t = time.time()
        mf, pred = fit_predict(dict(cfg, **p), inner, inner.test)
        row = {**p, "val_rmse": round(rating_metrics(pred, inner.test["weight"])["rmse"], 5),
               "schedule": mf.schedule_, "seconds": round(time.time() - t, 1)}
        tuning["mf"].append(row)
        log.info("tune mf %s", row)
    best = min(tuning["mf"], key=lambda r: r["val_rmse"])
    cfg.update({k: v for k, v in best.items() if k not in ("val_rmse", "seconds")})
    t = time.time()
    _, pred = fit_predict(cfg, split, None)  # all of train, replaying the validated schedule
    truth = split.test["weight"].to_numpy()
    methods: dict[str, dict[str, Any]] = {"mf": {**rating_metrics(pred, truth, ci=True),
                                                 "fit_seconds": round(time.time() - t, 1)}}
    params: dict[str, Any] = {"mf": cfg}
    budget = {"mf": len(MF_GRID_EXPLICIT) if tune else 1}
    for name, cls, grid in peers:
        try:
            best_p: dict[str, Any] = {}
            if tune:
                tuning[name] = []
                for p in grid:
                    t = time.time()
                    val_pred = _rating_fit_predict(cls(seed=seed, **p), data, inner)
                    row = {**p, "val_rmse": round(rating_metrics(val_pred, inner.test["weight"])["rmse"], 5),
                           "seconds": round(time.time() - t, 1)}
                    tuning[name].append(row)
                    log.info("tune %s %s", name, row)
                best_row = min(tuning[name], key=lambda r: r["val_rmse"])
                best_p = {k: v for k, v in best_row.items() if k not in ("val_rmse", "seconds")}
            budget[name] = len(grid) if tune else 0
            t = time.time()
            pred = _rating_fit_predict(cls(seed=seed, **best_p), data, split)
            methods[name] = {**rating_metrics(pred, truth, ci=True), "fit_seconds": round(time.time() - t, 1)}
            params[name] = best_p
        except ImportError as exc:
            methods[name] = {"error": f"not installed: {exc}"}
            params[name] = None
    methods["global_mean"] = rating_metrics(np.full(len(truth), split.train["weight"].mean()), truth, ci=True)
    return {"methods": methods, "params": params, "tuning": tuning, "tuning_budget": budget,
            "interval": "95 % percentile bootstrap over test ratings (scipy.stats.bootstrap, 2000 resamples); "
                        "rmse_ci95 resamples squared errors and takes the root",
            "protocol": f"fixed random 80/20 split of ratings (seed {seed}); MF, Surprise SVD and SVD++ each tuned "
                        "on the same 90/10 split of train (grid sizes in tuning_budget), then refitted on all of train"}


# ----------------------------------------------------------------------------------------------
# entry point


def evaluate(dataset: str, path: str | None = None, *, seed: int = 42, tune: bool = True, save: bool = True,
             data: MusicDataset | None = None, spark: bool = True, peers: Sequence[Peer] = (),
             **load_kwargs: Any) -> dict[str, Any]:
    """Evaluate ``dataset``: rating metrics if explicit, top-N otherwise; save the JSON for the app.

    ``spark=False`` leaves out the Spark ALS row of top-N data (it starts a JVM, which costs seconds); ``peers``
    adds benchmark-only rows (``bench/music_peers.py`` passes implicit's and Surprise's models).
    """
    t = time.time()
    data = data or load_dataset(dataset, path, **load_kwargs)
    check_trainable(data, dataset)
    if len(data.interactions) == 0:
        raise ValueError(f"dataset {dataset!r} has no interactions to evaluate")
    res = evaluate_ratings(data, seed=seed, tune=tune, peers=peers) if data.kind == "explicit" else \
        evaluate_topn(data, seed=seed, tune=tune, spark=spark, peers=peers)
    res.update({"dataset": dataset, "label": data.label, "kind": data.kind, "summary": data.summary(),
                "dataset_checksum": data.checksum(), "seed": seed, "seconds": round(time.time() - t, 1),
                "command": "python -m music " + " ".join(shlex.quote(a) for a in sys.argv[1:])
                if sys.argv and sys.argv[0].endswith("__main__.py") else None})
    if save:
        write_json(results_path(dataset), res)
    return res


def results_path(dataset: str) -> Path:
    """Where the tab finds the last ``python -m music evaluate`` of ``dataset``."""
    return mfdata.music_dir() / f"evaluation-{dataset}.json"
