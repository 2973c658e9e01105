"""Vector search against brute force, and artifact storage: round trips, staleness, corruption, atomicity."""

from __future__ import annotations

import numpy as np
import pytest

from core.artifacts import ArtifactError, atomic_path, load_arrays, save_arrays
from core.search import VectorIndex


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 16)).astype(np.float32)
    cats = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, 500)]
    return vecs, cats


def test_topk_matches_brute_force(data):
    vecs, _ = data
    index = VectorIndex(vecs, [f"i{n}" for n in range(len(vecs))])
    queries = np.random.default_rng(1).normal(size=(37, 16)).astype(np.float32)
    rows, scores = index.search(queries, 10, block=8)
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ normed.T), axis=1)[:, :10]
    assert (rows == truth).all()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_filters_and_self_exclusion(data):
    vecs, cats = data
    index = VectorIndex(vecs, [f"i{n}" for n in range(len(vecs))], {"category": cats})
    hits = index.query(vecs[3], 5, filters={"category": ["b", "c"]})
    assert all(h.meta["category"] in ("b", "c") for h in hits)
    # an upload identical to item 3 keeps item 3 first; "more like this" on item 3 leaves it out
    assert index.query(vecs[3], 3)[0].id == "i3"
    assert all(h.id != "i3" for h in index.query(vecs[3], 3, exclude_id="i3"))


def test_fewer_matches_than_k_and_bad_dims(data):
    vecs, cats = data
    index = VectorIndex(vecs[:4], ["a", "b", "c", "d"], {"category": cats[:4]})
    rows, scores = index.search(vecs[:1], 10)
    assert (rows[0, 4:] == -1).all() and np.isinf(scores[0, 4:]).all()
    assert len(index.query(vecs[0], 10)) == 4
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.zeros((1, 3)), 2)
    with pytest.raises(KeyError, match="no metadata column"):
        index.query(vecs[0], 2, filters={"colour": "red"})


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_artifact_round_trip_and_staleness(tmp_path, fmt):
    stem = tmp_path / "thing"
    arrays = {"v": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array(["x", "y"])} if fmt == "npz" else {
        "v": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_arrays(stem, arrays, {"kind": "test", "encoder": "e1"}, fmt=fmt)
    loaded, manifest = load_arrays(stem, kind="test", expect={"encoder": "e1"})
    assert np.array_equal(loaded["v"], arrays["v"])
    assert manifest["versions"]["numpy"] == np.__version__
    with pytest.raises(ArtifactError, match="stale.*encoder='e1'.*'e2'.*python -m x"):
        load_arrays(stem, kind="test", expect={"encoder": "e2"}, hint="python -m x")
    with pytest.raises(ArtifactError, match="not 'other'"):
        load_arrays(stem, kind="other")


def test_corrupt_and_missing_artifacts_explain_themselves(tmp_path):
    stem = tmp_path / "idx"
    with pytest.raises(ArtifactError, match="No artifact.*make it"):
        load_arrays(stem, hint="make it")
    save_arrays(stem, {"v": np.ones(3)}, {"kind": "test"})
    stem.with_suffix(".npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_arrays(stem)
    stem.with_suffix(".json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_arrays(stem)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"good"
    assert list(tmp_path.iterdir()) == [target]


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="object"):
        save_arrays(tmp_path / "o", {"x": np.array([{"a": 1}], dtype=object)}, {"kind": "t"})


def test_manifest_versions_do_not_import_the_libraries():
    """Recording versions reads package metadata: importing sentence-transformers, keras and timm just for a
    version string made every build step that saved an artifact seconds slower."""
    import subprocess
    import sys

    code = ("import sys; from core.artifacts import environment; v = environment(); "
            "heavy = [m for m in ('torch', 'keras', 'sentence_transformers', 'timm', 'torchvision') if m in sys.modules]; "
            "assert not heavy, heavy; assert v['torch'] and v['keras'] and v['timm'], v")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
