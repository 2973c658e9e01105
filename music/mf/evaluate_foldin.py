"""How good are picks from a few likes, without retraining? Fold-in on held-out listeners, full ranking.

Protocol (``python -m music evaluate-foldin``):

- Hold out whole listeners: a seeded ``HOLDOUT`` share of all users, drawn from those with at least
  ``MIN_ITEMS`` items (so that after revealing 10 there are still ≥ 5 to find). The model never trains on them.
- Train the MF on the other listeners exactly as ``python -m music train`` does (the kind's hyper-parameters,
  chosen by the shipped evaluation on its validation split; early stopping on a validation split carved from
  the *training* listeners), so the held-out listeners never choose anything.
- For each held-out listener, shuffle their items (seeded) and reveal the first k = 1, 3, 5, 10 as likes (binary:
  what a 👍 says); fold them in (``music.mf.foldin``); rank every item except the revealed ones; NDCG@10 and HR@10
  on the rest of their items.
- Beside it, on the same listeners and reveals: popularity (training listeners' counts), the genre recommender
  (genres of the revealed items), and a full retrain that includes the held-out listeners' revealed items with
  the same like confidence (the upper bound; at k = 5, the bar's k, since each retrain is a full MF fit).

Explicit data (MovieLens ratings) is evaluated as "who rated what" (the rating as the interaction weight), the
same top-N question. Every number has a 95 % bootstrap interval over listeners (``core.metrics``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from core.metrics import hit_at_k, ndcg_at_k, ratio_ci, summarize, write_result
from music.data import MusicDataset, load_dataset, user_holdout_split
from music.mf.baselines import GenreRecommender, Popularity
from music.mf.evaluate import val_ndcg
from music.mf.foldin import FoldInModel, describe
from music.mf.model import KerasMF, mf_config
from music.recommender import top_n

log = logging.getLogger(__name__)

K = 10
REVEAL = (1, 3, 5, 10)
BAR_K = 5
HOLDOUT = 0.10
MIN_ITEMS = 15


def as_implicit(data: MusicDataset) -> MusicDataset:
    """Ratings as "who rated what" (weight = rating), for the top-N question."""
    if data.kind == "implicit":
        return data
    return MusicDataset(data.name, "implicit", data.interactions, data.items, data.events, dict(data.report))


def heldout_users(data: MusicDataset, fraction: float = HOLDOUT, min_items: int = MIN_ITEMS,
                  seed: int = 42) -> np.ndarray:
    """Seeded ``fraction`` of all users, drawn among users with ≥ ``min_items`` items."""
    counts = data.interactions.groupby("user").size()
    eligible = np.array(sorted(counts.index[counts >= min_items].astype(str)))
    n = min(len(eligible), max(1, int(round(fraction * data.n_users))))
    return np.sort(np.random.default_rng(seed).choice(eligible, n, replace=False))


def _rank_metrics(score_rows: Callable[[int], np.ndarray], revealed: list[np.ndarray],
                  rest: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-listener NDCG@K and HR@K of full ranking, revealed items excluded."""
    hits = np.zeros((len(rest), K), bool)
    for r, (shown, truth) in enumerate(zip(revealed, rest)):
        s = np.asarray(score_rows(r), np.float64).copy()
        s[shown] = -np.inf
        top = top_n(s, K)
        hits[r, : len(top)] = np.isin(top, truth)
    n_rel = np.array([len(t) for t in rest])
    return ndcg_at_k(hits, n_rel, K), hit_at_k(hits, K)


def _row(ndcg: np.ndarray, hr: np.ndarray, **extra: Any) -> dict[str, Any]:
    n, h = summarize(ndcg), summarize(hr)
    out = {f"ndcg@{K}": n["mean"], f"ndcg@{K}_ci95": n["ci95"], f"hr@{K}": h["mean"], f"hr@{K}_ci95": h["ci95"],
           "users": n["n"], **extra}
    if n.get("small_set"):
        out["small_set"] = True
    return out


