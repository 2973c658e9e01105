"""Evaluation of every "up next" method on temporal splits, in one run per split.

Protocol (the same for the CNN variants and every baseline, so the table is a fair comparison):

1. Two splits, reported side by side (``music.next.data``): **leave-last-out** (per user, the last basket
   is the test target, the one before it the validation target, the rest is training) and **global-time**
   (one pair of cut-off times for everyone: only baskets before ``T_val`` train, so no model learns from
   another listener's events that happen after a target). Every method is fitted on training baskets only.
2. Hyper-parameters are chosen on the validation targets only: the CNN's epoch count (early stopping on
   validation HR@10), the repeat decay and the kNN neighbourhood size. Test targets are scored once.
3. **The headline is picked on validation**: the CNN variant and the baseline with the best *validation*
   HR@10 are compared on test; their HR@10 ratio gets a paired bootstrap interval over the test users
   (``core.metrics.ratio_ci``). Every metric of every method carries a 95 % bootstrap interval over users.
4. Predicting a target, a method reads the user's whole history before it (for the test target this
   includes the validation basket, as *input*: nobody refits on it).
5. Full ranking over the whole catalog. Items already in the history are excluded only where the
   data never repeats (MovieLens: nobody rates a film twice); in listening data re-listens are targets.
6. A target basket may hold several items: HR@10 = any of them in the top 10; MRR = 1 / rank of the
   first hit; NDCG@10 with the ideal DCG of ``min(|basket|, 10)`` hits; top-1 accuracy
   = the first pick is in the basket. Ties are broken by one fixed random order of the items, the same
   for every method, so a method with many equal scores (popularity) gets no free hits.
7. Side information derived from events (Last.fm-2K's tag genres, read by the text initialisation) comes
   from training events only (``MusicDataset.genres_before`` with ``training_cutoffs``).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.artifacts import MODELS_DIR, write_json
from core.evaluation import per_query, summarize_row
from core.metrics import ratio_ci
from music.data import MusicDataset, Split, load_dataset
from music.data.dataset import check_trainable
from music.mf.model import KerasMF
from music.next.baselines import MFAdapter, NextRecommender, Popularity, RepeatRecency, SessionKNN
from music.next.caser import CaserNext, item_texts
from music.next.data import (
    PAD,
    SequenceData,
    from_dataset,
    global_time,
    history_before,
    leave_last_out,
    target_of,
    training_cutoffs,
)
from music.next.model import CaserConfig

log = logging.getLogger(__name__)

K = 10
METRICS = (f"hr@{K}", f"ndcg@{K}", "mrr", "top1")
SPLITS = ("leave-last-out", "global-time")
#: The bar a CNN must clear against the best cheap baseline (HR@10 ratio, both picked on validation).
BAR = 1.1
RESULTS_DIR = MODELS_DIR / "music"


def results_path(dataset: str) -> Path:
    """Where the app finds the last evaluation of ``dataset``."""
    return RESULTS_DIR / f"next_eval_{dataset}.json"


def make_split(seqs: SequenceData, how: str) -> Split:
    """The named split of ``seqs``: ``leave-last-out`` or ``global-time``."""
    if how == "leave-last-out":
        return leave_last_out(seqs)
    if how == "global-time":
        return global_time(seqs)
    raise ValueError(f"split must be one of {', '.join(SPLITS)} or both, not {how!r}")


# ----------------------------------------------------------------------------------------------
# metrics


def target_ranks(scores: np.ndarray, targets: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """1-based rank of each target column in one score row; ties go by ``tiebreak`` (lower first)."""
    st = scores[targets][:, None]
    greater = (scores[None, :] > st).sum(axis=1)
    ties = ((scores[None, :] == st) & (tiebreak[None, :] < tiebreak[targets][:, None])).sum(axis=1)
    return greater + ties + 1


def ranks_metrics(ranks: Sequence[np.ndarray], k: int = K) -> dict[str, np.ndarray]:
    """Per target basket, from the full-catalog ranks of its items: HR@k, NDCG@k (ideal DCG of min(|basket|, k)
    hits), MRR (1 / rank of the first hit, at any depth) and top-1, with the definitions of ``core.metrics``."""
    hits = np.zeros((len(ranks), k), dtype=bool)
    for r, rk in enumerate(ranks):
        hits[r, rk[rk <= k] - 1] = True
    values = per_query(hits, np.array([len(rk) for rk in ranks]), [f"hr@{k}", f"ndcg@{k}", "hit@1"])
    first = np.array([rk.min() for rk in ranks], dtype=np.float64)
    return {f"hr@{k}": values[f"hr@{k}"], f"ndcg@{k}": values[f"ndcg@{k}"], "mrr": 1.0 / first,
            "top1": values["hit@1"]}


def basket_metrics(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    """Metrics of one target basket from the ranks of its items (``ranks_metrics`` of one basket)."""
    return {key: float(v[0]) for key, v in ranks_metrics([np.asarray(ranks)], k).items()}


def repeats_in_data(seqs: SequenceData, split: Split) -> float:
    """Share of training items that the same user already had in an earlier basket."""
    rep = total = 0
    for u in range(seqs.n_users):
        seen: set[int] = set()
        for b in seqs.baskets[u][: int(split.train_upto[u])]:
            items = set(int(i) for i in b)
            rep += len(items & seen)
            total += len(items)
            seen |= items
    return rep / max(total, 1)


class Evaluator:
    """Scores methods on the validation or test targets of one split."""

    def __init__(self, seqs: SequenceData, split: Split, *, exclude_seen: bool, seed: int = 0,
                 max_val_users: int = 2000) -> None:
        self.seqs, self.split, self.exclude_seen = seqs, split, exclude_seen
        rng = np.random.default_rng(seed)
        self.tiebreak = rng.permutation(seqs.n_items + 1)
        self.users = {"test": split.test_users, "val": split.val_users}
        if len(split.val_users) > max_val_users:
            self.users["val"] = np.sort(rng.choice(split.val_users, max_val_users, replace=False))
        self._cache: dict[str, tuple[list[np.ndarray], list[np.ndarray], np.ndarray]] = {}

    def cases(self, stage: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """(histories, targets, users) for a stage; users whose target is all history (when excluded) drop out."""
        if stage not in self._cache:
            hists, targets, users = [], [], []
            for u in self.users[stage]:
                h = history_before(self.seqs, self.split, int(u), stage)
                t = target_of(self.seqs, self.split, int(u), stage)
                if self.exclude_seen:
                    t = t[~np.isin(t, h)]
                if len(t):
                    hists.append(h)
                    targets.append(np.unique(t))
                    users.append(int(u))
            self._cache[stage] = (hists, targets, np.asarray(users, np.int64))
        return self._cache[stage]

    def per_user(self, method: Any, stage: str = "test", batch: int = 256) -> dict[str, np.ndarray]:
        """One value per evaluated user and metric (full ranking over every item), in ``cases`` order."""
        hists, targets, users = self.cases(stage)
        ranks: list[np.ndarray] = []
        for start in range(0, len(users), batch):
            h = hists[start : start + batch]
            scores = np.asarray(method.score(users[start : start + batch], h), dtype=np.float64)
            scores[:, PAD] = -np.inf
            for r in range(len(h)):
                if self.exclude_seen and len(h[r]):
                    scores[r, h[r]] = -np.inf
                ranks.append(target_ranks(scores[r], targets[start + r], self.tiebreak))
        if not ranks:
            return {key: np.zeros(0) for key in METRICS}
        return ranks_metrics(ranks)

    def evaluate(self, method: Any, stage: str = "test", batch: int = 256) -> dict[str, float]:
        """Mean metrics of ``method`` over the stage's users (full ranking over every item)."""
        return summarize(self.per_user(method, stage, batch), ci=False)


