"""The Fashion and product-search evaluations score rankings with the standard metric definitions.

Worked examples go through the evaluation modules' own code (Fashion's class split and metrics handed to
``core.evaluation.evaluate``, ``multimodal.evaluate.rank_metrics``), and are cross-checked against torchmetrics and scikit-learn, so a
return to "MAP divided by the hits found" or "recall divided by min(k, relevant)" fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from torchmetrics.functional.retrieval import retrieval_precision, retrieval_recall, retrieval_reciprocal_rank

from core.evaluation import evaluate
from fashion.evaluate import METRICS, class_split
from multimodal.evaluate import rank_metrics

# ---------------------------------------------------------------------------------------------
# fashion: ranked labels of the catalog items each query retrieved


class _Retrieved:
    """A method that retrieved catalog rows 10q .. 10q+9 for query q, best first."""

    name = "fixed"

    def rank(self, queries, k):
        return [list(range(10 * q, 10 * q + k)) for q in queries]


def class_metrics(ranked: np.ndarray, query_labels: np.ndarray, n_relevant: np.ndarray, k: int = 10):
    """Per-query Fashion metrics of ranked catalog labels, through the tab's own split and metric list.

    The catalog is the retrieved rows, followed by enough items of each query's class to make ``n_relevant``.
    """
    catalog = list(np.asarray(ranked).ravel())
    for label, n in zip(query_labels, n_relevant):
        catalog += [label] * max(0, int(n) - catalog.count(label))
    table = evaluate([_Retrieved()], class_split(np.asarray(catalog), np.asarray(query_labels), "fixture"),
                     METRICS, k=k)
    return table["fixed"]


def summarize_methods(row):
    return row.nested()


def test_fashion_map_divides_by_min_k_and_relevant_not_by_hits_found():
    # one query of class "a"; the catalog has 50 items of class "a"; the top 10 holds three of them at ranks 1, 2, 5
    ranked = np.array([["a", "a", "b", "b", "a", "b", "b", "b", "b", "b"]])
    out = {m: s.values for m, s in class_metrics(ranked, np.array(["a"]), np.array([50]), k=10).metrics.items()}
    assert out["precision@1"][0] == 1.0
    assert out["precision@10"][0] == pytest.approx(0.3)
    expected_ap = (1 / 1 + 2 / 2 + 3 / 5) / 10  # divided by min(10, 50); by the hits found it would be 0.867
    assert out["map@10"][0] == pytest.approx(expected_ap)
    rel = (ranked[0] == "a").astype(int)
    scores = np.linspace(1, 0.1, 10)
    # NDCG@10 against sklearn: the ideal list has 10 relevant items, as 50 exist
    ideal = np.r_[rel, np.ones(40)]  # the 40 relevant items outside the top 10 ranked below it
    assert out["ndcg@10"][0] == pytest.approx(ndcg_score(ideal[None], np.r_[scores, np.linspace(0.09, 0.0, 40)][None], k=10))


def test_fashion_metrics_with_few_relevant_items_reach_one_when_all_are_found():
    # a class with only 2 catalog items, both ranked first: AP@10 and NDCG@10 are 1, precision@10 only 0.2
    ranked = np.array([["x", "x", "y", "y", "y", "y", "y", "y", "y", "y"]])
    out = {m: s.values for m, s in class_metrics(ranked, np.array(["x"]), np.array([2]), k=10).metrics.items()}
    assert out["map@10"][0] == pytest.approx(1.0)
    assert out["ndcg@10"][0] == pytest.approx(1.0)
    assert out["precision@10"][0] == pytest.approx(0.2)


def test_fashion_summary_has_intervals_and_flags_small_sets():
    rng = np.random.default_rng(0)
    labels = np.array(list("ab"))[rng.integers(0, 2, (13, 10))]
    out = summarize_methods(class_metrics(labels, np.array(["a"] * 13), np.full(13, 100), k=10))
    assert out["queries"] == out["n"] == 13 and out["small_set"] is True
    for name in ("precision@1", "precision@10", "map@10", "ndcg@10"):
        lo, hi = out["ci95"][name]
        assert lo <= out[name] <= hi
    big = summarize_methods(class_metrics(np.array(list("ab"))[rng.integers(0, 2, (400, 10))],
                                          np.array(["a"] * 400), np.full(400, 100), k=10))
    assert "small_set" not in big and big["queries"] == 400


# ---------------------------------------------------------------------------------------------
# product search: a score matrix and a relevance matrix

SCORES = np.array([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0],
    [0.0, 0.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.12],
])
# query 0: a large category (8 relevant of 12; more than k = 5); query 1: one relevant item, ranked 3rd
RELEVANT = np.array([
    [1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
], dtype=bool)


def test_product_search_recall_is_hits_over_all_relevant():
    out = rank_metrics(SCORES, RELEVANT, ks=(1, 5, 10), intervals=False)
    # query 0: top 5 = items 0..4 → 3 relevant; recall@5 = 3/8 (the old definition, 3/min(5, 8), was precision)
    # query 1: its one relevant item is ranked 3rd → recall@5 = 1, precision@5 = 1/5, reciprocal rank 1/3
    assert out["recall@5"] == pytest.approx((3 / 8 + 1) / 2)
    assert out["precision@5"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    for q in range(2):
        p, t = torch.tensor(SCORES[q]), torch.tensor(RELEVANT[q])
        one = rank_metrics(SCORES[q : q + 1], RELEVANT[q : q + 1], ks=(1, 5, 10), intervals=False)
        for k in (1, 5, 10):
            assert one[f"recall@{k}"] == pytest.approx(float(retrieval_recall(p, t, top_k=k)))
            assert one[f"precision@{k}"] == pytest.approx(float(retrieval_precision(p, t, top_k=k)))
        assert one["mrr"] == pytest.approx(float(retrieval_reciprocal_rank(p, t)))
        assert one["ndcg@10"] == pytest.approx(ndcg_score(RELEVANT[q : q + 1], SCORES[q : q + 1], k=10))


def test_product_search_drops_queries_without_relevant_items_and_resamples_products():
    scores = np.vstack([SCORES, SCORES[:1]])
    relevant = np.vstack([RELEVANT, np.zeros((1, 12), bool)])
    assert rank_metrics(scores, relevant, intervals=False)["queries"] == 2
    # three views of each of 2 products: 6 queries, but the interval resamples 2 units
    views = rank_metrics(np.vstack([SCORES] * 3), np.vstack([RELEVANT] * 3), groups=[0, 1] * 3)
    assert views["queries"] == 6 and views["n"] == 2 and views["small_set"] is True
    lo, hi = views["ci95"]["recall@10"]
    assert lo <= views["recall@10"] <= hi


# ---------------------------------------------------------------------------------------------
# the app's default fusion weight is the evaluated one


def test_default_alpha_is_read_from_the_evaluation(models_dir, tmp_path, monkeypatch):
    import json

    from core.artifacts import write_json
    from multimodal import service
    from multimodal.model import DEFAULT_ALPHA, index_dir

    monkeypatch.setattr(service, "RESULTS_DIR", tmp_path)
    assert service.chosen_alpha("alphacheck") == DEFAULT_ALPHA  # never evaluated
    (tmp_path / "multimodal_evaluate.json").write_text(json.dumps({"catalog": "alphacheck", "fusion": {"alpha": 0.3}}))
    assert service.chosen_alpha("alphacheck") == 0.3  # the committed result of the default protocol
    assert service.chosen_alpha("othercatalog") == DEFAULT_ALPHA  # made for another catalog: not used
    write_json(index_dir() / "alphacheck-evaluation.json", {"details": {"fusion": {"alpha": 0.7}}})
    assert service.chosen_alpha("alphacheck") == 0.7  # this index's own evaluation wins
