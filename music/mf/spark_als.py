"""Matrix factorisation on Spark MLlib's ALS, returning plain numpy factors the tabs already know how to use.

Why Spark's ALS and not our own distributed solver: it is the field's standard for "millions of listeners"
(blocked ALS that shards users and items over executors, implicit feedback after Hu, Koren & Volinsky 2008,
weighted-λ regularisation after Zhou et al. 2008), and its factors are ordinary dense matrices, so scoring,
fold-in and explanations stay what they are in process.

Contract of ``train_als`` (what the music tab's ``--engine spark`` relies on):

- ``users``, ``items``: int arrays of equal length, contiguous indices ``0 ≤ u < n_users``, ``0 ≤ i < n_items``
  (the tab's ``IdMap`` indices); ``values``: float weights of the same length, one row per (user, item) pair
  (duplicates should already be merged; Spark would sum them).
- ``implicit=True`` (play counts): Spark's implicit-feedback ALS; confidence = 1 + ``alpha`` · value and the
  preference is 1 where value > 0. Spark uses the value as given, so pass ``log1p(plays)`` to get the
  ``1 + α·log(1 + plays)`` confidence that ``music.peers.ImplicitALS`` uses. ``implicit=False`` (ratings):
  explicit least squares on the values; ``alpha`` is ignored.
- ``reg`` is Spark's ``regParam``, which Spark scales by each user's / item's number of ratings
  (ALS-WR); it is therefore NOT on the same scale as implicit's ``regularization`` and must be tuned on its
  own (``tune_als``).
- Returns ``(user_factors (n_users × rank), item_factors (n_items × rank))`` float32, row ``u`` / ``i`` being
  the index given; users or items that never occur in the input get zero rows (they score 0 for everything,
  callers fall back to popularity for them, as for any cold user). A score is ``user_factors @ item_factors.T``;
  there are no bias terms.
- Deterministic for a given ``seed``, input order and Spark parallelism (``nonnegative=False``,
  ``coldStartStrategy="drop"``).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np
import pandas as pd
from scipy import sparse

from core.metrics import ndcg_at_k

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def _factors(frame: "DataFrame", n: int, rank: int) -> np.ndarray:
    """Spark's (id, features) factor table → a dense (n, rank) array; ids absent from it stay zero."""
    table = frame.toArrow()
    out = np.zeros((n, rank), np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        flat = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[ids] = np.asarray(flat, np.float32).reshape(len(ids), rank)
    return out


def train_als(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    implicit: bool,
    rank: int = 64,
    reg: float = 0.1,
    alpha: float = 1.0,
    max_iter: int = 15,
    seed: int = 0,
    spark: "SparkSession",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit Spark MLlib ALS on (user, item, value) triples; dense factors aligned to the given indices.

    See the module docstring for the exact contract (value → confidence, regularisation scale, zero rows).
    """
    from pyspark.ml.recommendation import ALS  # pyspark loads in about a second: only when ALS really runs

    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    values = np.asarray(values, np.float32)
    if not (len(users) == len(items) == len(values)):
        raise ValueError(f"users, items and values differ in length ({len(users)}, {len(items)}, {len(values)})")
    if len(users) == 0:
        raise ValueError("no interactions to train on")
    if users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"indices out of range: users must be in [0, {n_users}), items in [0, {n_items})")
    if max(n_users, n_items) >= 2**31:
        raise ValueError("Spark ALS ids are 32-bit integers")
    frame = spark.createDataFrame(pd.DataFrame({"user": users.astype(np.int32), "item": items.astype(np.int32),
                                                "rating": values}))
    blocks = max(1, spark.sparkContext.defaultParallelism)
    als = ALS(rank=int(rank), maxIter=int(max_iter), regParam=float(reg), alpha=float(alpha), implicitPrefs=implicit,
              nonnegative=False, coldStartStrategy="drop", seed=int(seed), userCol="user", itemCol="item",
              ratingCol="rating", numUserBlocks=blocks, numItemBlocks=blocks)
    started = time.perf_counter()
    model = als.fit(frame)
    user_factors = _factors(model.userFactors, n_users, int(rank))
    item_factors = _factors(model.itemFactors, n_items, int(rank))
    log.info("Spark ALS (%s, rank %d, reg %g, alpha %g, %d iterations) on %d rows in %.1f s",
             "implicit" if implicit else "explicit", rank, reg, alpha, max_iter, len(users),
             time.perf_counter() - started)
    return user_factors, item_factors


# ----------------------------------------------------------------------------------------------
# choosing rank / reg / alpha on a validation split


def holdout_ndcg(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    k: int = 10,
    batch: int = 512,
) -> np.ndarray:
    """Per-user NDCG@k (``core.metrics.ndcg_at_k``) of full ranking over items unseen in ``train``.

    ``train`` and ``test`` are (user indices, item indices); every user with a test item is a query.
    Returned in ascending user order, one value per query (feed it to ``bootstrap_ci``).
    """
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    seen = sparse.csr_matrix((np.ones(len(train[0]), np.float32), (train[0], train[1])), shape=(n_users, n_items))
    truth = sparse.csr_matrix((np.ones(len(test[0]), np.float32), (test[0], test[1])), shape=(n_users, n_items))
    queries = np.unique(np.asarray(test[0]))
    out = np.zeros(len(queries))
    for start in range(0, len(queries), batch):
        ub = queries[start : start + batch]
        top = top_k(user_factors, item_factors, ub, k, exclude=seen)
        relevant = truth[ub]
        hits = np.asarray(relevant[np.arange(len(ub))[:, None], top].todense()) > 0
        out[start : start + len(ub)] = ndcg_at_k(hits, np.diff(relevant.indptr), k)
    return out


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """All combinations of the given axes: ``grid(rank=(32, 64), reg=(0.01, 0.1))`` → 4 parameter dicts."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(axes[n]) for n in names))]


def tune_als(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    n_users: int,
    n_items: int,
    params: list[dict[str, Any]],
    *,
    implicit: bool,
    spark: "SparkSession",
    seed: int = 0,
    k: int = 10,
    max_iter: int = 15,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit ``train_als`` for each parameter dict on ``train`` (users, items, values) and score NDCG@k on
    ``validation`` (users, items); returns (best parameters, one row per candidate with its score and time).

    Choose on validation, report on test: callers refit the best parameters on all training rows.
    """
    table: list[dict[str, Any]] = []
    for p in params:
        settings: dict[str, Any] = {"max_iter": max_iter, **p}
        started = time.perf_counter()
        U, V = train_als(*train, n_users, n_items, implicit=implicit, seed=seed, spark=spark, **settings)
        ndcg = float(holdout_ndcg(U, V, train[:2], validation, k=k).mean())
        table.append({**settings, f"val_ndcg@{k}": round(ndcg, 5), "seconds": round(time.perf_counter() - started, 1)})
        log.info("spark als %s", table[-1])
    best = max(table, key=lambda r: r[f"val_ndcg@{k}"])
    return {key: v for key, v in best.items() if key not in (f"val_ndcg@{k}", "seconds")}, table


def top_k(user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, k: int = 10,
          exclude: Optional[sparse.csr_matrix] = None) -> np.ndarray:
    """(len(users), k) best item indices per user by dot product, ``exclude`` rows' items left out."""
    scores = user_factors[np.asarray(users)] @ item_factors.T
    if exclude is not None:
        rows = exclude[np.asarray(users)]
        scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
