"""The encoder layer: shipped weights are the real ones, runtimes agree, ResNets explain missing weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from core.encoders import (
    BACKBONES, ImageEncoder, WeightsUnavailable, _lite_weights_path, get_image_encoder, map_lite_state_dict,
)
from core.text import TextEncoderUnavailable, get_text_encoder

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(a) for a in (data.chelsea(), data.coffee(), data.astronaut(), data.rocket())]


def test_lite0_weight_mapping_is_complete_and_shape_exact():
    import timm

    source = torch.load(_lite_weights_path(0), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    mapped = map_lite_state_dict(source, list(target))
    assert len(mapped) == len([k for k in target if not k.endswith("num_batches_tracked")]) == 247
    assert all(tuple(v.shape) == tuple(target[k].shape) for k, v in mapped.items())
    assert torch.equal(mapped["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(mapped["classifier.bias"], source["_fc.bias"])
    with pytest.raises(ValueError):
        map_lite_state_dict(source, list(target)[:-3])


def test_shipped_weights_see_a_cat_and_an_espresso(photos):
    enc = get_image_encoder()
    cat, coffee = enc.classify(photos[:2], top=3)
    assert {label for label, _ in cat} & CAT_CLASSES, cat
    assert coffee[0][0] == "espresso"


def test_lite2_weights_ship_too_and_give_a_9x9_grid(photos):
    """The larger offline sibling (260 px): same mapping, real weights (a cat is a cat), a finer grid."""
    enc = get_image_encoder("efficientnet_lite2")
    assert enc.input_size == 260 and enc.spec["backbone"] == "efficientnet_lite2"
    cat, coffee = enc.classify(photos[:2], top=3)
    assert {label for label, _ in cat} & CAT_CLASSES, cat
    assert coffee[0][0] == "espresso"
    assert enc.grid(photos[:1]).shape == (1, 1280, 9, 9)


def test_encode_and_grid_shapes_norms(photos):
    enc = get_image_encoder()
    vecs = enc.encode(photos)
    assert vecs.shape == (4, 1280) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    grid = enc.grid(photos[:2])
    assert grid.shape == (2, 1280, 7, 7)
    assert np.allclose(enc.pool(grid), vecs[:2], atol=1e-5)


def test_mirrored_photo_finds_its_original(photos):
    enc = get_image_encoder()
    mirrored = photos[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    vecs = enc.encode(photos + [mirrored])
    sims = vecs[:4] @ vecs[4]
    assert sims.argmax() == 0 and sims[0] > 0.9 and np.sort(sims)[-2] < 0.6


def test_onnx_matches_eager_fp32(photos):
    onnx = get_image_encoder(runtime="onnx", precision="fp32").encode(photos)
    eager = get_image_encoder(runtime="torch").encode(photos)
    assert np.abs(onnx - eager).max() < 1e-3
    assert (np.sum(onnx * eager, axis=1) > 0.9999).all()


def test_pooling_and_input_size_are_part_of_the_spec(photos):
    mean = ImageEncoder(pooling="mean", input_size=96)
    assert mean.spec["pooling"] == "mean" and mean.spec["input_size"] == 96
    assert mean.grid(photos[:1]).shape == (1, 1280, 3, 3)
    assert not np.allclose(mean.encode(photos[:1]), get_image_encoder(input_size=96).encode(photos[:1]))


def test_resnet_without_weights_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsUnavailable) as err:
        ImageEncoder("resnet50")
    message = str(err.value)
    assert "--weights" in message and "checkpoints" in message and "resnet50-" in message


def test_resnet_from_a_user_weights_file(tmp_path, photos):
    import torchvision

    path = tmp_path / "my-resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    enc = ImageEncoder("resnet50", weights=str(path), runtime="torch")
    assert enc.backbone.mean == (0.485, 0.456, 0.406)  # ResNet carries ImageNet normalisation, not Lite0's 0.5
    assert enc.encode(photos[:2]).shape == (2, 2048)
    assert enc.grid(photos[:1]).shape == (1, 2048, 7, 7)
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        ImageEncoder("resnet152", weights=str(tmp_path / "nope.pth"))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        ImageEncoder("vgg16")
    assert set(BACKBONES) == {"efficientnet_lite0", "efficientnet_lite2", "resnet50", "resnet152"}


def test_text_encoder_is_offline_and_semantic():
    enc = get_text_encoder()
    vecs = enc.encode(["a red dress", "a crimson evening gown", "a dump truck", ""])
    assert vecs.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vecs[:3], axis=1), 1, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert not vecs[3].any()  # empty text: a zero vector, not a fake embedding
    with pytest.raises(TextEncoderUnavailable, match="--allow-download"):
        get_text_encoder("some-org/not-a-local-model")
