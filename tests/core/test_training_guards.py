"""Trainers refuse data they cannot learn from and stop, saving nothing, when the loss stops being a number."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from core.training import EXPLODE_FACTOR, BadTrainingData, TrainingDiverged, check_loss, keras_loss_guard


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_check_loss_passes_finite_losses_and_stops_nan_inf_and_explosions():
    assert check_loss(np.float32(0.25), "demo", "epoch 1") == 0.25
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(TrainingDiverged, match="demo training diverged at epoch 3.*nothing was saved"):
            check_loss(bad, "demo", "epoch 3", first=1.0)
    assert check_loss(EXPLODE_FACTOR * 0.9, "demo", "epoch 2", first=1.0) > 0
    with pytest.raises(TrainingDiverged, match="exploded"):
        check_loss(EXPLODE_FACTOR * 2.0, "demo", "epoch 2", first=1.0)


def test_the_keras_guard_raises_out_of_fit_on_the_first_nan_batch():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.ones((64, 3), np.float32)
    y = np.ones((64, 1), np.float32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[keras_loss_guard("demo")])  # finite: no error
    y[40] = np.nan
    with pytest.raises(TrainingDiverged, match=r"demo training diverged at epoch 1, batch 3"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[keras_loss_guard("demo")])


def test_music_mf_that_diverges_raises_and_saves_nothing(tmp_path, monkeypatch):
    from music.mf import data as mfdata
    from music.mf.train import train

    rng = np.random.default_rng(0)
    rows = ["user,item,rating"] + [f"u{u},i{i},{rng.integers(1, 6)}" for u in range(20) for i in range(15)
                                   if rng.random() < 0.6]
    csv = tmp_path / "ratings.csv"
    csv.write_text("\n".join(rows) + "\n")
    models = tmp_path / "models"
    monkeypatch.setattr(mfdata, "music_dir", lambda: models / "music")
    with pytest.raises(TrainingDiverged, match="MF \\(explicit\\) training diverged"):
        train("csv", csv, force=True, mf_params={"lr": 1e20, "epochs": 2})  # a learning rate that must blow up
    assert _files(models) == []


@pytest.mark.parametrize("rows,message", [
    (["u1,i1,4"], "too small to train on"),
    (["u1,i1,4", "u2,i2,4", "u1,i2,4", "u2,i1,4"], "constant ratings"),
])
def test_music_training_refuses_data_it_cannot_learn_from(tmp_path, monkeypatch, rows, message):
    from music.mf import data as mfdata
    from music.mf.train import train

    csv = tmp_path / "ratings.csv"
    csv.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(mfdata, "music_dir", lambda: tmp_path / "models" / "music")
    with pytest.raises(BadTrainingData, match=message):
        train("csv", csv, force=True)
    assert _files(tmp_path / "models") == []


@pytest.mark.parametrize("value", ["1e30", "-500", "nan", "inf"])
def test_the_csv_loader_refuses_ratings_outside_the_range_or_not_finite(tmp_path, value):
    from music.data.sources import load_csv

    csv = tmp_path / "ratings.csv"
    csv.write_text(f"user,item,rating\nu1,i1,4\nu2,i1,{value}\nu2,i2,3\n")
    with pytest.raises(BadTrainingData, match=r"ratings\.csv: 1 rating value\(s\) are not finite numbers in "
                                              r"-100\.\.100 \(row 2"):
        load_csv(csv)


def test_fashion_projection_stops_on_a_nan_loss():
    from fashion.train import ProjectionConfig, train_projection

    features = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    features[5, 3] = np.nan
    with pytest.raises(TrainingDiverged, match="fashion projection training diverged at epoch 1"):
        train_projection(features, ["a", "b"] * 32, ProjectionConfig(epochs=2, batch_size=16, bf16=False))


def test_product_projection_stops_on_a_nan_loss():
    from multimodal.train import ProjectionConfig, train_projection

    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 16)).astype(np.float32)
    image[7, 0] = np.nan
    text = rng.normal(size=(32, 8)).astype(np.float32)
    with pytest.raises(TrainingDiverged, match="product projection training diverged at epoch 1"):
        train_projection([image], text, [f"item {i}" for i in range(32)], ProjectionConfig(epochs=2))
