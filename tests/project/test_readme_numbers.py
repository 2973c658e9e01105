"""The README's number tables are generated from bench/results/*.json, reproducibly."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import readme_numbers  # noqa: E402

FASHION = {"encoder": {}, "results": {
    "model": {"precision@1": 0.9, "precision@10": 0.905, "map@10": 0.88, "ndcg@10": 0.91, "queries": 10000,
              "ci95": {"precision@10": [0.9, 0.91]}},
    "frozen": {"precision@1": 0.86, "precision@10": 0.829, "map@10": 0.8, "ndcg@10": 0.84, "queries": 10000},
    "pixel_knn": {"precision@1": 0.85, "precision@10": 0.813, "map@10": 0.79, "ndcg@10": 0.83, "queries": 10000},
    "photo:catalog_look": {"precision@1": 0.615, "precision@10": 0.638, "map@10": 0.6, "ndcg@10": 0.62,
                           "queries": 13, "small_set": True},
}}
README = """# Title

<!-- numbers:fashion_evaluate -->
old hand-copied table
<!-- /numbers -->

text between

<!-- numbers:not_run_yet -->
kept as it is
<!-- /numbers -->
"""


@pytest.fixture()
def workspace(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "fashion_evaluate.json").write_text(json.dumps(FASHION))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    return readme, results


def test_blocks_are_generated_idempotently_and_missing_results_are_left(workspace):
    readme, results = workspace
    assert readme_numbers.main(["--readme", str(readme), "--results", str(results)]) == 0
    once = readme.read_text()
    assert "old hand-copied table" not in once
    assert "0.905 [0.900, 0.910]" in once and "small set (13 queries)" in once
    assert "<!-- numbers:not_run_yet -->\nkept as it is\n<!-- /numbers -->" in once
    assert once.startswith("# Title\n") and "text between" in once
    assert readme_numbers.main(["--readme", str(readme), "--results", str(results)]) == 0
    assert readme.read_text() == once  # a second run changes nothing
    assert readme_numbers.main(["--readme", str(readme), "--results", str(results), "--check"]) == 0


def test_a_changed_number_changes_the_block(workspace):
    readme, results = workspace
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    before = readme.read_text()
    changed = json.loads(json.dumps(FASHION))
    changed["results"]["model"]["precision@10"] = 0.777
    (results / "fashion_evaluate.json").write_text(json.dumps(changed))
    assert readme_numbers.main(["--readme", str(readme), "--results", str(results), "--check"]) == 1
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    after = readme.read_text()
    assert after != before and "0.777" in after and "0.905 [" not in after


def test_a_result_of_unexpected_shape_leaves_its_block(workspace):
    readme, results = workspace
    (results / "fashion_evaluate.json").write_text(json.dumps({"something": "else"}))
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    assert "old hand-copied table" in readme.read_text()


def test_the_committed_readme_and_docs_are_up_to_date():
    """`make readme-numbers` was run after the last result file changed (``--check`` writes nothing)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_numbers.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_scale_threshold_block_shows_each_size_and_the_switch(tmp_path):
    """The exact/HNSW threshold table: one row per measured size, the budget verdict, the chosen threshold."""
    row = lambda exact, hnsw, rec: {"numpy_exact": {"cpu_p50_ms": exact}, "faiss_flat": {"cpu_p50_ms": exact * 0.9},  # noqa: E731
                                    "faiss_hnsw": {"cpu_p50_ms": hnsw, "recall@10": rec, "recall@10_ci95": [rec - 0.01, rec]}}
    result = {"budget_ms": 5.0, "queries": 300, "threshold": 150000, "rule": "exact while p50 ≤ 5 ms",
              "hnsw_params": {"M": 32}, "load_avg_before": [3.0], "load_avg_after": [4.0], "under_load": True,
              "sizes": {"50000": row(1.5, 0.2, 0.99), "150000": row(7.25, 0.3, 0.98)}}
    results = tmp_path / "results"
    results.mkdir()
    (results / "scale_threshold.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- numbers:scale_threshold -->\nhand-copied table\n<!-- /numbers -->\n")
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    text = readme.read_text()
    assert "| 50,000 | 1.50 | 1.35 | 0.20 | 0.990 [0.980, 0.990] | yes |" in text
    assert "| 150,000 | 7.25 |" in text and text.count("| no |") == 1
    assert "**150,000 items**" in text and "hand-copied" not in text


HEADLINE_SOURCES = ("hashtag_evaluate", "music_evaluate_lastfm-2k", "fashion_evaluate", "multimodal_evaluate",
                    "catalog_quality", "history_picks")


def test_headline_block_takes_one_number_per_tab_from_the_results(tmp_path):
    """The README's one-number-per-tab block reads six result files; a changed number shows, a missing file
    leaves the block as it was."""
    results = tmp_path / "results"
    results.mkdir()
    for name in HEADLINE_SOURCES:
        (results / f"{name}.json").write_text((ROOT / "bench" / "results" / f"{name}.json").read_text())
    fashion = json.loads((results / "fashion_evaluate.json").read_text())
    fashion["results"]["model"]["precision@10"] = 0.4321
    (results / "fashion_evaluate.json").write_text(json.dumps(fashion))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- numbers:headlines -->\nhand-typed\n<!-- /numbers -->\n")
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    text = readme.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| tab ")]
    assert [r.split(" | ")[0] for r in rows] == ["| Hashtags", "| Music", "| Music, your history", "| Fashion",
                                                 "| Product search", "| Data"]
    assert "| Fashion | precision@10, Fashion-MNIST test | 0.432 [" in text and "hand-typed" not in text
    (results / "catalog_quality.json").unlink()
    readme.write_text("<!-- numbers:headlines -->\nhand-typed\n<!-- /numbers -->\n")
    readme_numbers.main(["--readme", str(readme), "--results", str(results)])
    assert "hand-typed" in readme.read_text()


def test_second_catalog_test_set_renders_like_the_first_and_names_where_its_choices_came_from(tmp_path):
    """catalog_quality_test2 is drawn by the catalog-quality table; its note says the constants are dev's recorded
    ones, and the first set's note does not."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("catalog_quality", "catalog_quality_test2"):
        (results / f"{name}.json").write_text((ROOT / "bench" / "results" / f"{name}.json").read_text())
    second = json.loads((results / "catalog_quality_test2.json").read_text())
    second["test"]["word_search"]["titled"]["mean"] = 0.4321
    (results / "catalog_quality_test2.json").write_text(json.dumps(second))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- numbers:catalog_quality -->\nx\n<!-- /numbers -->\n\n"
                      "<!-- numbers:catalog_quality_test2 -->\ny\n<!-- /numbers -->\n")
    assert readme_numbers.main(["--readme", str(readme), "--results", str(results)]) == 0
    first_block, second_block = readme.read_text().split("<!-- numbers:catalog_quality_test2 -->")
    assert "| **mean** |" in first_block and "| **mean** |" in second_block
    assert "| 0.432 [" in second_block and "| 0.432 [" not in first_block
    assert "as recorded in `bench/results/catalog_quality.json`" in second_block
    assert "as recorded in" not in first_block
    labels = {r["label"] for r in csv.DictReader(open(ROOT / "bench" / "checksets" / "catalog_test2.csv"))}
    assert all(f"| {label} |" in second_block for label in labels)
