"""Metrics and baselines side by side: precision/recall/F1@k, BLEU-1..4, most-frequent and kNN tag transfer.

Every method honours one interface, ``predict_grids(grids, k) -> [[(tag, score), …] per image]``, so
evaluation never special-cases the model (implicit's lesson). Ground truth is each test image's full tag
list, including tags the model's vocabulary dropped as too rare: the model is not excused from them.

* P@k = |top-k ∩ gold| / k, R@k = |top-k ∩ gold| / |gold|, F1@k = their harmonic mean per image;
  all three averaged over images (an image with no correct tag counts as 0).
* BLEU-n (nltk ``corpus_bleu``, smoothing method 1): the top-5 tag list against the gold tag sequence
  (category tags first, then caption words), i.e. how well the order of a written hashtag line matches.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np

from core.encoders import l2_normalize
from core.evaluation import per_query, ranked_relevance, summarize_row
from core.search import VectorIndex

log = logging.getLogger(__name__)

KS = (1, 3, 5)
Prediction = list[tuple[str, float]]


class Tagger(Protocol):
    """What every hashtag method offers: ranked (tag, score) lists for encoder grids."""

    name: str

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[Prediction]: ...


# ----------------------------------------------------------------------------------------------
# metrics


def prf_at_k(predicted: Sequence[str], gold: Sequence[str], k: int) -> tuple[float, float, float]:
    """(precision@k, recall@k, F1@k) of one ranked list against one gold set (``core.metrics`` definitions)."""
    v = tag_metrics([list(predicted)], [gold], [f"precision@{k}", f"recall@{k}", f"f1@{k}"])
    return tuple(float(x[0]) for x in v.values())  # type: ignore[return-value]


def tag_metrics(tags: Sequence[Sequence[str]], gold: Sequence[Iterable[str]], names: Sequence[str]
                ) -> dict[str, np.ndarray]:
    """Per image: the named ``core.evaluation`` metrics of ranked tag lists against gold tag sets."""
    depth = max([int(n.rsplit("@", 1)[1]) for n in names if "@" in n] or [1])
    ranked = ranked_relevance(tags, gold, depth)
    return per_query(ranked, [len(set(g)) for g in gold], names)


def bleu_scores(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 of tag sequences (nltk; smoothing method 1 so short lists do not score 0)."""
    # nltk (about 1,700 modules with scipy and sklearn) loads only to score BLEU, not when the app imports the tab
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    if not gold:  # an empty split (tiny custom datasets): nothing to score, not a crash
        return {f"bleu{n}": 0.0 for n in (1, 2, 3, 4)}
    refs = [[list(g)] for g in gold]
    hyps = [list(p) if p else ["<none>"] for p in predicted]
    smooth = SmoothingFunction().method1
    weights = {1: (1, 0, 0, 0), 2: (0.5, 0.5, 0, 0), 3: (1 / 3, 1 / 3, 1 / 3, 0), 4: (0.25, 0.25, 0.25, 0.25)}
    return {f"bleu{n}": float(corpus_bleu(refs, hyps, weights=w, smoothing_function=smooth)) for n, w in weights.items()}


def score_predictions(predictions: Sequence[Prediction], gold: Sequence[Sequence[str]], bleu_k: int = 5
                      ) -> dict[str, float]:
    """All metrics for one method: ``precision@k``, ``recall@k``, ``f1@k`` (k = 1, 3, 5), ``bleu1..4``."""
    tags = [[t for t, _ in p] for p in predictions]
    names = [f"{m}@{k}" for k in KS for m in ("precision", "recall", "f1")]
    values = tag_metrics(tags, gold, names)
    out: dict[str, float] = {name: float(v.mean()) if len(gold) else 0.0 for name, v in values.items()}
    out.update(bleu_scores([p[:bleu_k] for p in tags], gold))
    out["images"] = len(gold)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# baselines


