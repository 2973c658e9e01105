"""The opt-in open-vocabulary tagger with a TINY randomly initialised OpenCLIP model saved to a temporary folder.

Nothing is downloaded: the model is built from a small custom config, saved as ``open_clip_config.json`` +
``open_clip_model.safetensors`` (the layout ``open_clip`` loads with ``local-dir:``), and loaded back by the
tagger. Its scores are meaningless (random weights); the tests check loading, the messages when weights are not
there, vocabulary scoring, the text-embedding cache and the fusion's sources.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")

WORDS = ["cat", "dog", "cow", "hammer", "beach", "barn", "kitten", "tool"]
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random tiny OpenCLIP model in ``folder``, saved the way open_clip reads a local model folder."""
    import torch
    from safetensors.torch import save_file

    config = json.dumps({"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    with tempfile.TemporaryDirectory() as bare:  # a folder with the config only: open_clip initialises randomly
        (Path(bare) / "open_clip_config.json").write_text(config)
        torch.manual_seed(seed)
        model = open_clip.create_model(f"local-dir:{bare}", pretrained_text=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture()
def cat_image():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.chelsea())


def test_no_folder_and_no_download_permission_is_one_clear_message(tmp_path):
    from hashtag.openvocab import OpenVocabTagger, OpenVocabUnavailable

    with pytest.raises(OpenVocabUnavailable, match="--allow-download"):
        OpenVocabTagger("ViT-B-32/laion2b_s34b_b79k", vocabulary=WORDS, cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OpenVocabUnavailable, match="open_clip_config.json"):
        OpenVocabTagger(str(tmp_path / "empty"), vocabulary=WORDS, cache_dir=tmp_path)


def test_tiny_model_scores_the_vocabulary(tiny_clip, tmp_path, cat_image):
    from hashtag.openvocab import OpenVocabTagger

    tagger = OpenVocabTagger(str(tiny_clip), vocabulary=WORDS, cache_dir=tmp_path)
    assert tagger.text.shape == (len(WORDS), TINY["embed_dim"])
    assert np.allclose(np.linalg.norm(tagger.text, axis=1), 1.0, atol=1e-4)
    (ranked,) = tagger.predict_images([cat_image], k=5)
    assert len(ranked) == 5 and len({w for w, _ in ranked}) == 5 and {w for w, _ in ranked} <= set(WORDS)
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
    # the scores are the softmax of the image–text cosines: recompute them independently
    logits = tagger.logit_scale * tagger.image_embeddings([cat_image]) @ tagger.text.T
    best = WORDS[int(np.argmax(logits[0]))]
    assert ranked[0][0] == best


def test_text_embeddings_are_cached_per_model_and_vocabulary(tiny_clip, tmp_path, monkeypatch):
    from hashtag.openvocab import OpenVocabTagger

    first = OpenVocabTagger(str(tiny_clip), vocabulary=WORDS, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.endswith(".npz") for f in files) and any(f.endswith(".json") for f in files)
    manifest = json.loads(next(tmp_path.glob("openvocab-*.json")).read_text())
    assert manifest["words"] == len(WORDS) and manifest["model"] == first.key

    def no_embedding(self):
        raise AssertionError("the vocabulary was embedded again although its cache is fresh")

    monkeypatch.setattr(OpenVocabTagger, "_embed_words", no_embedding)
    again = OpenVocabTagger(str(tiny_clip), vocabulary=WORDS, cache_dir=tmp_path)
    assert np.array_equal(again.text, first.text)
    with pytest.raises(AssertionError, match="embedded again"):  # another vocabulary is another cache entry
        OpenVocabTagger(str(tiny_clip), vocabulary=WORDS[:4], cache_dir=tmp_path)


def test_another_model_in_the_same_folder_does_not_reuse_the_cache(tmp_path):
    from hashtag.openvocab import OpenVocabTagger

    folder = save_tiny_clip(tmp_path / "m", seed=1)
    a = OpenVocabTagger(str(folder), vocabulary=WORDS, cache_dir=tmp_path / "cache")
    save_tiny_clip(folder, seed=2)  # new weights written over the old ones: another modification time, another key
    b = OpenVocabTagger(str(folder), vocabulary=WORDS, cache_dir=tmp_path / "cache")
    assert a.key != b.key and not np.allclose(a.text, b.text)


def test_fusion_keeps_sources_visible():
    from hashtag.openvocab import SOURCE, fuse_open

    fused = [("cat", 0.6, "concept"), ("animal", 0.3, "both"), ("cartoon", 0.0, "learned")]
    out = fuse_open(fused, [("kitten", 0.2), ("cat", 0.1)], weight=0.5, k=10)
    by_tag = {t: (s, src) for t, s, src in out}
    assert by_tag["cat"][1] == f"concept+{SOURCE}" and by_tag["kitten"][1] == SOURCE
    assert by_tag["animal"][1] == "both" and by_tag["cartoon"][1] == "learned"
    assert out[0][0] == "cat"  # proposed by both sides
    assert by_tag["kitten"][0] == pytest.approx(0.5)  # the photo's best open word, scaled to 1, times the weight
    assert fuse_open(fused, [], weight=0.5)[0][:1] == ("cat",)


def test_committed_vocabulary_is_tens_of_thousands_of_everyday_words():
    from hashtag.openvocab import load_vocabulary

    words = load_vocabulary()
    assert 10_000 <= len(words) <= 100_000
    assert len(set(words)) == len(words)
    assert {"cow", "hammer", "barn", "beach", "screwdriver", "cattle", "sunset"} <= set(words)
    assert all(w == w.lower() and " " not in w for w in words)