def evaluate_foldin(dataset: str, path: str | None = None, *, seed: int = 42, save: bool = True,
                    data: MusicDataset | None = None, mf_params: dict[str, Any] | None = None,
                    retrain: bool = True, **load_kwargs: Any) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns (and writes) one object per method plus ``meta``."""
    t0 = time.time()
    data = as_implicit(data or load_dataset(dataset, path, **load_kwargs))
    test_users = heldout_users(data, seed=seed)
    inter = data.interactions
    is_test = inter["user"].astype(str).isin(set(test_users))
    train = inter[~is_test].reset_index(drop=True)
    cfg = mf_config(data.name, "implicit", mf_params)
    # early stopping on listeners of the training side only, as `python -m music train` does
    stop = user_holdout_split(train, test_fraction=0.05, min_items=10, seed=123)
    t = time.time()
    mf = KerasMF(**cfg).fit(data, stop.train, val=stop.test, validate=val_ndcg)
    fit_seconds = round(time.time() - t, 1)
    c = mf.catalogue
    fold = FoldInModel(mf)
    pop = Popularity().fit(data, train)
    genre = GenreRecommender().fit(data, train)

    rng = np.random.default_rng(seed + 1)
    items_of = inter[is_test].groupby("user")["item"].apply(list)
    orders = {u: np.asarray(c.items.indices(items_of[u]), np.int64)[rng.permutation(len(items_of[u]))]
              for u in test_users}
    methods: dict[str, dict[str, Any]] = {}
    per_k: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for k in REVEAL:
        revealed = [orders[u][:k] for u in test_users]
        rest = [orders[u][k:] for u in test_users]
        folded = [fold.scores(fold.solve(r)) for r in revealed]
        res = {"fold_in": _rank_metrics(lambda r: folded[r], revealed, rest),
               "popularity": _rank_metrics(lambda r: pop.counts, revealed, rest),
               "genre": _rank_metrics(lambda r: genre._score_pref(_genre_pref(genre, revealed[r])), revealed, rest)}
        per_k[k] = res
        methods[f"fold_in_k{k}"] = _row(*res["fold_in"], k=k)
    bar = per_k[BAR_K]
    methods["popularity"] = _row(*bar["popularity"], k=BAR_K)
    methods["genre"] = _row(*bar["genre"], k=BAR_K)
    if retrain:
        revealed = [orders[u][:BAR_K] for u in test_users]
        rest = [orders[u][BAR_K:] for u in test_users]
        likes = pd.DataFrame({"user": np.repeat(test_users, [len(r) for r in revealed]),
                              "item": c.items.externals(np.concatenate(revealed)),
                              "weight": np.float32(fold.like_value)})
        t = time.time()
        full = KerasMF(**dict(cfg, schedule=mf.schedule_)).fit(data, pd.concat([stop.train, likes], ignore_index=True))
        uidx = c.users.indices(test_users)
        scores = full.score(uidx)
        bar["retrain"] = _rank_metrics(lambda r: scores[r], revealed, rest)
        methods["retrain"] = _row(*bar["retrain"], k=BAR_K, fit_seconds=round(time.time() - t, 1))
    fi = bar["fold_in"][0]
    bars: dict[str, Any] = {
        "fold_in_k5_over_popularity": {"ratio": float(fi.mean() / max(bar["popularity"][0].mean(), 1e-12)),
                                       "ci95": ratio_ci(fi, bar["popularity"][0]), "bar": 2.0},
    }
    if "retrain" in bar:
        bars["fold_in_k5_over_retrain"] = {"ratio": float(fi.mean() / max(bar["retrain"][0].mean(), 1e-12)),
                                           "ci95": ratio_ci(fi, bar["retrain"][0]), "bar": 0.8}
    for b in bars.values():
        b["met"] = bool(b["ratio"] >= b["bar"])
    out = {**methods, "meta": {
        "dataset": dataset, "label": data.label, "summary": data.summary(), "seed": seed,
        "heldout_users": int(len(test_users)), "train_users": int(train["user"].nunique()),
        "by_k": {name: {f"k{k}": _row(*per_k[k][name]) for k in REVEAL} for name in ("popularity", "genre")},
        "bars": bars, "foldin": describe(fold), "mf_params": cfg, "mf_schedule": mf.schedule_,
        "mf_fit_seconds_under_load": fit_seconds, "retrain_k": BAR_K if retrain else None,
        "protocol": (f"{HOLDOUT:.0%} of users held out whole (seed {seed}; users with ≥ {MIN_ITEMS} items); "
                     f"k ∈ {list(REVEAL)} items revealed as binary likes; full ranking over all items except the "
                     f"revealed ones; NDCG@{K}/HR@{K} on the rest; popularity, genre and retrain at k={BAR_K}"),
        "seconds_under_load": round(time.time() - t0, 1)}}
    if save:
        write_result(f"music_foldin_{dataset}", out)
    return out


def _genre_pref(genre: GenreRecommender, liked: np.ndarray) -> np.ndarray:
    """Genre preference of a listener known only by liked items (each counts once), summing to 1."""
    w = np.zeros(genre.catalogue.n_items, np.float32)
    w[liked] = 1.0
    v = genre.item_genre @ w
    return v / v.sum() if v.sum() > 0 else v
