"""``core.evaluation``: the one evaluation function, its table shapes, the results writer and the chart frame."""

from __future__ import annotations

import json
import re
from datetime import datetime

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_precision,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

from core.evaluation import ScoreRanker, Split, chart_frame, evaluate, interval_frame, ranked_relevance, write_result
from tests.core.ranking_fixture import RELEVANT, SCORES

SPLIT = Split(np.arange(3), [set(np.nonzero(r)[0].tolist()) for r in RELEVANT])


def test_evaluate_matches_torchmetrics_and_sklearn_per_query() -> None:
    table = evaluate([ScoreRanker("a", SCORES)], SPLIT, ["precision@3", "recall@3", "ndcg@3", "hit@3", "mrr"], k=8)
    row = table["a"].metrics
    for q in (0, 2):
        p, t = torch.tensor(SCORES[q]), torch.tensor(RELEVANT[q])
        assert row["precision@3"].values[q] == pytest.approx(float(retrieval_precision(p, t, top_k=3)))
        assert row["recall@3"].values[q] == pytest.approx(float(retrieval_recall(p, t, top_k=3)))
        assert row["hit@3"].values[q] == pytest.approx(float(retrieval_hit_rate(p, t, top_k=3)))
        assert row["mrr"].values[q] == pytest.approx(float(retrieval_reciprocal_rank(p, t)))
        assert row["ndcg@3"].values[q] == pytest.approx(ndcg_score(RELEVANT[q : q + 1], SCORES[q : q + 1], k=3))
    assert all(s.values[1] == 0 for s in row.values())  # no relevant item: every metric scores 0
    assert row["precision@3"].mean == pytest.approx(row["precision@3"].values.mean())


def test_every_model_is_scored_on_the_same_queries_and_a_better_ranking_wins() -> None:
    reverse = ScoreRanker("reverse", -SCORES)
    table = evaluate([ScoreRanker("a", SCORES), reverse], SPLIT, ["precision@1", "ndcg@5"])
    assert list(table) == ["a", "reverse"]
    assert table["a"].queries == table["reverse"].queries == 3
    # query 0: best item 0 is relevant; reversed, the top item 7 is relevant too; query 2: 2 vs 3, both relevant
    assert table["a"].metrics["precision@1"].mean == pytest.approx(2 / 3)


def test_rankings_of_any_item_ids_and_short_lists() -> None:
    class Tags:
        name = "tags"

        def rank(self, queries, k):
            return [["#cat", "#cat", "#dog"], ["#sun"]][: len(queries)]

    split = Split(["img1", "img2"], [{"#cat", "#dog"}, {"#moon"}])
    row = evaluate([Tags()], split, ["precision@3", "recall@3", "f1@3", "hit@1"])["tags"].metrics
    # a repeated tag counts once; a list shorter than k leaves misses
    assert ranked_relevance([["#cat", "#cat", "#dog"]], [{"#cat", "#dog"}], 3).tolist() == [[True, False, True]]
    assert row["precision@3"].values.tolist() == pytest.approx([2 / 3, 0.0])
    assert row["recall@3"].values.tolist() == pytest.approx([1.0, 0.0])
    assert row["f1@3"].values[0] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert row["hit@1"].values.tolist() == [1.0, 0.0]


def test_intervals_bracket_the_mean_and_groups_resample_units() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((60, 20))
    relevant = [set(rng.choice(20, 4, replace=False).tolist()) for _ in range(60)]
    plain = evaluate([ScoreRanker("m", scores)], Split(np.arange(60), relevant), ["precision@5"])["m"]
    s = plain.metrics["precision@5"]
    assert s.ci95[0] <= s.mean <= s.ci95[1] and s.ci95[0] < s.ci95[1]
    assert plain.n == 60 and plain.small_set
    grouped = evaluate([ScoreRanker("m", scores)], Split(np.arange(60), relevant, groups=np.arange(60) // 3),
                       ["precision@5"])["m"]
    assert grouped.n == 20 and grouped.queries == 60
    assert grouped.metrics["precision@5"].mean == pytest.approx(s.mean)  # the mean stays over queries
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate([ScoreRanker("m", scores)], Split(np.arange(60), relevant), ["bleu@5"])


def test_row_shapes_are_the_result_files_shapes() -> None:
    row = evaluate([ScoreRanker("a", SCORES)], SPLIT, ["precision@1", "ndcg@3"])["a"]
    nested = row.nested(digits=4)
    assert list(nested) == ["precision@1", "ndcg@3", "queries", "n", "ci95", "small_set"]
    assert set(nested["ci95"]) == {"precision@1", "ndcg@3"} and nested["n"] == 3
    flat = row.flat()
    assert set(flat) == {"precision@1", "ndcg@3", "precision@1_ci95", "ndcg@3_ci95"}
    assert flat["precision@1"] == row.metrics["precision@1"].mean


def test_write_result_records_commit_date_machine_and_seeds(tmp_path) -> None:
    path = write_result("some_evaluation", {"methods": {"a": {"ndcg@10": 0.5}}}, seeds={"split": 13},
                        results_dir=tmp_path)
    assert path == tmp_path / "some_evaluation.json"
    data = json.loads(path.read_text())
    assert data["methods"] == {"a": {"ndcg@10": 0.5}}
    run = data["run"]
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", run["git_commit"])
    assert datetime.fromisoformat(run["date"]).tzinfo is not None
    assert run["machine"]["cpus"] >= 1 and run["machine"]["python"]
    assert run["seeds"] == {"split": 13}
    with pytest.raises(ValueError):
        write_result("../escape", {}, results_dir=tmp_path)


def test_chart_frames_skip_failed_rows_and_read_both_interval_shapes() -> None:
    methods = {"mf": {"ndcg@10": 0.3, "hr@10": 0.5, "ndcg@10_ci95": [0.2, 0.4]},
               "peer": {"error": "not installed"},
               "model": {"ndcg@10": 0.4, "ci95": {"ndcg@10": [0.35, 0.45]}}}
    frame = chart_frame(methods, ["ndcg@10", "hr@10", "coverage"])
    assert list(frame.index) == ["mf", "model"] and list(frame.columns) == ["ndcg@10", "hr@10"]
    bars = interval_frame(methods, "ndcg@10")
    assert bars.loc["mf"].tolist() == [0.3, 0.2, 0.4] and bars.loc["model"].tolist() == [0.4, 0.35, 0.45]


def test_relevant_items_that_cannot_be_ranked_still_count_and_intervals_can_be_skipped() -> None:
    # query 0 has 2 rankable relevant items and 2 more no model can rank (an item only the test period has)
    split = Split(np.arange(1), [{0, 2}], n_relevant=[4])
    row = evaluate([ScoreRanker("a", SCORES[:1])], split, ["recall@3", "ndcg@3"], n_boot=0)["a"].metrics
    assert row["recall@3"].values[0] == pytest.approx(2 / 4)  # items 0 and 2 found, of 4 relevant
    ideal = sum(1 / np.log2(r + 1) for r in (1, 2, 3))  # min(3, 4) hits at the top
    assert row["ndcg@3"].values[0] == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    assert np.isnan(row["recall@3"].ci95).all()  # n_boot=0: means only, for validation loops
