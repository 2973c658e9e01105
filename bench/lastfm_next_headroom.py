"""How much room is there above repeat/recency for "up next" on Last.fm-2K? (Why the CNN bar is missed.)

    python bench/lastfm_next_headroom.py --path ../shared/data/lastfm-2k [--out bench/results/lastfm_next_headroom.json]

Same split, same full-ranking evaluator as ``python -m music evaluate-next`` (``music.next.evaluate``):

* ``repeat_oracle``: share of target months that contain an artist the user tagged before, i.e. the
  highest HR@10 any method that only re-ranks the user's own history could reach;
* ``repeat_recency``: the baseline, decay in {0.5, 0.8, 0.95, 1} chosen on validation;
* ``learned_repeat``: a logistic regression over 9 features of every (user, past artist) pair (log count,
  share of months, in the last 1 / 3 / 6 months, months since last and first, popularity, history length),
  trained on predicting each *training* month from the months before it; it re-ranks the history and
  falls back on popularity. This is the best a repeat scorer learned from these features does.

If even a learned re-ranker of the history barely moves past the frequency heuristic, a CNN with a
repeat channel can gain only from new artists, and Caser on its own reaches HR@10 ≈ 0.12–0.13 there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from music.data import load_dataset  # noqa: E402
from music.next.baselines import NEG, RepeatRecency  # noqa: E402
from music.next.data import PAD, SequenceData, from_dataset, leave_last_out  # noqa: E402
from music.next.evaluate import Evaluator  # noqa: E402

FEATURES = ("log_count", "share_of_months", "in_last_1", "in_last_3", "in_last_6", "log_months_since_last",
            "log_months_since_first", "log_popularity", "log_history_months")


def pair_features(baskets: list[np.ndarray], log_pop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items, (n_items, 9) features) for every distinct item in a user's past ``baskets``."""
    n = len(baskets)
    count: dict[int, int] = {}
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    recent = {1: {}, 3: {}, 6: {}}
    for t, basket in enumerate(baskets):
        age = n - 1 - t
        for i in set(basket.tolist()):
            count[i] = count.get(i, 0) + 1
            last[i] = t
            first.setdefault(i, t)
            for w, d in recent.items():
                if age < w:
                    d[i] = d.get(i, 0) + 1
    items = np.fromiter(count, np.int64, len(count))
    feats = np.array([[np.log1p(count[i]), count[i] / n, recent[1].get(i, 0), recent[3].get(i, 0) / 3,
                       recent[6].get(i, 0) / 6, np.log1p(n - 1 - last[i]), np.log1p(n - 1 - first[i]), log_pop[i],
                       np.log1p(n)] for i in items], np.float32).reshape(-1, len(FEATURES))
    return items, feats


class LearnedRepeat(RepeatRecency):
    """Logistic regression re-ranking of the user's history, then popularity (RepeatRecency's fallback)."""

    name = "learned_repeat"

    def fit(self, seqs: SequenceData, upto: np.ndarray) -> "LearnedRepeat":
        # scikit-learn takes seconds to import; only this learned peer needs it
        from sklearn.linear_model import LogisticRegression

        super().fit(seqs, upto)  # self.pop: the popularity fallback, far below any history score
        self.seqs = seqs
        self.log_pop = np.log1p(seqs.item_counts(upto))
        xs, ys = [], []
        for u in range(seqs.n_users):
            b = seqs.baskets[u]
            for t in range(2, int(upto[u])):
                items, feats = pair_features(b[:t], self.log_pop)
                xs.append(feats)
                ys.append(np.isin(items, b[t]))
        self.model = LogisticRegression(max_iter=2000).fit(np.concatenate(xs), np.concatenate(ys))
        self.cum = [np.cumsum([len(x) for x in seqs.baskets[u]]) for u in range(seqs.n_users)]
        return self

    def score(self, users: np.ndarray, histories) -> np.ndarray:
        out = np.tile(self.pop, (len(users), 1))
        for r, (u, hist) in enumerate(zip(users, histories)):
            if not len(hist):
                continue
            n_baskets = int(np.searchsorted(self.cum[int(u)], len(hist))) + 1  # history = whole baskets [0, n)
            items, feats = pair_features(self.seqs.baskets[int(u)][:n_baskets], self.log_pop)
            out[r, items] += 1.0 + self.model.predict_proba(feats)[:, 1]
        out[:, PAD] = NEG
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default="../shared/data/lastfm-2k")
    parser.add_argument("--out", default="bench/results/lastfm_next_headroom.json")
    args = parser.parse_args()
    t0 = time.time()
    seqs = from_dataset(load_dataset("lastfm-2k", args.path))
    split = leave_last_out(seqs)
    ev = Evaluator(seqs, split, exclude_seen=False)
    out: dict = {"dataset": "lastfm-2k", "users": int(len(split.test_users)), "items": seqs.n_items, "hr@10": {}}
    for stage in ("val", "test"):
        hists, targets, _ = ev.cases(stage)
        out["hr@10"][f"repeat_oracle_{stage}"] = round(float(np.mean([np.isin(t, h).any()
                                                                       for h, t in zip(hists, targets)])), 4)
    best = max((RepeatRecency(d).fit(seqs, split.train_upto) for d in (0.5, 0.8, 0.95, 1.0)),
               key=lambda m: ev.evaluate(m, "val")["hr@10"])
    out["repeat_recency_decay"] = best.decay
    learned = LearnedRepeat().fit(seqs, split.train_upto)
    out["learned_repeat_coefficients"] = {f: round(float(c), 3) for f, c in zip(FEATURES, learned.model.coef_[0])}
    for stage in ("val", "test"):
        out["hr@10"][f"repeat_recency_{stage}"] = ev.evaluate(best, stage)["hr@10"]
        out["hr@10"][f"learned_repeat_{stage}"] = ev.evaluate(learned, stage)["hr@10"]
    out["bar_1.1x_test"] = round(1.1 * out["hr@10"]["repeat_recency_test"], 4)
    out["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
