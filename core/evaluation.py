"""Evaluation as one function over models: ``evaluate(models, split, metrics) -> table``.

Why one function: every tab compares its model with baselines on one held-out split, and a reader should
meet the same three steps in each (as ``evaluate(models, data, metrics)`` in RecBole or Cornac):

1. each model ranks the split's queries (anything with a ``name`` and ``rank(queries, k)``: ``Ranker``);
2. every metric is computed per query, with the definitions of ``core.metrics`` (cross-checked against
   torchmetrics and scikit-learn in ``tests/test_core_metrics.py``);
3. each model × metric gets its mean and a 95 % percentile bootstrap interval over queries, or over larger
   units when several queries come from one thing (a product's picture, mirror and crop are one draw).

Evaluations whose ranking is special (rank of a target among the whole catalog, a fold-in solve per
listener) compute the per-query values themselves and hand them to ``summarize_table``: the same step 3.
``Row.nested`` and ``Row.flat`` give the two JSON shapes the result files use, ``write_result`` writes
them under ``bench/results/`` with the run's metadata, and ``chart_frame`` turns a table into the
method × metric frame the tabs chart.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np
import pandas as pd

from core import metrics as definitions  # the metric definitions; ``metrics`` names a list of them here
from core.metrics import RESULTS_DIR, SMALL_SET, write_result

__all__ = ["Ranker", "Split", "Summary", "Row", "ScoreRanker", "evaluate", "per_query", "ranked_relevance",
           "summarize_table", "summarize_row", "chart_frame", "interval_frame", "write_result", "RESULTS_DIR",
           "SMALL_SET"]


class Ranker(Protocol):
    """What every evaluated model offers: for each query, its items best first (at least ``k`` where it can)."""

    name: str

    def rank(self, queries: Any, k: int) -> Sequence[Sequence[Hashable]]: ...


@dataclass
class Split:
    """The held-out side of one split: what the models receive, what is relevant, and the bootstrap unit.

    ``queries`` is passed to ``Ranker.rank`` as it is (row indices, images, user ids, ...); ``relevant[i]``
    is the set of items that count as hits for query ``i`` (or, for models that rank gallery columns, one
    (queries × gallery) boolean matrix); ``groups[i]`` (optional) names the unit the
    interval resamples (queries sharing a group are one draw); ``n_relevant[i]`` (optional) counts query i's
    relevant items where some cannot be ranked at all (an item only the test period has): recall and NDCG
    divide by it, and it defaults to the size of ``relevant[i]``; ``name`` appears in logs and result files.
    """

    queries: Any
    relevant: Sequence[Iterable[Hashable]]
    groups: Optional[Sequence[Hashable]] = None
    name: str = "test"
    n_relevant: Optional[Sequence[int]] = None


@dataclass
class ScoreRanker:
    """A model given as a precomputed (queries × gallery) score matrix; ranks are gallery column numbers.

    Ties keep gallery order (a stable sort), the same for every method; ``queries`` are row numbers.
    """

    name: str
    scores: np.ndarray

    def rank(self, queries: Any, k: int) -> np.ndarray:
        rows = np.asarray(self.scores)[np.asarray(queries)]
        return np.argsort(-rows, axis=1, kind="stable")[:, :k]


# ----------------------------------------------------------------------------------------------
# per-query values


_METRIC = re.compile(r"^(precision|recall|map|ndcg|hit|hr|f1)@(\d+)$")


def _metric_values(name: str, ranked: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Per-query values of one named metric (``precision@10``, ``map@10``, ``hr@10``, ``mrr``, ...)."""
    if name == "mrr":
        return definitions.reciprocal_rank(ranked)
    m = _METRIC.match(name)
    if not m:
        raise ValueError(f"unknown metric {name!r}: use precision@k, recall@k, f1@k, map@k, ndcg@k, hit@k, "
                         "hr@k or mrr")
    kind, k = m.group(1), int(m.group(2))
    if ranked.shape[1] < k:  # a model that returned fewer than k items: the missing ranks are misses
        ranked = np.pad(ranked, ((0, 0), (0, k - ranked.shape[1])))
    if kind == "precision":
        return definitions.precision_at_k(ranked, k)
    if kind == "recall":
        return definitions.recall_at_k(ranked, n_relevant, k)
    if kind == "f1":
        return definitions.f1_at_k(ranked, n_relevant, k)
    if kind == "map":
        return definitions.average_precision_at_k(ranked, n_relevant, k)
    if kind == "ndcg":
        return definitions.ndcg_at_k(ranked, n_relevant, k)
    return definitions.hit_at_k(ranked, k)


