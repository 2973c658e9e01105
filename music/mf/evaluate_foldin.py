"""How good are picks from a few likes, without retraining? Fold-in on held-out listeners, full ranking.

Protocol (``python -m music evaluate-foldin``):

- Hold out whole listeners: a seeded ``HOLDOUT`` share of all users, drawn from those with at least
  ``MIN_ITEMS`` items (so that after revealing 10 there are still ≥ 5 to find): the *test* listeners. Another
  seeded ``HOLDOUT`` share, disjoint from them and eligible the same way: the *validation* listeners.
- Validation side: an MF trained on every listener but the test and validation ones (the kind's hyper-
  parameters, early stopping on a split carved from its own training listeners); the fold-in's constants
  (``music.mf.foldin.FoldInConstants``: like confidence, λ of the solve, item-bias weight, factor-similarity
  weight, co-listening weight and its exponent) are chosen by a coordinate search on the validation listeners'
  NDCG@10, averaged over k. The test listeners choose nothing.
- Test side: the MF trained on every listener but the test ones, exactly as ``python -m music train`` does.
  For each test listener, shuffle their items (seeded) and reveal the first k = 1, 3, 5, 10 as likes (binary:
  what a 👍 says); fold them in with the chosen constants; rank every item except the revealed ones; NDCG@10
  and HR@10 on the rest of their items. The fold-in with the model's own constants is reported beside it.
- Beside it, on the same listeners and reveals: popularity (training listeners' counts), the genre recommender
  (genres of the revealed items), and a full retrain that includes the test listeners' revealed items as likes
  of the median training interaction's weight, with the main model's epochs and learning-rate steps (the
  upper bound of the MF recipe; at k = 5, the bar's k, since each retrain is a full MF fit).

Explicit data (MovieLens ratings) is evaluated as "who rated what" (the rating as the interaction weight), the
same top-N question. Every number has a 95 % bootstrap interval over listeners (``core.metrics``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from core.artifacts import ArtifactError, read_json, write_json
from core.evaluation import per_query, summarize_row
from core.metrics import ratio_ci, write_result
from music.data import MusicDataset, load_dataset, user_holdout_split
from music.mf.baselines import GenreRecommender, Popularity
from music.mf.evaluate import val_ndcg
from music.mf.foldin import FoldInConstants, FoldInModel, describe, save_constants
from music.mf.model import KerasMF, mf_config
from music.recommender import top_n

log = logging.getLogger(__name__)

K = 10
REVEAL = (1, 3, 5, 10)
BAR_K = 5
HOLDOUT = 0.10
MIN_ITEMS = 15
#: Rounds of the coordinate search over the fold-in's constants (it stops early once a round changes nothing).
SEARCH_ROUNDS = 3
#: The search grid: confidence c of a like, λ of the solve, item-bias weight β, factor-similarity weight γ,
#: co-listening weight δ and exponent a. The (c, λ) grid reaches c = 4096 and λ = 10000: on Last.fm-2K the
#: validation optimum sat at c = 1024, λ = 3000, where the solve is already in its large-c, large-λ limit
#: (p ∝ Σ_liked q_l (1 − b_l): only c/λ matters; up to c = 65536 at the same ratios, validation NDCG@10
#: moved by < 0.001).
GRID: dict[str, tuple[float, ...]] = {
    "confidence": (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0),
    "l2": (0.05, 0.2, 1.0, 5.0, 20.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
    "bias_weight": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "similarity_weight": (0.0, 0.25, 0.5, 1.0, 2.0),
    "colistening_weight": (0.0, 0.125, 0.25, 0.5, 1.0, 2.0),
    "colistening_alpha": (0.5, 0.7, 0.8, 0.9, 1.0),
}
#: The validation listeners are drawn with the evaluation's seed plus this offset.
VAL_SEED_OFFSET = 1000


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
    values = per_query(hits, np.array([len(t) for t in rest]), [f"ndcg@{K}", f"hr@{K}"])
    return values[f"ndcg@{K}"], values[f"hr@{K}"]


def _row(ndcg: np.ndarray, hr: np.ndarray, **extra: Any) -> dict[str, Any]:
    """One method's NDCG@K and HR@K with their 95 % intervals over listeners (``core.evaluation``)."""
    row = summarize_row({f"ndcg@{K}": ndcg, f"hr@{K}": hr})
    out = {**row.flat(), "users": row.n, **extra}
    if row.small_set:
        out["small_set"] = True
    return out


