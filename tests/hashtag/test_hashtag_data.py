"""Hashtag dataset builder and loaders: tag normalisation, leakage-free splits, mirrors, vocabulary, fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashtag import data
from tests.paths import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "hashtag"


def test_normalisation_lowercases_singularises_and_drops_stop_words():
    assert data.content_words("A snowy Owl and the two Birds.") == ["snowy", "owl", "birds"]
    assert data.normalize_tag("#Cats") == "cat"
    assert data.normalize_tag("body_parts") == "bodypart"
    assert data.normalize_tag("berries") == "berry"
    assert data.normalize_tag("dishes") == "dish"
    for same in ("glass", "octopus", "christmas", "clothes", "bus"):
        assert data.normalize_tag(same) == same
    lemma = data.build_lemma_map(["bird", "bird", "birds", "berries", "berry", "university", "universe"])
    assert lemma["birds"] == "bird" and lemma["berries"] == "berry"
    assert "university" not in lemma and "universe" not in lemma


@pytest.fixture(scope="module")
def tux(tmp_path_factory):
    examples = data.tuxpaint_examples()
    return data.build_dataset(examples, tmp_path_factory.mktemp("tux"))


def test_tuxpaint_tags_come_from_category_path_then_caption(tux):
    owl = next(e for e in tux.examples if e.id == "animals/birds/owl")
    assert owl.tags[:2] == ["animal", "bird"]
    assert "owl" in owl.tags and "a" not in owl.tags
    assert all(t == t.lower() and t.isalnum() for e in tux.examples for t in e.tags)
    assert len(tux.examples) >= 950


def test_split_has_no_group_leakage_and_mirrors_stay_with_originals(tux):
    split_of_group: dict[str, set[str]] = {}
    for e in tux.examples:
        split_of_group.setdefault(e.group, set()).add(e.split)
    assert all(len(s) == 1 for s in split_of_group.values())
    mirrors = [e for e in tux.examples if e.id.endswith("_mirror")]
    assert mirrors, "Tux Paint ships _mirror stamps"
    by_id = {e.id: e for e in tux.examples}
    for m in mirrors:
        original = by_id.get(m.id.removesuffix("_mirror"))
        if original is not None:
            assert original.split == m.split and original.group == m.group
    sizes = tux.manifest["splits"]
    assert sizes["train"] > 0.7 * len(tux.examples) and sizes["val"] > 50 and sizes["test"] > 50


def test_split_is_deterministic():
    assert [data.split_of(f"g{i}") for i in range(50)] == [data.split_of(f"g{i}") for i in range(50)]


def test_tables_and_vocabulary_round_trip(tux):
    loaded = data.load_dataset(tux.root)
    assert loaded.vocab.tags == tux.vocab.tags
    assert loaded.checksum == tux.checksum
    assert [(e.id, e.tags, e.split, e.group) for e in loaded.examples] == \
        [(e.id, e.tags, e.split, e.group) for e in tux.examples]
    vocab_json = json.loads((tux.root / "vocab.json").read_text())
    assert vocab_json["tags"][:3] == list(data.SPECIALS)
    ids = loaded.vocab.encode(["animal", "never-seen-tag", "bird"], max_len=8)
    assert loaded.vocab.decode(ids) == ["animal", "bird"]
    header = (tux.root / "captions.csv").read_text().splitlines()[0]
    assert header == "image_id,image,caption"
    # vocabulary comes from the training split only
    train_tags = {t for e in tux.examples if e.split == "train" for t in e.tags}
    assert set(loaded.vocab.tags[3:]) <= train_tags


def test_flickr8k_loader_on_fixture(tmp_path):
    root = FIXTURES / "flickr8k"
    examples = data.flickr8k_examples(root / "Flickr8k.token.txt", root / "Flicker8k_Dataset")
    assert [e.id for e in examples] == ["1000268201_693b08cb0e", "1001773457_577c3a7d70", "1002674143_1b742ab4b8"]
    girl, dogs, paint = examples
    assert girl.tags[0] == "girl" and {"pink", "dress", "wooden", "playhouse", "stair"} <= set(girl.tags)
    assert dogs.tags[0] == "dog" and "black" in dogs.tags
    assert "rainbow" in paint.tags
    assert len(girl.extra["captions"]) == 5
    ds = data.build_dataset(examples, tmp_path / "f8k", min_count=1, name="flickr8k")
    assert data.load_dataset(ds.root).manifest["images"] == 3


def test_csv_loader_on_fixture(tmp_path):
    examples = data.csv_examples(FIXTURES / "csv" / "hashtags.csv")
    assert [e.tags for e in examples] == [["cat", "animal", "pet"], ["beach", "sea", "summer"], ["tree", "nature"]]
    assert all(Path(e.image).is_file() for e in examples)


def test_loaders_reject_bad_files_clearly(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,tags\nx.png,cat\n")
    with pytest.raises(data.DatasetError, match="'image' and 'hashtags'"):
        data.csv_examples(bad)
    with pytest.raises(data.DatasetError, match="not found"):
        data.flickr8k_examples(tmp_path / "missing.txt", tmp_path)
    token = tmp_path / "Flickr8k.token.txt"
    token.write_text("no tab here\n")
    with pytest.raises(data.DatasetError, match=":1:"):
        data.flickr8k_examples(token, tmp_path)


def test_stale_grid_caches_of_older_data_are_pruned_others_kept(tmp_path):
    """A rebuilt dataset leaves ~240 MB grid files of its old version behind unless they are pruned."""
    import numpy as np

    from core.artifacts import save_arrays

    ds = data.build_dataset(data.csv_examples(FIXTURES / "csv" / "hashtags.csv"), tmp_path / "csv", name="csv")
    grid = {"grids": np.zeros((1, 2, 1, 1), np.float16)}
    save_arrays(ds.root / "grids-old", grid, {"kind": "hashtag-grids", "dataset": "an-older-checksum"})
    save_arrays(ds.root / "grids-lite2", grid, {"kind": "hashtag-grids", "dataset": ds.checksum})
    save_arrays(ds.root / "grids-other", grid, {"kind": "something-else", "dataset": "an-older-checksum"})
    removed = data.prune_stale_grids(ds)
    assert sorted(p.name for p in removed) == ["grids-old.json", "grids-old.npz"]
    left = sorted(p.name for p in ds.root.glob("grids-*"))
    assert left == ["grids-lite2.json", "grids-lite2.npz", "grids-other.json", "grids-other.npz"]