class MostFrequent:
    """Always the training split's most frequent tags, scored by the share of training images carrying them."""

    name = "most_frequent"

    def __init__(self, train_tags: Sequence[Sequence[str]]) -> None:
        counts = Counter(t for tags in train_tags for t in set(tags))
        n = max(1, len(train_tags))
        self.ranked = [(t, c / n) for t, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[Prediction]:
        return [list(self.ranked[:k]) for _ in range(len(grids))]


def pool_grids(grids: np.ndarray, pooling: str = "max") -> np.ndarray:
    """Global max/mean pool of (N,C,h,w) grids → L2-normalised (N,C), like ``ImageEncoder.encode``."""
    g = np.asarray(grids, dtype=np.float32)
    return l2_normalize(g.max(axis=(2, 3)) if pooling == "max" else g.mean(axis=(2, 3)))


class KnnTransfer:
    """kNN tag transfer: the tags of the ``neighbours`` most similar training images, votes weighted by cosine."""

    name = "knn"

    def __init__(self, train_grids: np.ndarray, train_tags: Sequence[Sequence[str]], ids: Sequence[str], *,
                 neighbours: int = 10, pooling: str = "max") -> None:
        self.pooling = pooling
        self.neighbours = neighbours
        self.tags = [list(t) for t in train_tags]
        self.index = VectorIndex(pool_grids(train_grids, pooling), list(ids))

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[Prediction]:
        rows, sims = self.index.search(pool_grids(grids, self.pooling), self.neighbours)
        out = []
        for row_ids, row_sims in zip(rows, sims):
            votes: Counter = Counter()
            first: dict[str, int] = {}
            total = 0.0
            for rank, (r, s) in enumerate(zip(row_ids, row_sims)):
                if r < 0:
                    break
                w = max(float(s), 0.0)
                total += w
                for t in self.tags[r]:
                    votes[t] += w
                    first.setdefault(t, rank * 100 + self.tags[r].index(t))
            ranked = sorted(votes, key=lambda t: (-votes[t], first[t]))[:k]
            out.append([(t, votes[t] / total if total else 0.0) for t in ranked])
        return out


def tune_knn(train_grids: np.ndarray, train_tags, ids, val_grids: np.ndarray, val_tags,
             candidates: Sequence[int] = (1, 3, 5, 10, 20)) -> KnnTransfer:
    """Pick the number of neighbours on the validation split (never on test): a fair, tuned baseline."""
    best, best_f1 = None, -1.0
    for n in candidates:
        knn = KnnTransfer(train_grids, train_tags, ids, neighbours=n)
        f1 = score_predictions(knn.predict_grids(val_grids, 5), val_tags)["f1@5"] if len(val_grids) else 0.0
        log.info("knn neighbours=%d val f1@5=%.4f", n, f1)
        if f1 > best_f1:
            best, best_f1 = knn, f1
    assert best is not None
    return best


class TagRanker:
    """A ``Tagger`` as a ``core.evaluation.Ranker``: queries are encoder grids, items are tags.

    ``core.evaluation.evaluate([TagRanker(m) for m in methods], Split(grids, gold), HEADLINE)`` is the one
    table of every method on the same images.
    """

    def __init__(self, tagger: Tagger) -> None:
        self.tagger, self.name = tagger, tagger.name

    def rank(self, queries: np.ndarray, k: int) -> list[list[str]]:
        return [[t for t, _ in p] for p in self.tagger.predict_grids(queries, k)]


# ----------------------------------------------------------------------------------------------
# headline metrics with intervals (Tux Paint test and the real-photo set)

HEADLINE = ("precision@5", "recall@5", "f1@5", "hit@1")


def per_image_scores(predictions: Sequence[Prediction], gold: Sequence[Sequence[str]], k: int = 5
                     ) -> dict[str, np.ndarray]:
    """Per image: precision@k, recall@k, F1@k and hit@1 (the top tag is one of the gold tags)."""
    tags = [[t for t, _ in p] for p in predictions]
    return tag_metrics(tags, gold, [f"precision@{k}", f"recall@{k}", f"f1@{k}", "hit@1"])


def headline_scores(predictions: Sequence[Prediction], gold: Sequence[Sequence[str]]) -> dict[str, object]:
    """``HEADLINE`` means with 95 % bootstrap intervals over images (``ci95``), flagged when the set is small."""
    row = summarize_row(per_image_scores(predictions, gold, 5))
    return {**{name: round(s.mean, 4) if len(gold) else 0.0 for name, s in row.metrics.items()},
            "ci95": {name: [round(v, 4) for v in s.ci95] for name, s in row.metrics.items()},
            "images": len(gold), "small_set": row.small_set}


#: The judged metrics: against every tag a person would plausibly post for the photo, not only its gold tags.
JUDGED = ("precision@5_acceptable", "hit@1_acceptable")


def judged_scores(predictions: Sequence[Prediction], acceptable: Sequence[Optional[Sequence[str]]]
                  ) -> dict[str, object]:
    """``JUDGED`` means with 95 % bootstrap intervals over the photos that have a judged tag list.

    Gold tags are what one person wrote; many other tags are fine too (#fruit for an apple whose gold says
    #apple #red …), so the gold P@5 understates what a user sees. ``acceptable[i]`` is photo i's judged list
    (a superset of its gold tags) or ``None`` when nobody judged it: such photos are skipped, and
    ``images_acceptable`` says how many counted.
    """
    pairs = [([t for t, _ in p], a) for p, a in zip(predictions, acceptable) if a is not None]
    out: dict[str, object] = {"images_acceptable": len(pairs)}
    if not pairs:
        return {**out, **{name: None for name in JUDGED}, "ci95": {name: [None, None] for name in JUDGED}}
    values = tag_metrics([p for p, _ in pairs], [a for _, a in pairs], ["precision@5", "hit@1"])
    row = summarize_row(dict(zip(JUDGED, values.values())))
    return {**out, **{name: round(s.mean, 4) for name, s in row.metrics.items()},
            "ci95": {name: [round(v, 4) for v in s.ci95] for name, s in row.metrics.items()}}


def candidate_ceiling(candidates: Sequence[Sequence[str]], acceptable: Sequence[Optional[Sequence[str]]]
                      ) -> dict[str, object]:
    """The best judged precision@5 any ranking of ``candidates`` could reach: per photo, min(5, acceptable
    candidates) / 5, with a 95 % bootstrap interval over the judged photos.

    What fusion and ranking can do is bounded by what the two taggers propose at all; when this ceiling is below
    a target, no rule over these candidates meets it and new candidates (another vocabulary) are needed.
    """
    values = np.array([min(5, len(set(c) & set(a))) / 5 for c, a in zip(candidates, acceptable) if a is not None])
    if not len(values):
        return {"precision@5_acceptable": None, "images_acceptable": 0}
    s = summarize_row({"precision@5_acceptable": values}).metrics["precision@5_acceptable"]
    return {"precision@5_acceptable": round(s.mean, 4), "images_acceptable": len(values),
            "ci95": {"precision@5_acceptable": [round(v, 4) for v in s.ci95]}}