def per_query(ranked: np.ndarray, n_relevant: Sequence[int] | np.ndarray, names: Sequence[str]
              ) -> dict[str, np.ndarray]:
    """``{metric: one value per query}`` from a (queries × ranks) relevance matrix and each query's relevant count."""
    hits = np.asarray(ranked, dtype=bool)
    n_rel = np.asarray(n_relevant)
    return {name: _metric_values(name, hits, n_rel) for name in names}


def _as_set(items: Iterable[Hashable]) -> AbstractSet[Hashable]:
    """``items`` as a set; a ``collections.abc.Set`` (a class's members, counted without listing) stays as it is."""
    return items if isinstance(items, AbstractSet) else set(items)


def ranked_relevance(rankings: Sequence[Sequence[Hashable]], relevant: Sequence[Iterable[Hashable]], depth: int
                     ) -> np.ndarray:
    """(queries × ``depth``) booleans: is the item at each rank relevant? A repeated item counts once."""
    out = np.zeros((len(rankings), depth), dtype=bool)
    for q, (ranking, rel) in enumerate(zip(rankings, relevant)):
        rel_set, seen = _as_set(rel), set()
        for r, item in enumerate(list(ranking)[:depth]):
            out[q, r] = item in rel_set and item not in seen
            seen.add(item)
    return out


# ----------------------------------------------------------------------------------------------
# means with intervals


@dataclass
class Summary:
    """One model × metric: the mean over queries, its 95 % interval, the number of resampled units."""

    mean: float
    ci95: list[float]
    n: int
    values: np.ndarray = field(repr=False)


@dataclass
class Row:
    """One model's metrics; ``queries`` counts queries, ``Summary.n`` the resampled units (equal without groups)."""

    metrics: dict[str, Summary]
    queries: int

    @property
    def n(self) -> int:
        return next(iter(self.metrics.values())).n if self.metrics else 0

    @property
    def small_set(self) -> bool:
        return self.n < SMALL_SET

    def nested(self, digits: Optional[int] = None) -> dict[str, Any]:
        """``{metric: mean, ..., "queries", "n", "ci95": {metric: [lo, hi]}}``, ``small_set`` when flagged."""
        out: dict[str, Any] = {k: _round(s.mean, digits) for k, s in self.metrics.items()}
        out["queries"] = self.queries
        out["n"] = self.n
        out["ci95"] = {k: [_round(v, digits) for v in s.ci95] for k, s in self.metrics.items()}
        if self.small_set:
            out["small_set"] = True
        return out

    def flat(self, digits: Optional[int] = None) -> dict[str, Any]:
        """``{metric: mean, ..., "<metric>_ci95": [lo, hi], ...}`` (the shape of the music result files)."""
        out: dict[str, Any] = {k: _round(s.mean, digits) for k, s in self.metrics.items()}
        out.update({f"{k}_ci95": [_round(v, digits) for v in s.ci95] for k, s in self.metrics.items()})
        return out


def _round(x: float, digits: Optional[int]) -> float:
    return float(x) if digits is None else round(float(x), digits)


