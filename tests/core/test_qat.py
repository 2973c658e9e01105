"""Quantization-aware fine-tuning: the torch simulation rounds as ONNX Runtime's int8 graph does, training refuses a
NaN loss, fine-tuned weights load back through the product's encoder, and no evaluation or dev photo is trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnxruntime.quantization.quant_utils import compute_scale_zp, quantize_data
from onnx import TensorProto

import core.encoders as encoders
from bench import encoders as bench_encoders
from core import int8, qat
from core.encoders import BACKBONES, ImageEncoder
from core.spark.encode import encoder_spec


@pytest.fixture(scope="module")
def lite0():
    module, _ = BACKBONES["efficientnet_lite0"].build(None, False)
    return module.eval()


def test_fake_quantized_weights_sit_on_onnx_runtimes_per_channel_int8_grid():
    w = torch.randn(6, 4, 3, 3) * torch.linspace(0.01, 2.0, 6).view(6, 1, 1, 1)
    fq = qat.fake_quant_weight(w)
    for c in range(w.shape[0]):
        zero, scale, q = quantize_data(w[c].numpy().ravel(), TensorProto.INT8, symmetric=True)
        assert int(zero) == 0
        assert qat.weight_scale(w)[c].item() == pytest.approx(float(scale), rel=1e-6)
        np.testing.assert_allclose(fq[c].numpy().ravel(), q.astype(np.float32) * float(scale), rtol=1e-5, atol=1e-7)
        assert len(torch.unique(fq[c])) <= 255


def test_activation_ranges_give_onnx_runtimes_uint8_scale_and_zero_point():
    for lo, hi in ((-1.3, 4.2), (0.0, 6.0), (0.5, 3.0), (-7.0, -0.5)):
        zero, scale = compute_scale_zp(np.float32(lo), np.float32(hi), np.uint8(0), np.uint8(255))
        mine_scale, mine_zero = qat.activation_qparams(lo, hi)
        assert mine_scale == pytest.approx(float(scale), rel=1e-6)
        assert mine_zero == int(zero)


def test_simulation_quantizes_what_the_int8_recipe_quantizes_and_leaves_fp32_weights_behind(lite0):
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    sim = qat.QuantSim(lite0)
    assert "conv_head" in sim.quantized_convs and "blocks.1.0.conv_pw" in sim.quantized_convs
    assert not any(n == "conv_stem" or n.startswith("blocks.0.") for n in sim.quantized_convs)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
    sim.calibrate([x.numpy()])
    assert "bn2:out" in sim.ranges and "blocks.1.1.bn3:out" in sim.ranges
    sim.mode = "quant"
    conv = lite0.model.blocks[2][0].conv_pw
    assert all(len(torch.unique(conv.weight[c])) <= 255 for c in range(conv.weight.shape[0]))
    with torch.no_grad():
        q_grid, _ = lite0(x)
    sim.mode = "off"
    with torch.no_grad():
        f_grid, _ = lite0(x)
    assert not torch.equal(q_grid, f_grid)  # the simulation changes the output...
    assert torch.nn.functional.cosine_similarity(q_grid.flatten(1), f_grid.flatten(1)).min() > 0.9  # ...a little
    sim.remove()
    after = lite0.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


class _NaNImages:
    def batch(self, rng, n, mixup=0.0):
        return np.full((n, 3, 64, 64), np.nan, np.float32)


def test_training_refuses_a_nan_loss_and_keeps_the_weights(lite0):
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    calib = [np.zeros((2, 3, 64, 64), np.float32)]
    with pytest.raises(FloatingPointError, match="loss is nan"):
        qat.distill(lite0, _NaNImages(), calib, steps=2, batch=2)
    assert all(torch.equal(lite0.state_dict()[k], before[k]) for k in before)


def test_training_images_exclude_evaluation_and_dev_photos():
    dev = [name for name, _ in bench_encoders.dev_photos()]
    forbidden = sorted(int8.evaluation_paths()) + dev
    sources = int8.calibration_sources(limit=400, clipart=150)
    qat.assert_disjoint(sources, forbidden)  # the pool the fine-tuning trains on
    for bad in ("/usr/share/wallpapers/x/contents/images/a.jpg", "/usr/share/wallpapers/x/contents/images/a.jpg#crop3"):
        with pytest.raises(ValueError, match="held out"):
            qat.assert_disjoint([bad], ["deb:plasma-wallpapers_*.deb!usr/share/wallpapers/x/contents/images/a.jpg"])
    with pytest.raises(ValueError, match="held out"):
        qat.assert_disjoint([dev[0]], forbidden)


def test_mixup_blends_each_view_with_another_view_of_the_batch():
    images = qat.TrainingImages.__new__(qat.TrainingImages)
    images.sources = ["black", "white"]
    images.preprocess = lambda im: np.asarray(im.resize((16, 16)), np.float32).transpose(2, 0, 1)
    images.images = [qat.Image.new("RGB", (32, 32), (0, 0, 0)), qat.Image.new("RGB", (32, 32), (200, 200, 200))]
    plain = images.batch(np.random.default_rng(0), 64).mean(axis=(1, 2, 3))
    mixed = images.batch(np.random.default_rng(0), 64, mixup=1.0)
    blends = mixed.mean(axis=(1, 2, 3))
    assert not ((plain > 5) & (plain < 155)).any()  # without mixup a view is black or (jittered) light grey
    assert ((blends > 5) & (blends < 155)).sum() >= 16  # with it, many views lie between the two photos
    assert mixed.min() >= 0 and mixed.max() <= plain.max() + 1e-3


@pytest.mark.slow(reason="fine-tunes the encoder for two steps and builds it back from the saved weights")
def test_a_few_steps_move_the_weights_and_they_load_back_into_the_encoder(tmp_path):
    enc = ImageEncoder(precision="fp32", runtime="torch", input_size=64)
    student = enc.module.to(memory_format=torch.contiguous_format)
    sources = int8.calibration_sources(limit=6, clipart=2)
    images = qat.TrainingImages(sources, enc.preprocess, max_side=128)
    calib = int8.calibration_batches(enc.preprocess, sources, 3)
    head_before = student.model.conv_head.weight.detach().clone()
    path = tmp_path / "qat.safetensors"

    def checkpoint(step, module):  # taken while the simulation is installed, as the benchmark's checkpoints are
        if step == 2:
            qat.save_weights(module, path)

    history = qat.distill(student, images, calib, steps=2, batch=3, lr=1e-4, log_every=1, on_step=checkpoint)
    assert [h["step"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) for h in history)
    assert not torch.equal(student.model.conv_head.weight, head_before)
    again = ImageEncoder(precision="fp32", runtime="torch", input_size=64, weights=str(path))
    x = np.stack([enc.preprocess(images.images[0])])
    np.testing.assert_allclose(again._run(x, want_logits=True)[1], enc._run(x, want_logits=True)[1], atol=1e-5)


def test_qat_recipe_is_one_setting_recorded_in_the_spec(monkeypatch):
    monkeypatch.delenv("RECS_INT8_RECIPE", raising=False)
    assert int8.int8_recipe() == "ptq"
    assert "int8_recipe" not in ImageEncoder(precision="int8", int8_engine="onnxruntime").spec
    monkeypatch.setenv("RECS_INT8_RECIPE", "qat")
    q8 = ImageEncoder(precision="int8", int8_engine="onnxruntime")
    assert q8.int8_recipe == "qat" and q8.spec["int8_recipe"] == "qat"
    assert encoder_spec(precision="int8")["int8_recipe"] == "qat"  # Spark executors build the driver's recipe
    assert encoder_spec(precision="fp32")["int8_recipe"] is None
    assert ImageEncoder(precision="fp32").int8_recipe is None  # fp32 is never fine-tuned
    assert ImageEncoder(precision="int8", int8_engine="openvino-nncf").int8_recipe is None
    monkeypatch.setenv("RECS_INT8_RECIPE", "magic")
    with pytest.raises(ValueError, match="ptq, qat"):
        ImageEncoder(precision="int8")


@pytest.mark.slow(reason="fine-tunes the 224 px encoder for two steps")
def test_fine_tuned_weights_are_built_once_as_safetensors_with_a_manifest(monkeypatch, tmp_path):
    monkeypatch.setattr(encoders, "ENCODER_CACHE", tmp_path)
    monkeypatch.setattr(qat, "QAT_SETTINGS", dict(qat.QAT_SETTINGS, steps=2, batch=2))
    monkeypatch.setattr(qat, "TRAIN_IMAGES", 6)
    monkeypatch.setattr(qat, "TRAIN_CLIPART", 2)
    monkeypatch.setattr(int8, "CALIBRATION_IMAGES", 4)
    monkeypatch.setattr(int8, "CALIBRATION_CLIPART", 1)
    enc = ImageEncoder(precision="int8", int8_engine="onnxruntime", int8_recipe="qat", input_size=64)
    path = enc._qat_weights()
    assert path.suffix == ".safetensors" and path.is_file()
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["recipe"] == qat.QAT_RECIPE and manifest["settings"]["steps"] == 2
    assert manifest["training_images"] and len(manifest["history"]) == 2
    assert not set(manifest["training_images"]) & int8.evaluation_paths()

    def refuse(*args, **kwargs):
        raise AssertionError("fine-tuned again although the cached weights are fresh")

    monkeypatch.setattr(qat, "fine_tune_for_int8", refuse)
    assert ImageEncoder(precision="int8", int8_engine="onnxruntime", int8_recipe="qat")._qat_weights() == path
    tuned = enc._qat_encoder()
    assert tuned.int8_recipe == "ptq" and tuned.weights_id != enc.weights_id
    vec = enc.encode([np.full((40, 40, 3), 200, np.uint8)])  # the int8 graph of the fine-tuned weights, 64 px
    assert vec.shape == (1, enc.dim) and np.isfinite(vec).all()
    assert list(tmp_path.glob(f"*{tuned.weights_id}-s64-b1-int8.onnx"))
    assert not list(tmp_path.glob(f"*{enc.weights_id}-s64-b1-int8.onnx"))  # the shipped weights were not quantized
