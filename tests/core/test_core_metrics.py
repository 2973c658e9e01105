"""The shared ranking metrics agree with maintained implementations on worked examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_precision,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

from core import metrics
from tests.core.ranking_fixture import RELEVANT, SCORES


def _ranked(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(relevant, order, axis=1)


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_metrics_match_torchmetrics_and_sklearn(k: int) -> None:
    ranked = _ranked(SCORES, RELEVANT)
    n_rel = RELEVANT.sum(axis=1)
    ours = {
        "precision": metrics.precision_at_k(ranked, k),
        "recall": metrics.recall_at_k(ranked, n_rel, k),
        "ndcg": metrics.ndcg_at_k(ranked, n_rel, k),
        "hit": metrics.hit_at_k(ranked, k),
    }
    for q in range(len(SCORES)):
        if n_rel[q] == 0:
            assert ours["recall"][q] == 0 and ours["ndcg"][q] == 0 and ours["hit"][q] == 0
            continue
        p, t = torch.tensor(SCORES[q]), torch.tensor(RELEVANT[q])
        assert ours["precision"][q] == pytest.approx(float(retrieval_precision(p, t, top_k=k)))
        assert ours["recall"][q] == pytest.approx(float(retrieval_recall(p, t, top_k=k)))
        assert ours["ndcg"][q] == pytest.approx(float(retrieval_normalized_dcg(p, t, top_k=k)))
        assert ours["hit"][q] == pytest.approx(float(retrieval_hit_rate(p, t, top_k=k)))
        assert ours["ndcg"][q] == pytest.approx(ndcg_score(RELEVANT[q : q + 1], SCORES[q : q + 1], k=k))


def test_reciprocal_rank_matches_torchmetrics() -> None:
    ranked = _ranked(SCORES, RELEVANT)
    rr = metrics.reciprocal_rank(ranked)
    for q in (0, 2):
        assert rr[q] == pytest.approx(float(retrieval_reciprocal_rank(torch.tensor(SCORES[q]), torch.tensor(RELEVANT[q]))))
    assert rr[1] == 0


def test_average_precision_divides_by_min_k_and_relevant() -> None:
    # query 0 ranks: relevant at ranks 1 and 3 (and 8). AP@5 = (1/1 + 2/3) / min(5, 3)
    ranked = _ranked(SCORES, RELEVANT)
    ap5 = metrics.average_precision_at_k(ranked, RELEVANT.sum(axis=1), 5)
    assert ap5[0] == pytest.approx((1 + 2 / 3) / 3)
    # with k = 8 every relevant item is inside the cut-off: the classic AP (sklearn's, on one query)
    from sklearn.metrics import average_precision_score

    ap8 = metrics.average_precision_at_k(ranked, RELEVANT.sum(axis=1), 8)
    assert ap8[0] == pytest.approx(average_precision_score(RELEVANT[0], SCORES[0]))
    assert ap8[2] == pytest.approx(average_precision_score(RELEVANT[2], SCORES[2]))
    # dividing by the hits found would give 1.0 for a query whose only hit is at rank 1 of 3 relevant
    one_hit = np.array([[1, 0, 0, 0, 0]], dtype=bool)
    assert metrics.average_precision_at_k(one_hit, np.array([3]), 5)[0] == pytest.approx(1 / 3)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(1)
    small = rng.binomial(1, 0.4, 50).astype(float)
    large = rng.binomial(1, 0.4, 5000).astype(float)
    lo_s, hi_s = metrics.bootstrap_ci(small)
    lo_l, hi_l = metrics.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    summary = metrics.summarize(small)
    assert summary["small_set"] is True and summary["n"] == 50


def test_ratio_interval_is_paired() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.8, 400)
    better = base * 1.2  # exactly 1.2x on every query: a paired interval is tight around 1.2
    lo, hi = metrics.ratio_ci(better, base)
    assert lo == pytest.approx(1.2, abs=1e-9) and hi == pytest.approx(1.2, abs=1e-9)


def test_write_result_is_json_in_the_results_folder(tmp_path) -> None:
    path = metrics.write_result("demo_eval", {"model": {"f1@5": 0.5}}, results_dir=tmp_path)
    assert path == tmp_path / "demo_eval.json"
    assert json.loads(path.read_text())["model"]["f1@5"] == 0.5
    with pytest.raises(ValueError):
        metrics.write_result("../escape", {}, results_dir=tmp_path)


def test_ratio_interval_stays_defined_when_some_resamples_have_no_denominator_hit() -> None:
    # 69 users, 7 baseline hits: about one resample in a thousand draws none of them
    base = np.zeros(69)
    base[:7] = 1
    model = np.zeros(69)
    model[3:8] = 1
    lo, hi = metrics.ratio_ci(model, base, n_resamples=5000)
    assert np.isfinite(lo) and np.isfinite(hi) and lo < 5 / 7 < hi