def summarize_row(values: Mapping[str, np.ndarray], *, groups: Optional[Sequence[Hashable]] = None,
                  n_boot: int = 2000, seed: int = 0) -> Row:
    """Means over queries and 95 % bootstrap intervals over units (queries, or ``groups`` of them).

    With groups, each unit's values are averaged first and the units are resampled, so three views of one
    product do not narrow the interval as three independent queries would. The mean is always over queries.
    """
    out: dict[str, Summary] = {}
    n_queries = 0
    unit_of = None
    if groups is not None:
        _, unit_of = np.unique(np.asarray(groups), return_inverse=True)
    for name, v in values.items():
        x = np.asarray(v, dtype=np.float64)
        n_queries = len(x)
        units = x if unit_of is None else np.bincount(unit_of, weights=x) / np.bincount(unit_of)
        ci = definitions.bootstrap_ci(units, n_resamples=n_boot, seed=seed) if n_boot else [float("nan")] * 2
        out[name] = Summary(float(np.mean(x)) if len(x) else float("nan"), ci, int(len(units)), x)
    return Row(out, n_queries)


def summarize_table(per_model: Mapping[str, Mapping[str, np.ndarray]], *,
                    groups: Optional[Sequence[Hashable]] = None, n_boot: int = 2000, seed: int = 0
                    ) -> dict[str, Row]:
    """``summarize_row`` for every model: ``{model: Row}`` (step 3 for evaluations that rank on their own)."""
    return {name: summarize_row(values, groups=groups, n_boot=n_boot, seed=seed)
            for name, values in per_model.items()}


# ----------------------------------------------------------------------------------------------
# the one function


def evaluate(models: Sequence[Ranker], split: Split, metrics: Sequence[str], *, k: Optional[int] = None,
             n_boot: int = 2000, seed: int = 0) -> dict[str, Row]:
    """Every model on the same split and metrics: ``{model name: Row}`` with means and 95 % intervals.

    ``k`` is how deep each model is asked to rank (default: the largest cut-off the metrics name; ``mrr`` reads
    only that deep). ``n_boot=0`` leaves the intervals out (``[nan, nan]``): a validation loop compares means.
    Queries with no relevant item stay in (they score 0), as every tab's protocol states; a protocol that drops
    them builds its ``Split`` without them.
    """
    depth = k or max([int(m.rsplit("@", 1)[1]) for m in metrics if "@" in m] or [10])
    matrix = isinstance(split.relevant, np.ndarray) and split.relevant.ndim == 2
    if split.n_relevant is not None:
        n_rel = np.asarray(split.n_relevant)
    else:
        n_rel = split.relevant.sum(axis=1) if matrix else np.array([len(_as_set(r)) for r in split.relevant])
    per_model = {}
    for model in models:
        rankings = model.rank(split.queries, depth)
        ranked = np.take_along_axis(split.relevant, np.asarray(rankings), axis=1) if matrix else \
            ranked_relevance(rankings, split.relevant, depth)
        per_model[model.name] = per_query(ranked, n_rel, metrics)
    return summarize_table(per_model, groups=split.groups, n_boot=n_boot, seed=seed)


# ----------------------------------------------------------------------------------------------
# charts


def chart_frame(methods: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Method × metric means from a result file's method table, for a bar chart or a table.

    Rows that failed (``{"error": ...}``) and columns no method has are left out; values are floats.
    """
    rows = {name: m for name, m in methods.items() if isinstance(m, Mapping) and "error" not in m}
    frame = pd.DataFrame({name: {c: m.get(c) for c in columns} for name, m in rows.items()}).T
    keep = [c for c in columns if c in frame.columns and frame[c].notna().any()]
    return frame[keep].astype(float)


def interval_frame(methods: Mapping[str, Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """``mean``, ``lo`` and ``hi`` of one metric per method (either JSON shape), for a chart with error bars."""
    out = {}
    for name, m in methods.items():
        if not isinstance(m, Mapping) or metric not in m:
            continue
        ci = (m.get("ci95") or {}).get(metric) if isinstance(m.get("ci95"), Mapping) else None
        lo, hi = ci or m.get(f"{metric}_ci95") or [np.nan, np.nan]
        out[name] = {"mean": float(m[metric]), "lo": float(lo), "hi": float(hi)}
    return pd.DataFrame(out).T

