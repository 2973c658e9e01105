"""FAISS index kinds behind VectorIndex: exact self-match, filters, self-exclusion, save/load, bad files, size rule.

Real data, small: scikit-learn's bundled handwritten digits (1,797 images, 64 pixels, 10 classes; the
class is the metadata column filters select on).
"""

from __future__ import annotations

import numpy as np
import pytest

from core.artifacts import ArtifactError
from core.search import EXACT_BELOW, VectorIndex, choose_kind, describe, resolve_params

FAISS_KINDS = ["flat", "hnsw", "ivfpq"]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(str), [f"d{i}" for i in range(len(d.data))]


@pytest.fixture(scope="module")
def built(digits):
    x, y, ids = digits
    return {kind: VectorIndex(x, ids, {"digit": y}).build(kind, recall_queries=300) for kind in FAISS_KINDS}


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_each_item_finds_itself_first(built, kind):
    index = built[kind]
    assert index.kind == kind and index.faiss is not None
    rows, scores = index.search(index.vectors, 1)
    assert (rows[:, 0] == np.arange(len(index))).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)  # true cosines, also after IVF-PQ's re-ranking


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_recall_against_exact_is_measured_and_high(built, kind):
    info = built[kind].info
    assert info["recall@10"] >= (0.999 if kind == "flat" else 0.95)
    lo, hi = info["recall@10_ci95"]
    assert lo <= info["recall@10"] <= hi
    assert "recall@10" in describe(info) and kind != "exact"


@pytest.mark.parametrize("kind", FAISS_KINDS)
@pytest.mark.parametrize("exact_below", [0, EXACT_BELOW])  # the FAISS selector path, and the exact fallback
def test_filters_and_self_exclusion(built, digits, kind, exact_below):
    _, y, ids = digits
    index = built[kind]
    index.exact_below = exact_below
    try:
        queries = np.arange(0, 200, 7)
        rows, _ = index.search(index.vectors[queries], 10, filters={"digit": ["3", "8"]},
                               exclude_ids=[ids[q] for q in queries])
        truth, _ = index.search(index.vectors[queries], 10, filters={"digit": ["3", "8"]},
                                exclude_ids=[ids[q] for q in queries], exact=True)
    finally:
        index.exact_below = EXACT_BELOW
    assert (rows >= 0).all(), "a filter keeping ~360 rows must still fill the top 10"
    assert set(y[rows.ravel()]) <= {"3", "8"}
    assert all(q not in r for q, r in zip(queries, rows))
    overlap = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows, truth)])
    assert overlap >= 0.9
    # an item of the kept classes, queried as itself without exclusion, still comes first
    three = int(np.flatnonzero(y == "3")[0])
    assert index.query(index.vectors[three], 3, filters={"digit": "3"})[0].id == ids[three]


def test_very_selective_filter_is_answered_exactly(built, digits):
    _, y, ids = digits
    index = built["hnsw"]
    index.exact_below = 0  # force the graph path: it must still return every one of the few kept rows
    try:
        few = np.flatnonzero(y == "5")[:4]
        keep_ids = [ids[i] for i in few]
        index.metadata["pick"] = np.isin(np.asarray(ids), keep_ids).astype(str)
        hits = index.query(index.vectors[0], 10, filters={"pick": "True"})
    finally:
        index.exact_below = EXACT_BELOW
        del index.metadata["pick"]
    assert sorted(h.id for h in hits) == sorted(keep_ids)


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_save_load_round_trip(built, digits, tmp_path, kind):
    x, y, ids = digits
    info = built[kind].save_faiss(tmp_path / "idx.faiss")
    assert info["file"] == "idx.faiss" and info["kind"] == kind
    again = VectorIndex(x, ids, {"digit": y}).load_faiss(tmp_path / "idx.faiss", info)
    queries = x[::50]
    assert np.array_equal(again.search(queries, 10)[0], built[kind].search(queries, 10)[0])
    assert again.info["recall@10"] == built[kind].info["recall@10"]