def summarize(per_user: dict[str, np.ndarray], ci: bool = True) -> dict[str, Any]:
    """Means (rounded to 4 places), ``users``, and with ``ci`` a 95 % bootstrap interval per metric
    (``core.evaluation.summarize_row``)."""
    n = len(next(iter(per_user.values()))) if per_user else 0
    if n == 0:
        return {**{key: 0.0 for key in METRICS}, "users": 0}
    if not ci:  # validation during training and tuning: only the means are compared
        return {**{key: round(float(v.mean()), 4) for key, v in per_user.items()}, "users": n}
    return {**summarize_row(per_user).flat(digits=4), "users": n}


# ----------------------------------------------------------------------------------------------
# one split


def tune(evaluator: Evaluator, make: Callable[[Any], NextRecommender], grid: Sequence[Any], upto: np.ndarray
         ) -> tuple[NextRecommender, Any, float]:
    """Fit one baseline per grid value; keep the best on validation HR@10."""
    best = (None, None, -1.0)
    for value in grid:
        m = make(value).fit(evaluator.seqs, upto)
        hr = evaluator.evaluate(m, "val")[f"hr@{K}"]
        log.info("%s(%s): validation HR@10 %.4f", m.name, value, hr)
        if hr > best[2]:
            best = (m, value, hr)
    return best  # type: ignore[return-value]


