"""Evaluation of every "up next" method on one temporal leave-last-out split, in one run.

Protocol (the same for the CNN variants and every baseline, so the table is a fair comparison):

1. Per user, the last basket is the **test** target, the one before it the **validation** target, the
   rest is training (``music.next.data.leave_last_out``). Every method is fitted on training baskets only.
2. Hyper-parameters are chosen on the validation targets only: the CNN's epoch count (early stopping on
   validation HR@10), the repeat decay and the kNN neighbourhood size. Test targets are scored once.
3. Predicting a target, a method reads the user's whole history before it (for the test target this
   includes the validation basket, as *input*: nobody refits on it).
4. Full ranking over the whole catalogue. Items already in the history are excluded only where the
   data never repeats (MovieLens: nobody rates a film twice); in listening data re-listens are targets.
5. A target basket may hold several items: HR@10 = any of them in the top 10; MRR = 1 / rank of the
   first hit; NDCG@10 with the ideal DCG of ``min(|basket|, 10)`` hits; top-1 accuracy
   = the first pick is in the basket. Ties are broken by one fixed random order of the items, the same
   for every method, so a method with many equal scores (popularity) gets no free hits.
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
from music.data import Split, load_dataset
from music.mf.model import KerasMF
from music.next.baselines import MFAdapter, NextRecommender, Popularity, RepeatRecency, SessionKNN
from music.next.caser import CaserNext, item_texts
from music.next.data import PAD, SequenceData, from_dataset, history_before, leave_last_out, target_of
from music.next.model import CaserConfig

log = logging.getLogger(__name__)

K = 10
RESULTS_DIR = MODELS_DIR / "music"


def results_path(dataset: str) -> Path:
    """Where the app finds the last evaluation of ``dataset``."""
    return RESULTS_DIR / f"next_eval_{dataset}.json"


# ----------------------------------------------------------------------------------------------
# metrics


def target_ranks(scores: np.ndarray, targets: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """1-based rank of each target column in one score row; ties go by ``tiebreak`` (lower first)."""
    st = scores[targets][:, None]
    greater = (scores[None, :] > st).sum(axis=1)
    ties = ((scores[None, :] == st) & (tiebreak[None, :] < tiebreak[targets][:, None])).sum(axis=1)
    return greater + ties + 1


def basket_metrics(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    """Metrics of one target basket from the ranks of its items."""
    first = int(ranks.min())
    hits = np.sort(ranks[ranks <= k])
    dcg = float(np.sum(1.0 / np.log2(hits + 1))) if len(hits) else 0.0
    idcg = float(np.sum(1.0 / np.log2(np.arange(2, min(len(ranks), k) + 2))))
    return {f"hr@{k}": float(first <= k), f"ndcg@{k}": dcg / idcg, "mrr": 1.0 / first, "top1": float(first == 1)}


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

    def evaluate(self, method: Any, stage: str = "test", batch: int = 256) -> dict[str, float]:
        """Mean metrics of ``method`` over the stage's users (full ranking over every item)."""
        hists, targets, users = self.cases(stage)
        rows: list[dict[str, float]] = []
        for start in range(0, len(users), batch):
            h = hists[start : start + batch]
            scores = np.asarray(method.score(users[start : start + batch], h), dtype=np.float64)
            scores[:, PAD] = -np.inf
            for r in range(len(h)):
                if self.exclude_seen and len(h[r]):
                    scores[r, h[r]] = -np.inf
                rows.append(basket_metrics(target_ranks(scores[r], targets[start + r], self.tiebreak)))
        if not rows:
            return {f"hr@{K}": 0.0, f"ndcg@{K}": 0.0, "mrr": 0.0, "top1": 0.0, "users": 0}
        out = {key: round(float(np.mean([m[key] for m in rows])), 4) for key in rows[0]}
        out["users"] = len(rows)
        return out


# ----------------------------------------------------------------------------------------------
# the one run


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


