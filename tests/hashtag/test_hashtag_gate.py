"""The photo gate's artifact and its cross-fitting, on small synthetic grids (the trained model's gate is
tested on real pictures in test_hashtag_app.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.artifacts import ArtifactError
from hashtag.gate import GATE_STEM, PhotoGate, load_or_fit, out_of_fold, tune_gate


def _grids(rng: np.random.Generator, n: int, centre: float) -> np.ndarray:
    return (centre + rng.normal(0, 1.0, size=(n, 8, 3, 3))).astype(np.float32)


@pytest.fixture()
def sets():
    rng = np.random.default_rng(0)
    return _grids(rng, 120, 0.6), _grids(rng, 30, 0.0), _grids(rng, 40, 0.6)


@pytest.mark.slow(reason="encodes pictures")
def test_gate_scores_training_like_pictures_high_and_photos_low(sets):
    training, photos, held_out = sets
    gate = PhotoGate.fit(training, photos, c=0.1)
    rng = np.random.default_rng(1)
    assert gate(held_out).mean() > 0.8 > 0.2 > gate(_grids(rng, 40, 0.0)).mean()
    assert gate(np.zeros((0, 8, 3, 3), np.float32)).shape == (0,)


def test_out_of_fold_never_scores_a_photo_with_a_gate_that_saw_it(sets):
    training, photos, _ = sets
    rng = np.random.default_rng(2)
    photos = np.concatenate([photos, _grids(rng, 10, 0.4)])  # photos near the clip-art side: memorised in-sample
    full = PhotoGate.fit(training, photos, c=10.0)
    oof = out_of_fold(training, photos, c=10.0)
    assert oof.shape == (len(photos),)
    assert oof[-10:].mean() > full(photos[-10:]).mean() + 0.05
    tuned = tune_gate(training, _grids(rng, 20, 0.6), photos, grid=(0.01, 1.0))
    assert tuned["chosen_C"] in (0.01, 1.0) and all(0.5 <= r["auc"] <= 1.0 for r in tuned["grid"])


def test_gate_artifact_round_trip_stale_and_corrupt(sets, tmp_path):
    training, photos, held_out = sets
    gate = PhotoGate.fit(training, photos, key="k1", photo_ids=["a", "b"])
    gate.save(tmp_path)
    back = PhotoGate.load(tmp_path, "k1")
    assert back.photos == ("a", "b") and np.allclose(back(held_out), gate(held_out))
    with pytest.raises(ArtifactError, match="stale"):
        PhotoGate.load(tmp_path, "k2")
    (tmp_path / f"{GATE_STEM}.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="corrupt"):
        PhotoGate.load(tmp_path, "k1")
    calls = []

    def photo_grids():
        calls.append("photos")
        return photos

    def training_grids():
        calls.append("training")
        return training

    refit = load_or_fit(tmp_path, "model", training_grids, ["a", "b"], photo_grids)  # corrupt: refitted and saved
    again = load_or_fit(tmp_path, "model", training_grids, ["a", "b"], photo_grids)  # fresh: loaded, nothing encoded
    assert calls == ["training", "photos"] and again.key == refit.key
    load_or_fit(tmp_path, "other model", training_grids, ["a", "b"], photo_grids)  # stale: refitted
    assert calls == ["training", "photos"] * 2