def test_stale_and_corrupt_faiss_files(built, digits, tmp_path):
    x, y, ids = digits
    path = tmp_path / "idx.faiss"
    info = built["hnsw"].save_faiss(path)
    fresh = lambda: VectorIndex(x, ids, {"digit": y})  # noqa: E731
    # another build's file (same size class, different content) under the same name
    built["flat"].save_faiss(path)
    with pytest.raises(ArtifactError, match="stale|truncated"):
        fresh().load_faiss(path, info, hint="python -m fashion index --force")
    # a corrupt file whose manifest carries no size or checksum: FAISS's own error becomes ArtifactError
    path.write_bytes(b"not a faiss index at all")
    with pytest.raises(ArtifactError, match="corrupt.*python -m fashion index"):
        fresh().load_faiss(path, {**info, "bytes": None, "sha256": None}, hint="python -m fashion index")
    # a valid file for another catalog (fewer items)
    VectorIndex(x[:100], ids[:100]).build("flat", recall_queries=10).save_faiss(path)
    with pytest.raises(ArtifactError, match="stale: it holds 100"):
        fresh().load_faiss(path, {**info, "bytes": None, "sha256": None})
    path.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        fresh().load_faiss(path, info)


def test_size_rule_and_parameter_checks():
    assert choose_kind(1_797) == "exact"
    assert choose_kind(70_000) == "exact"
    assert choose_kind(EXACT_BELOW - 1) == "exact"
    assert choose_kind(EXACT_BELOW) == "hnsw"
    assert choose_kind(500, "ivfpq") == "ivfpq"
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_kind(10, "annoy")
    with pytest.raises(ValueError, match="no parameter efSearch"):
        resolve_params("ivfpq", 10_000, 64, {"efSearch": 10})
    with pytest.raises(ValueError, match="m dividing"):
        resolve_params("ivfpq", 10_000, 64, {"m": 7})
    assert VectorIndex(np.eye(4), list("abcd")).build("auto").kind == "exact"


# ------------------------------------------------------------------------------------------------
# the fashion CLI: choosing, saving, switching and breaking the search index of a real catalog


def _fashion(capsys, *args: str):
    """``python -m fashion ARGS`` in this process (one torch import instead of one per call): (status, out, err)."""
    from fashion.__main__ import main

    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow(reason="builds three fashion indexes through the CLI")
def test_fashion_index_kinds_through_the_cli(models_dir, capsys):
    import json

    from fashion.model import FashionIndex, index_stem

    stem = index_stem("tuxpaint-clothes")
    try:
        status, out, err = _fashion(capsys, "index", "--catalog", "tuxpaint-clothes", "--index", "hnsw", "--index-param", "efSearch=40", "--json")
        assert status == 0, err
        info = json.loads(out)["index"]
        assert info["kind"] == "hnsw" and info["params"]["efSearch"] == 40 and 0.9 <= info["recall@10"] <= 1
        assert stem.with_suffix(".faiss").is_file()
        loaded = FashionIndex.load(stem)
        assert loaded.search_info["sha256"] == info["sha256"] and loaded._index.faiss is not None
        status, out, err = _fashion(capsys, "similar", "clothes/bluejeans1", "--catalog", "tuxpaint-clothes", "--top", "3", "--json")
        assert status == 0, err
        assert "clothes/bluejeans1" not in [h["id"] for h in json.loads(out)]
        # a damaged FAISS file is reported with the rebuild command, not a traceback
        stem.with_suffix(".faiss").write_bytes(b"\0" * 64)
        status, out, err = _fashion(capsys, "similar", "clothes/bluejeans1", "--catalog", "tuxpaint-clothes", "--json")
        assert status == 2 and out == "" and err.startswith("error:") and "python -m fashion index" in err
        status, out, err = _fashion(capsys, "index", "--catalog", "tuxpaint-clothes", "--index", "ivfpq", "--index-param", "nprobe=x")
        assert status == 2 and err.startswith("error:") and "NAME=INTEGER" in err
    finally:
        # back to the size-based choice (exact for 48 items), which also removes the FAISS file
        status, out, err = _fashion(capsys, "index", "--catalog", "tuxpaint-clothes", "--index", "auto", "--json")
    assert status == 0, err
    assert json.loads(out)["index"]["kind"] == "exact" and not stem.with_suffix(".faiss").exists()