def evaluate_next(
    dataset_name: str,
    path: str | None = None,
    *,
    variants: Sequence[tuple[str, bool, bool]] = (("onehot", True, False), ("word2vec", True, False),
                                                 ("text", True, False)),
    cnn: dict[str, Any] | None = None,
    basket: str | None = None,
    exclude_seen: str = "auto",
    with_mf: bool = True,
    progress: Callable[[float, str], None] | None = None,
    save: bool = True,
    command: str = "",
    out: str | None = None,
) -> dict[str, Any]:
    """Evaluate baselines and Caser variants on one split; return ``{"methods": {...}, "meta": {...}}``.

    ``variants`` are ``(init, trainable, repeat)`` triples; ``cnn`` overrides ``CaserConfig`` fields.
    """
    t0 = time.time()
    ds = load_dataset(dataset_name, path)
    seqs = from_dataset(ds, basket=basket)
    split = leave_last_out(seqs)
    repeat_share = repeats_in_data(seqs, split)
    excl = repeat_share < 0.01 if exclude_seen == "auto" else exclude_seen in ("yes", "true", "1")
    ev = Evaluator(seqs, split, exclude_seen=excl)
    upto = split.train_upto
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, method: Any, extra: dict[str, Any] | None = None) -> None:
        val = ev.evaluate(method, "val")
        test = ev.evaluate(method, "test")
        results[name] = {**{k: v for k, v in test.items()}, f"val_hr@{K}": val[f"hr@{K}"], **(extra or {})}
        log.info("%s: %s", name, results[name])

    record("popularity", Popularity().fit(seqs, upto))
    m, decay, _ = tune(ev, lambda v: RepeatRecency(decay=v), (0.5, 0.8, 0.95, 1.0), upto)
    record("repeat_recency", m, {"decay": decay})
    m, k, _ = tune(ev, lambda v: SessionKNN(k=v), (20, 100, 500), upto)
    record("session_knn", m, {"k": k})
    if with_mf:
        mf = _mf_baseline(ds.kind)
        if mf is not None:
            try:
                record("mf", mf.fit(seqs, upto))
            except Exception as exc:  # noqa: BLE001 - one failing baseline must not sink the whole table
                log.warning("MF baseline failed: %s", exc)
                results["mf"] = {"error": f"{type(exc).__name__}: {exc}"}

    texts = item_texts(ds.items, seqs.item_ids)
    for i, (init, trainable, repeat) in enumerate(variants):
        cfg = CaserConfig(init=init, trainable=trainable, repeat=bool(repeat), mix=repeat == "mix", **(cnn or {}))
        model = CaserNext(cfg, texts=texts)
        model.fit(seqs, upto, validate=lambda mm: ev.evaluate(mm, "val")[f"hr@{K}"])
        record(cfg.variant, model, {"epochs": model.info.get("epochs_run"), "train_seconds": model.info.get("seconds")})
        if progress is not None:
            progress((i + 1) / len(variants), cfg.variant)

    baselines = {k: v for k, v in results.items() if not k.startswith("caser") and "error" not in v}
    cnns = {k: v for k, v in results.items() if k.startswith("caser")}
    best_b = max(baselines, key=lambda k: baselines[k][f"hr@{K}"])
    best_c = max(cnns, key=lambda k: cnns[k][f"hr@{K}"]) if cnns else None
    ratio = (cnns[best_c][f"hr@{K}"] / max(baselines[best_b][f"hr@{K}"], 1e-12)) if best_c else None
    # the stricter reading: the CNN variant and the baseline each chosen on validation, then compared on test
    val_c = max(cnns, key=lambda k: cnns[k][f"val_hr@{K}"]) if cnns else None
    val_b = max(baselines, key=lambda k: baselines[k][f"val_hr@{K}"])
    val_ratio = (cnns[val_c][f"hr@{K}"] / max(baselines[val_b][f"hr@{K}"], 1e-12)) if val_c else None
    meta = {
        "dataset": dataset_name,
        "basket": seqs.config["basket"],
        "users": seqs.n_users,
        "items": seqs.n_items,
        "evaluated_users": int(len(split.test_users)),
        "repeat_share_in_training": round(repeat_share, 4),
        "exclude_seen": bool(excl),
        "best_baseline": best_b,
        "best_cnn": best_c,
        "hr@10_ratio_best_cnn_over_best_baseline": None if ratio is None else round(ratio, 3),
        "bar_1.1x_met": None if ratio is None else bool(ratio >= 1.1),
        "chosen_on_validation": {"cnn": val_c, "baseline": val_b,
                                 "hr@10_ratio": None if val_ratio is None else round(val_ratio, 3)},
        "seconds": round(time.time() - t0, 1),
        "cnn_config": cnn or {},
        "protocol": "temporal leave-last-out per user, tuned on validation baskets, full ranking over all items",
    }
    result = {"label": getattr(ds, "label", dataset_name), "protocol": meta["protocol"], "command": command,
              "methods": results, "meta": meta}
    if save:
        write_json(out or results_path(dataset_name), result)
    return result


def _mf_baseline(kind: str) -> NextRecommender | None:
    """The music tab's Keras MF (implicit mode: the history is play counts)."""
    return MFAdapter(lambda: KerasMF(patience=2))  # mode chosen by MF itself (softmax for play counts)


def markdown_table(result: dict[str, Any]) -> str:
    """The results of one run as a Markdown table (for docs/music_next.md and the README)."""
    keys = [f"hr@{K}", f"ndcg@{K}", "mrr", "top1"]
    lines = ["| method | " + " | ".join(k.upper().replace("TOP1", "top-1") for k in keys) + " | val HR@10 | notes |",
             "|---|" + "---:|" * (len(keys) + 1) + "---|"]
    for name, m in result["methods"].items():
        if "error" in m:
            lines.append(f"| {name} | " + " | ".join("—" for _ in keys) + f" | — | {m['error']} |")
            continue
        notes = ", ".join(f"{k}={m[k]}" for k in ("decay", "k", "epochs") if k in m)
        bold = name in (result["meta"].get("best_cnn"), result["meta"].get("best_baseline"))
        cells = [f"**{m[k]:.4f}**" if bold and k == f"hr@{K}" else f"{m[k]:.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m.get(f'val_hr@{K}', float('nan')):.4f} | {notes} |")
    meta = result["meta"]
    lines.append("")
    lines.append(f"{meta['users']} users, {meta['items']} items, {meta['evaluated_users']} evaluated; baskets: "
                 f"{meta['basket']}; history items excluded: {meta['exclude_seen']}. Best CNN {meta['best_cnn']} / "
                 f"best baseline {meta['best_baseline']} = **{meta['hr@10_ratio_best_cnn_over_best_baseline']}×** HR@10 "
                 f"(bar 1.1×: {'met' if meta['bar_1.1x_met'] else 'not met'}).")
    chosen = meta.get("chosen_on_validation")
    if chosen:
        lines[-1] += (f" Picking both by validation HR@10 instead ({chosen['cnn']} vs {chosen['baseline']}): "
                      f"{chosen['hr@10_ratio']}×.")
    return "\n".join(lines)