def headline(results: dict[str, dict[str, Any]], test_hr: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """The CNN and the baseline with the best *validation* HR@10, compared on test, with a paired interval."""
    baselines = {k: v for k, v in results.items() if not k.startswith("caser") and "error" not in v}
    cnns = {k: v for k, v in results.items() if k.startswith("caser") and "error" not in v}
    if not cnns or not baselines:
        return None
    best_c = max(cnns, key=lambda k: cnns[k][f"val_hr@{K}"])
    best_b = max(baselines, key=lambda k: baselines[k][f"val_hr@{K}"])
    num, den = test_hr[best_c], test_hr[best_b]
    ratio = float(num.mean() / den.mean()) if den.mean() > 0 else float("nan")
    lo, hi = ratio_ci(num, den)
    return {"best_cnn": best_c, "best_baseline": best_b, "ratio": round(ratio, 3),
            "ratio_ci95": [round(lo, 3), round(hi, 3)], "picked_on": "validation", "metric": f"hr@{K}",
            "users": int(len(num)), "bar": BAR, "bar_met": bool(ratio >= BAR)}


def evaluate_split(
    ds: MusicDataset,
    seqs: SequenceData,
    split: Split,
    *,
    variants: Sequence[tuple[str, bool, Any]],
    cnn: dict[str, Any] | None = None,
    exclude_seen: str = "auto",
    with_mf: bool = True,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Every baseline and CNN variant on one split: ``{"methods", "headline", "meta"}``."""
    t0 = time.time()
    repeat_share = repeats_in_data(seqs, split)
    excl = repeat_share < 0.01 if exclude_seen == "auto" else exclude_seen in ("yes", "true", "1")
    ev = Evaluator(seqs, split, exclude_seen=excl)
    upto = split.train_upto
    results: dict[str, dict[str, Any]] = {}
    test_hr: dict[str, np.ndarray] = {}

    def record(name: str, method: Any, extra: dict[str, Any] | None = None) -> None:
        val = ev.evaluate(method, "val")
        per_user = ev.per_user(method, "test")
        test_hr[name] = per_user[f"hr@{K}"]
        results[name] = {**summarize(per_user), f"val_hr@{K}": val[f"hr@{K}"], **(extra or {})}
        log.info("%s %s: %s", split.how, name, results[name])

    record("popularity", Popularity().fit(seqs, upto))
    m, decay, _ = tune(ev, lambda v: RepeatRecency(decay=v), (0.5, 0.8, 0.95, 1.0), upto)
    record("repeat_recency", m, {"decay": decay})
    m, k, _ = tune(ev, lambda v: SessionKNN(k=v), (20, 100, 500), upto)
    record("session_knn", m, {"k": k})
    if with_mf:
        try:
            record("mf", _mf_baseline(ds.kind).fit(seqs, upto, val_at=split.val_at))
        except Exception as exc:  # noqa: BLE001 - one failing baseline must not sink the whole table
            log.warning("MF baseline failed: %s", exc)
            results["mf"] = {"error": f"{type(exc).__name__}: {exc}"}

    # genres (part of the text init) from the tags of training events only
    texts = item_texts(ds.genres_before(training_cutoffs(seqs, split)).items, seqs.item_ids)
    for i, (init, trainable, repeat) in enumerate(variants):
        cfg = CaserConfig(init=init, trainable=trainable, repeat=bool(repeat), mix=repeat == "mix", **(cnn or {}))
        model = CaserNext(cfg, texts=texts)
        model.fit(seqs, upto, validate=lambda mm: ev.evaluate(mm, "val")[f"hr@{K}"])
        record(cfg.variant, model, {"epochs": model.info.get("epochs_run"), "train_seconds": model.info.get("seconds")})
        if progress is not None:
            progress((i + 1) / len(variants), cfg.variant)

    meta = {
        "split": split.how,
        **(split.info or {}),
        "basket": seqs.config["basket"],
        "users": seqs.n_users,
        "items": seqs.n_items,
        "evaluated_users": int(len(ev.cases("test")[2])),
        "validation_users": int(len(ev.cases("val")[2])),
        "repeat_share_in_training": round(repeat_share, 4),
        "exclude_seen": bool(excl),
        "seconds": round(time.time() - t0, 1),
        "cnn_config": cnn or {},
    }
    return {"methods": results, "headline": headline(results, test_hr), "meta": meta}


# ----------------------------------------------------------------------------------------------
# the run


def evaluate_next(
    dataset_name: str,
    path: str | None = None,
    *,
    split: str = "both",
    variants: Sequence[tuple[str, bool, Any]] = (("onehot", True, False), ("word2vec", True, False),
                                                ("text", True, False)),
    cnn: dict[str, Any] | None = None,
    basket: str | None = None,
    exclude_seen: str = "auto",
    with_mf: bool = True,
    progress: Callable[[float, str], None] | None = None,
    save: bool = True,
    command: str = "",
    out: str | None = None,
    dataset: MusicDataset | None = None,
) -> dict[str, Any]:
    """Evaluate baselines and Caser variants on one or both splits; results keyed by split.

    ``variants`` are ``(init, trainable, repeat)`` triples; ``cnn`` overrides ``CaserConfig`` fields.
    Returns ``{"label", "dataset", "protocol", "command", "splits": {name: {"methods", "headline", "meta"}}}``.
    """
    names = SPLITS if split == "both" else (split,)
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or both, not {name!r}")
    ds = dataset or load_dataset(dataset_name, path)
    check_trainable(ds, dataset_name)
    seqs = from_dataset(ds, basket=basket)
    runs = {}
    for name in names:
        runs[name] = evaluate_split(ds, seqs, make_split(seqs, name), variants=variants, cnn=cnn,
                                    exclude_seen=exclude_seen, with_mf=with_mf, progress=progress)
    result = {"label": getattr(ds, "label", dataset_name), "dataset": dataset_name, "command": command,
              "protocol": "temporal splits (leave-last-out per user; global-time cut shared by all users), tuned on "
                          "validation baskets, full ranking over all items; headline picked on validation; 95 % "
                          "bootstrap intervals over test users",
              "splits": runs}
    if save:
        write_json(out or results_path(dataset_name), result)
    return result


def _mf_baseline(kind: str) -> MFAdapter:
    """The music tab's Keras MF (implicit mode: the history is play counts)."""
    return MFAdapter(lambda: KerasMF(patience=2))  # mode chosen by MF itself (softmax for play counts)


def markdown_table(result: dict[str, Any], split: str) -> str:
    """The results of one split as a Markdown table (for docs/music_next.md)."""
    run = result["splits"][split]
    lines = ["| method | " + " | ".join(k.upper().replace("TOP1", "top-1") for k in METRICS)
             + " | HR@10 95 % CI | val HR@10 | notes |", "|---|" + "---:|" * (len(METRICS) + 2) + "---|"]
    head = run.get("headline") or {}
    for name, m in run["methods"].items():
        if "error" in m:
            lines.append(f"| {name} | " + " | ".join("—" for _ in METRICS) + f" | — | — | {m['error']} |")
            continue
        notes = ", ".join(f"{k}={m[k]}" for k in ("decay", "k", "epochs") if k in m)
        bold = name in (head.get("best_cnn"), head.get("best_baseline"))
        cells = [f"**{m[k]:.4f}**" if bold and k == f"hr@{K}" else f"{m[k]:.4f}" for k in METRICS]
        lo, hi = m.get(f"hr@{K}_ci95", [float("nan")] * 2)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {lo:.3f}–{hi:.3f} | {m.get(f'val_hr@{K}', float('nan')):.4f} | {notes} |")
    meta = run["meta"]
    lines.append("")
    text = (f"{meta['users']} users, {meta['items']} items, {meta['evaluated_users']} evaluated on test; baskets: "
            f"{meta['basket']}; history items excluded: {meta['exclude_seen']}.")
    if head:
        lo, hi = head["ratio_ci95"]
        text += (f" Headline (both picked on validation HR@10): {head['best_cnn']} / {head['best_baseline']} = "
                 f"**{head['ratio']}×** test HR@10 (95 % CI {lo}–{hi}; bar {head['bar']}×: "
                 f"{'met' if head['bar_met'] else 'not met'}).")
    lines.append(text)
    return "\n".join(lines)