def validation_users(data: MusicDataset, test_users: np.ndarray, fraction: float = HOLDOUT,
                     min_items: int = MIN_ITEMS, seed: int = 42) -> np.ndarray:
    """Another seeded ``fraction`` of all users, eligible as the test listeners are, never a test listener:
    the listeners the fold-in's constants are chosen on."""
    counts = data.interactions.groupby("user").size()
    eligible = np.array(sorted(set(counts.index[counts >= min_items].astype(str)) - set(map(str, test_users))))
    n = min(len(eligible), max(1, int(round(fraction * data.n_users))))
    return np.sort(np.random.default_rng(seed + VAL_SEED_OFFSET).choice(eligible, n, replace=False))


def _orders(data: MusicDataset, inter: pd.DataFrame, users: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each listener's items as indices, in a seeded shuffle: the first k are the revealed likes."""
    rng = np.random.default_rng(seed)
    items_of = inter[inter["user"].astype(str).isin(set(users))].groupby("user")["item"].apply(list)
    return {u: np.asarray(data.item_map.indices(items_of[u]), np.int64)[rng.permutation(len(items_of[u]))]
            for u in users}


def _setup(data: MusicDataset, seed: int) -> dict[str, Any]:
    """Test and validation listeners, the two training frames, their early-stopping splits and each held-out
    listener's shuffled items.

    The test side is what it always was: the MF trains on every listener but the test ones. The validation
    side mirrors it one level down: a second MF trains on every listener but the test *and* validation ones,
    and the fold-in's constants are chosen on the validation listeners with that model.
    """
    test_users = heldout_users(data, seed=seed)
    val_users = validation_users(data, test_users, seed=seed)
    inter = data.interactions
    user = inter["user"].astype(str)
    train = inter[~user.isin(set(test_users))].reset_index(drop=True)
    train_val = inter[~user.isin(set(test_users) | set(val_users))].reset_index(drop=True)
    # early stopping on listeners of the training side only, as `python -m music train` does
    stop = user_holdout_split(train, test_fraction=0.05, min_items=10, seed=123)
    stop_val = user_holdout_split(train_val, test_fraction=0.05, min_items=10, seed=123)
    return {"test_users": test_users, "val_users": val_users, "train": train, "train_val": train_val,
            "stop": stop, "stop_val": stop_val, "orders": _orders(data, inter, test_users, seed + 1),
            "val_orders": _orders(data, inter, val_users, seed + 2)}


def fit_mf(data: MusicDataset, cfg: dict[str, Any], split: Any, fits_dir: str | Path | None, role: str) -> KerasMF:
    """The MF of one side (``role`` = ``"test"`` or ``"val"``), early-stopped on its own split.

    With ``fits_dir`` a fitted model is saved there and reused by later runs when it was trained on exactly
    these listeners with this configuration (a full fit takes minutes; the fold-in's search does not need a
    new one).
    """
    if fits_dir is None:
        return KerasMF(**cfg).fit(data, split.train, val=split.test, validate=val_ndcg)
    stem = Path(fits_dir) / f"foldin_{data.name}_{role}"
    want = {"users": sorted(split.train["user"].astype(str).unique()),
            "config": {k: cfg[k] for k in sorted(cfg)}, "dataset_checksum": data.checksum()}
    key = hashlib.sha256(json.dumps(want, sort_keys=True, default=str).encode()).hexdigest()
    try:
        meta = read_json(stem.with_suffix(".fit.json"))
        if meta.get("key") == key:
            log.info("reusing the %s-side MF fit from %s", role, stem)
            return KerasMF.load(stem)  # type: ignore[return-value]
    except ArtifactError:
        pass
    mf = KerasMF(**cfg).fit(data, split.train, val=split.test, validate=val_ndcg)
    mf.save(stem)
    write_json(stem.with_suffix(".fit.json"), {"key": key, "role": role, "dataset": data.name})
    return mf


def retrain_metrics(data: MusicDataset, cfg: dict[str, Any], setup: dict[str, Any], like_value: float,
                    schedule: list[Any], k: int = BAR_K) -> tuple[np.ndarray, np.ndarray]:
    """The upper bound: MF retrained with the main model's hyper-parameters and its validated schedule (same
    epochs and learning-rate steps), on the training listeners plus the held-out listeners' ``k`` revealed
    items as likes."""
    users = setup["test_users"]
    revealed = [setup["orders"][u][:k] for u in users]
    rest = [setup["orders"][u][k:] for u in users]
    likes = pd.DataFrame({"user": np.repeat(users, [len(r) for r in revealed]),
                          "item": data.item_map.externals(np.concatenate(revealed)),
                          "weight": np.float32(like_value)})
    stop = setup["stop"]
    full = KerasMF(**dict(cfg, schedule=schedule)).fit(data, pd.concat([stop.train, likes], ignore_index=True))
    scores = full.score(full.catalog.users.indices(users))
    return _rank_metrics(lambda r: scores[r], revealed, rest)


def _score_k(fold: FoldInModel, orders: dict[str, np.ndarray], users: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold-in NDCG@K and HR@K per listener with ``k`` revealed likes (all listeners scored in one product)."""
    revealed = [orders[u][:k] for u in users]
    rest = [orders[u][k:] for u in users]
    S = fold.scores_many([fold.solve(r) for r in revealed])
    return _rank_metrics(lambda r: S[r], revealed, rest)


def _criterion(fold: FoldInModel, orders: dict[str, np.ndarray], users: np.ndarray) -> dict[str, float]:
    """Validation NDCG@K for each k, and their mean (the selection criterion: the product folds in any number
    of likes, so one set of constants must serve k = 1 as well as k = 10)."""
    out = {f"k{k}": float(_score_k(fold, orders, users, k)[0].mean()) for k in REVEAL}
    out["mean"] = float(np.mean([out[f"k{k}"] for k in REVEAL]))
    return out


def choose_constants(mf: KerasMF, orders: dict[str, np.ndarray], users: np.ndarray,
                     rounds: int = SEARCH_ROUNDS) -> tuple[FoldInConstants, list[dict[str, Any]]]:
    """Coordinate search over the fold-in's constants on the validation listeners.

    Each round searches (confidence × λ) on a grid with the rest fixed, then (β × γ), then (δ × a), starting
    from the model's own values; a candidate replaces the incumbent only if it is better on
    the criterion. Returns the winner and every evaluated candidate (for the result file).
    """
    base = FoldInModel(mf)
    colistening = base.colistening()  # counted once, shared by every candidate
    best = FoldInConstants(confidence=float(base.confidence), l2=float(base.l2))
    tried: dict[FoldInConstants, dict[str, float]] = {}

    def score(c: FoldInConstants) -> float:
        if c not in tried:
            tried[c] = _criterion(FoldInModel(mf, c, colistening), orders, users)
        return tried[c]["mean"]

    score(best)
    for _ in range(rounds):
        before = best
        for cand in [replace(best, confidence=c, l2=lam) for c in (*GRID["confidence"], best.confidence)
                     for lam in (*GRID["l2"], best.l2)]:
            if score(cand) > score(best):
                best = cand
        for cand in [replace(best, bias_weight=b, similarity_weight=g) for b in GRID["bias_weight"]
                     for g in GRID["similarity_weight"]]:
            if score(cand) > score(best):
                best = cand
        for cand in [replace(best, colistening_weight=w, colistening_alpha=a) for w in GRID["colistening_weight"]
                     for a in GRID["colistening_alpha"]]:
            if score(cand) > score(best):
                best = cand
        log.info("fold-in search: %s -> validation NDCG@%d %.4f (%d candidates)", best, K, score(best), len(tried))
        if best == before:
            break
    trail = [{**c.to_dict(), **{f"val_ndcg@{K}_{n}": v for n, v in r.items()}} for c, r in tried.items()]
    return best, sorted(trail, key=lambda t: -t[f"val_ndcg@{K}_mean"])


def evaluate_foldin(dataset: str, path: str | None = None, *, seed: int = 42, save: bool = True,
                    data: MusicDataset | None = None, mf_params: dict[str, Any] | None = None,
                    retrain: bool = True, fits_dir: str | Path | None = None,
                    **load_kwargs: Any) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns (and writes) one object per method plus ``meta``.

    With ``save`` the chosen constants are also written beside the dataset's models
    (``music.mf.foldin.save_constants``), where the product reads them.
    """
    t0 = time.time()
    data = as_implicit(data or load_dataset(dataset, path, **load_kwargs))
    setup = _setup(data, seed)
    test_users, train = setup["test_users"], setup["train"]
    cfg = mf_config(data.name, "implicit", mf_params)
    chosen, trail, validation = _validation_side(data, cfg, setup, fits_dir)

    # test side: the MF of every listener but the test ones, the chosen constants, reported once
    t = time.time()
    mf = fit_mf(data, cfg, setup["stop"], fits_dir, "test")
    fit_seconds = round(time.time() - t, 1)
    fold = FoldInModel(mf, chosen)
    own = FoldInModel(mf)
    per_k = _test_side(data, setup, fold, own)
    methods: dict[str, dict[str, Any]] = {f"fold_in_k{k}": _row(*per_k[k]["fold_in"], k=k) for k in REVEAL}
    bar = per_k[BAR_K]
    methods["popularity"] = _row(*bar["popularity"], k=BAR_K)
    methods["genre"] = _row(*bar["genre"], k=BAR_K)
    if retrain:
        t = time.time()
        # the retrain is MF training with its own recipe: a like is the median training interaction, as the
        # fold-in's default (a chosen fold-in confidence such as 128 is e^127 plays, no weight to train on)
        bar["retrain"] = retrain_metrics(data, cfg, setup, own.like_value, mf.schedule_)
        methods["retrain"] = _row(*bar["retrain"], k=BAR_K, fit_seconds_under_load=round(time.time() - t, 1))
    constants_file = None
    if save:
        constants_file = str(save_constants(dataset, chosen, mode=str(mf.mode), engine="keras", chosen_on={
            "validation_users": int(len(setup["val_users"])), "criterion": validation["criterion"],
            "val_ndcg@10": trail[0], "dataset_checksum": data.checksum(), "mf_params": cfg, "seed": seed}))
    out = {**methods, "meta": {
        "dataset": dataset, "label": data.label, "summary": data.summary(), "seed": seed,
        "heldout_users": int(len(test_users)), "train_users": int(train["user"].nunique()),
        "by_k": {name: {f"k{k}": _row(*per_k[k][name]) for k in REVEAL}
                 for name in ("popularity", "genre", "fold_in_model_defaults")},
        "bars": bars_of(bar), "foldin": describe(fold), "constants_file": constants_file,
        "validation": validation, "mf_params": cfg, "mf_schedule": mf.schedule_,
        "mf_fit_seconds_under_load": fit_seconds, "retrain_k": BAR_K if retrain else None,
        "protocol": _protocol(seed), "seconds_under_load": round(time.time() - t0, 1)}}
    if save:
        write_result(f"music_foldin_{dataset}", out, seeds={"test_listeners": seed, "validation_listeners":
                                                            seed + VAL_SEED_OFFSET, "reveal_order": seed + 1})
    return out


def _validation_side(data: MusicDataset, cfg: dict[str, Any], setup: dict[str, Any],
                     fits_dir: str | Path | None) -> "tuple[FoldInConstants, list[dict[str, Any]], dict[str, Any]]":
    """Constants chosen with an MF that never saw the validation (or test) listeners: (the chosen constants,
    every candidate tried, best first, and the validation report with the baselines at each k)."""
    val_users = setup["val_users"]
    t = time.time()
    mf_val = fit_mf(data, cfg, setup["stop_val"], fits_dir, "val")
    val_fit_seconds = round(time.time() - t, 1)
    chosen, trail = choose_constants(mf_val, setup["val_orders"], val_users)
    val_pop = Popularity().fit(data, setup["train_val"])
    val_genre = GenreRecommender().fit(data, setup["train_val"])
    validation: dict[str, Any] = {
        "users": int(len(val_users)), "train_users": int(setup["train_val"]["user"].nunique()),
        "chosen": chosen.to_dict(), "criterion": f"mean over k of validation NDCG@{K}",
        "fold_in_chosen": trail[0], "fold_in_model_defaults": next(
            r for r in trail if r["bias_weight"] == 1.0 and r["similarity_weight"] == 0.0
            and r["colistening_weight"] == 0.0 and r["colistening_alpha"] == FoldInConstants.colistening_alpha
            and r["confidence"] == FoldInModel(mf_val).confidence and r["l2"] == mf_val.l2),
        "by_k": {}, "candidates": trail, "mf_fit_seconds_under_load": val_fit_seconds}
    val_fold = FoldInModel(mf_val, chosen)
    for k in REVEAL:
        rv = [setup["val_orders"][u][:k] for u in val_users]
        rs = [setup["val_orders"][u][k:] for u in val_users]
        validation["by_k"][f"k{k}"] = {
            "fold_in": _row(*_score_k(val_fold, setup["val_orders"], val_users, k)),
            "popularity": _row(*_rank_metrics(lambda r: val_pop.counts, rv, rs)),
            "genre": _row(*_rank_metrics(lambda r: val_genre._score_pref(_genre_pref(val_genre, rv[r])), rv, rs))}
    return chosen, trail, validation


def _test_side(data: MusicDataset, setup: dict[str, Any], fold: FoldInModel,
               own: FoldInModel) -> dict[int, dict[str, "tuple[np.ndarray, np.ndarray]"]]:
    """Per k revealed items: the test listeners' per-user NDCG and HR for the fold-in with the chosen constants,
    with the model's own constants, popularity and genre."""
    test_users, orders, train = setup["test_users"], setup["orders"], setup["train"]
    pop = Popularity().fit(data, train)
    genre = GenreRecommender().fit(data, train)
    per_k: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for k in REVEAL:
        revealed = [orders[u][:k] for u in test_users]
        rest = [orders[u][k:] for u in test_users]
        per_k[k] = {"fold_in": _score_k(fold, orders, test_users, k),
                    "fold_in_model_defaults": _score_k(own, orders, test_users, k),
                    "popularity": _rank_metrics(lambda r: pop.counts, revealed, rest),
                    "genre": _rank_metrics(lambda r: genre._score_pref(_genre_pref(genre, revealed[r])), revealed,
                                           rest)}
    return per_k


def _protocol(seed: int) -> str:
    """The protocol in one paragraph, for the result file."""
    return (f"{HOLDOUT:.0%} of users held out whole as test listeners (seed {seed}; users with ≥ "
            f"{MIN_ITEMS} items) and another {HOLDOUT:.0%}, disjoint, as validation listeners (seed "
            f"{seed + VAL_SEED_OFFSET}); the fold-in's constants (like confidence, λ, item-bias weight, "
            f"factor-similarity weight, co-listening weight and exponent) chosen on the validation "
            f"listeners with an MF trained without test and validation listeners; test reported with the "
            f"MF trained on every other listener "
            f"and the chosen constants; k ∈ {list(REVEAL)} items revealed as binary likes; "
            f"full ranking over all items except the revealed ones; NDCG@{K}/HR@{K} on the rest; "
            f"popularity, genre and retrain at k={BAR_K}")


def bars_of(bar: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Fold-in at the bar's k over popularity (bar 2×) and over the retrain (bar 0.8×), paired intervals."""
    fi = bar["fold_in"][0]
    out: dict[str, Any] = {}
    for name, need in (("popularity", 2.0), ("retrain", 0.8)):
        if name in bar:
            other = bar[name][0]
            ratio = float(fi.mean() / max(other.mean(), 1e-12))
            out[f"fold_in_k{BAR_K}_over_{name}"] = {"ratio": ratio, "ci95": ratio_ci(fi, other), "bar": need,
                                                   "met": bool(ratio >= need)}
    return out


def _genre_pref(genre: GenreRecommender, liked: np.ndarray) -> np.ndarray:
    """Genre preference of a listener known only by liked items (each counts once), summing to 1."""
    w = np.zeros(genre.catalog.n_items, np.float32)
    w[liked] = 1.0
    v = genre.item_genre @ w
    return v / v.sum() if v.sum() > 0 else v
