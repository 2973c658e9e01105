"""Ranking metrics with their standard definitions, bootstrap intervals, and result files.

Why one module: every tab reports precision, recall, MAP, NDCG or hit rate, and a reviewer must be
able to trust that "recall@10" means the same thing in every table. The definitions follow the
usual information-retrieval ones (as in ``trec_eval``, ``ranx`` and ``torchmetrics.retrieval``) and
are cross-checked against a maintained implementation in ``tests/core/test_core_metrics.py``:

- ``precision@k`` = relevant items in the top k / k;
- ``recall@k`` = relevant items in the top k / all relevant items of the query;
- ``average_precision@k`` = Σ_{i ≤ k, item i relevant} precision@i / min(k, |relevant|);
- ``ndcg@k`` = DCG@k / ideal DCG@k with binary gains and log2(rank + 1) discounts;
- ``f1@k`` = the harmonic mean of precision@k and recall@k;
- ``hit@k`` = 1 if any relevant item is in the top k; ``reciprocal rank`` = 1 / rank of the first hit.

Every function takes per-query arrays and returns per-query values, so the same numbers feed both
the mean in a table and its 95 % bootstrap interval (``bootstrap_ci``, resampling queries or users).

Evaluations write their JSON under ``bench/results/`` with ``write_result``; the README's tables are
generated from those files (``scripts/readme_numbers.py``), never copied by hand.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from core.artifacts import write_json

log = logging.getLogger(__name__)

#: Where evaluations and benchmarks write their JSON; committed, small, and read by the README generator.
RESULTS_DIR = Path(os.environ.get("RECS_RESULTS_DIR", Path(__file__).resolve().parent.parent / "bench" / "results"))

#: Below this many queries a headline number is flagged as coming from a small set.
SMALL_SET = 300


# ----------------------------------------------------------------------------------------------
# per-query metrics from a ranked relevance matrix


def _as_hits(ranked_relevance: np.ndarray) -> np.ndarray:
    hits = np.asarray(ranked_relevance)
    if hits.ndim != 2:
        raise ValueError(f"ranked relevance must be (queries, ranks), got shape {hits.shape}")
    return hits.astype(bool)


def precision_at_k(ranked_relevance: np.ndarray, k: int) -> np.ndarray:
    """Per query: relevant items among the first ``k`` ranks, divided by ``k``."""
    hits = _as_hits(ranked_relevance)[:, :k]
    return hits.sum(axis=1) / float(k)


def recall_at_k(ranked_relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: relevant items among the first ``k`` ranks, divided by all relevant items (0 where none)."""
    hits = _as_hits(ranked_relevance)[:, :k]
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    return np.where(n_rel > 0, hits.sum(axis=1) / np.maximum(n_rel, 1), 0.0)


def average_precision_at_k(ranked_relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: Σ precision@i over relevant ranks i ≤ k, divided by min(k, |relevant|) (0 where none)."""
    hits = _as_hits(ranked_relevance)[:, :k].astype(np.float64)
    prec = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    denom = np.minimum(k, np.asarray(n_relevant, dtype=np.float64))
    return np.where(denom > 0, (prec * hits).sum(axis=1) / np.maximum(denom, 1), 0.0)


def ndcg_at_k(ranked_relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: binary-gain DCG@k over the ideal DCG@k of min(k, |relevant|) hits (0 where none)."""
    hits = _as_hits(ranked_relevance)[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_n = np.minimum(k, np.asarray(n_relevant, dtype=np.int64))
    ideal_table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_table[ideal_n]
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def f1_at_k(ranked_relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: the harmonic mean of precision@k and recall@k (0 where nothing relevant was found)."""
    p, r = precision_at_k(ranked_relevance, k), recall_at_k(ranked_relevance, n_relevant, k)
    return np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)


def hit_at_k(ranked_relevance: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1.0 if any of the first ``k`` ranks is relevant."""
    return _as_hits(ranked_relevance)[:, :k].any(axis=1).astype(np.float64)


def reciprocal_rank(ranked_relevance: np.ndarray) -> np.ndarray:
    """Per query: 1 / rank of the first relevant item in the ranking given (0 when none is there)."""
    hits = _as_hits(ranked_relevance)
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


# ----------------------------------------------------------------------------------------------
# uncertainty


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[..., Any] = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[float]:
    """95 % (by default) percentile bootstrap interval of ``statistic`` over per-query ``values``.

    Resamples queries (or users) with replacement via ``scipy.stats.bootstrap``; returns ``[lo, hi]``.
    With fewer than two values the interval is the value itself.
    """
    from scipy import stats  # scipy.stats loads in about a second; only interval estimates need it

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2 or np.all(x == x[0]):
        v = float(statistic(x)) if len(x) else float("nan")
        return [v, v]
    res = stats.bootstrap((x,), lambda a, axis=-1: statistic(a, axis=axis), confidence_level=confidence,
                          n_resamples=n_resamples, method="percentile", vectorized=True,
                          random_state=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def ratio_ci(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[float]:
    """Paired bootstrap interval of mean(numerator) / mean(denominator) over the same queries.

    Both arrays hold one value per query for two methods scored on the same queries; resampling
    keeps the pairs together, so the interval reflects the comparison, not two independent noises.
    """
    from scipy import stats  # scipy.stats loads in about a second; only interval estimates need it

    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    if len(a) < 2:
        v = float(a.mean() / b.mean()) if len(a) and b.mean() else float("nan")
        return [v, v]

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        den = np.mean(y, axis=axis)
        return np.mean(x, axis=axis) / np.where(den == 0, np.nan, den)

    res = stats.bootstrap((a, b), ratio, paired=True, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isfinite(lo) and np.isfinite(hi):
        return [lo, hi]
    # Small sets: a few resamples draw no hit at all for the denominator, their ratio is undefined and scipy's
    # percentile turns the whole interval into NaN. The same paired percentile bootstrap over the defined ratios:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_resamples, len(a)))
    ratios = ratio(a[idx], b[idx], axis=1)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return [float("nan"), float("nan")]
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))]


def summarize(values: Sequence[float] | np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """``{"mean", "ci95", "n"}`` for per-query values, with ``"small_set": True`` below ``SMALL_SET`` queries."""
    x = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {"mean": float(np.mean(x)) if len(x) else float("nan"), "ci95": bootstrap_ci(x, seed=seed),
                           "n": int(len(x))}
    if len(x) < SMALL_SET:
        out["small_set"] = True
    return out


# ----------------------------------------------------------------------------------------------
# result files


def run_metadata(seeds: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What made a result: the git commit (``+dirty`` with uncommitted changes), UTC date, machine, seeds.

    A number in the README is only as good as the code that measured it; this lets a reader check out the
    commit and rerun the command on comparable hardware.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count()},
            "seeds": dict(seeds or {})}


def write_result(name: str, obj: Any, *, seeds: Optional[dict[str, Any]] = None,
                 results_dir: Optional[Path] = None) -> Path:
    """Write an evaluation's JSON to ``bench/results/<name>.json`` (atomically) and return the path.

    ``name`` is a plain file stem such as ``"fashion_evaluate"`` or ``"music_evaluate_movielens-100k"``. A dict
    result gains a ``"run"`` key (``run_metadata``: commit, date, machine and the ``seeds`` given); every other
    key is written as it is, so readers of the file keep working.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"result name must be a plain file stem, got {name!r}")
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    path = folder / f"{name}.json"
    if isinstance(obj, dict):
        obj = {**obj, "run": run_metadata(seeds)}
    write_json(path, obj)
    log.info("wrote %s", path)
    return path
