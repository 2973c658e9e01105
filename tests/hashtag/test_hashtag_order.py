"""The order a person writes hashtags in (``hashtag.order``) and the subject metrics (``hashtag.subjects``).

Pure list logic: no model, no encoder. Each test breaks when its rule does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hashtag.order import NO_ORDER, ORDER, GENERAL_WORDS, OrderRule, near_duplicate, order_tags, variant_key
from hashtag.subjects import SubjectPhoto, candidate_ceiling, load_subject_set, subject_scores


def _tags(items):
    return [t for t, _, _ in items]


@pytest.mark.parametrize("a,b", [("tabby", "tabbycat"), ("horse", "horses"), ("clock", "wallclock"),
                                 ("berry", "berries"), ("colour", "color"), ("theatre", "theater"),
                                 ("pepper", "bellpepper"), ("grey", "gray")])
def test_near_duplicates_collapse(a, b):
    assert near_duplicate(a, b) and near_duplicate(b, a)


@pytest.mark.parametrize("a,b", [("ox", "box"), ("cat", "dog"), ("bus", "business"), ("glass", "glasses2"),
                                 ("car", "cart")])
def test_different_words_stay_apart(a, b):
    assert not near_duplicate(a, b)


def test_variant_key_keeps_words_that_only_look_plural():
    assert variant_key("glass") == "glass" and variant_key("octopus") == "octopus"
    assert variant_key("horses") == variant_key("horse")


def test_general_words_go_last_and_duplicates_give_their_place_away():
    ranked = [("animal", 0.9, "concept"), ("cow", 0.8, "concept"), ("cows", 0.7, "concept"),
              ("cattle", 0.6, "concept"), ("farm", 0.5, "concept"), ("grass", 0.4, "concept")]
    out = _tags(order_tags(ranked, rule=OrderRule(family_second=False)))
    assert out == ["cow", "cattle", "farm", "grass", "animal"]
    assert _tags(order_tags(ranked, rule=NO_ORDER)) == _tags(ranked)  # every rule off: untouched


def test_a_general_word_that_earned_a_shown_place_keeps_it_behind_the_specific_ones():
    ranked = [("animal", 0.9, "concept"), ("cow", 0.8, "concept"), ("farm", 0.5, "concept"), ("grass", 0.4, "concept")]
    assert _tags(order_tags(ranked, rule=OrderRule(family_second=False), k=3)) == ["cow", "farm", "animal", "grass"]
    assert _tags(order_tags(ranked, rule=OrderRule(family_second=False, general_out=True), k=3)) == \
        ["cow", "farm", "grass", "animal"]


def test_the_higher_ranked_form_survives_a_collapse():
    ranked = [("tabbycat", 0.5, "concept"), ("tabby", 0.4, "concept"), ("cat", 0.3, "concept")]
    assert _tags(order_tags(ranked, rule=OrderRule(collapse_head=False))) == ["tabbycat", "cat"]
    assert _tags(order_tags(ranked, rule=OrderRule(collapse_head=True))) == ["tabbycat"]


def test_family_word_moves_right_behind_the_subject():
    family = {("hammer", "tool")}
    ranked = [("hammer", 0.9, "concept"), ("nail", 0.6, "concept"), ("wood", 0.5, "concept"), ("tool", 0.4, "concept")]
    out = _tags(order_tags(ranked, family=lambda a, b: (a, b) in family))
    assert out == ["hammer", "tool", "nail", "wood"]
    assert _tags(order_tags(ranked, rule=OrderRule(family_second=False), family=lambda a, b: (a, b) in family)) == \
        ["hammer", "nail", "wood", "tool"]


def test_clip_art_corpus_words_stay_off_photos_only():
    ranked = [("cup", 0.9, "concept"), ("household", 0.8, "learned"), ("cartoon", 0.7, "learned"),
              ("dish", 0.5, "both")]
    assert _tags(order_tags(ranked, is_photo=True)) == ["cup", "dish"]
    assert _tags(order_tags(ranked, is_photo=False)) == ["cup", "household", "cartoon", "dish"]


def test_default_rule_has_every_rule_on_and_general_words_cover_the_kingdoms():
    assert ORDER.collapse and ORDER.general_last and ORDER.photo_words_only
    assert {"animal", "object", "organism", "artifact"} <= GENERAL_WORDS


def test_subject_scores_per_group_with_intervals(tmp_path: Path):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    photos = [SubjectPhoto(img, "cow", frozenset({"cow", "cattle"}), "animals"),
              SubjectPhoto(img, "hammer", frozenset({"hammer"}), "objects"),
              SubjectPhoto(img, "barn", frozenset({"barn"}), "scenes")]
    tags = [["cow", "animal"], ["tool", "nail", "cartoon", "x", "hammer"], ["field"]]
    s = subject_scores(tags, photos)
    assert s["subject@1"] == pytest.approx(1 / 3, abs=1e-3) and s["subject@5"] == pytest.approx(2 / 3, abs=1e-3)
    assert s["tuxpaint@5"] == pytest.approx(1 / 3, abs=1e-3)
    assert s["by_group"]["objects"]["subject@1"] == 0.0 and s["by_group"]["objects"]["subject@5"] == 1.0
    assert s["by_group"]["animals"]["photos"] == 1
    lo, hi = s["subject@5_ci95"]
    assert 0.0 <= lo <= s["subject@5"] <= hi <= 1.0


def test_candidate_ceiling_counts_a_subject_anywhere_among_the_candidates_per_group(tmp_path: Path):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    photos = [SubjectPhoto(img, "cow", frozenset({"cow", "cattle"}), "animals"),
              SubjectPhoto(img, "barn", frozenset({"barn"}), "scenes"),
              SubjectPhoto(img, "tower", frozenset({"tower", "lighthouse"}), "scenes")]
    # the subject 12th still counts (no ordering can do better than the candidates); a family word does not
    candidates = [["animal", *(f"w{i}" for i in range(10)), "cattle"], ["building", "house"], ["lighthouse"]]
    c = candidate_ceiling(candidates, photos)
    assert c["ceiling"] == pytest.approx(2 / 3, abs=1e-3) and c["photos"] == 3
    assert c["by_group"]["scenes"]["ceiling"] == 0.5 and c["by_group"]["animals"]["ceiling"] == 1.0
    lo, hi = c["ceiling_ci95"]
    assert 0.0 <= lo <= c["ceiling"] <= hi <= 1.0


def test_more_dev_subjects_share_no_photo_with_any_other_labelled_set():
    import csv

    root = Path(__file__).resolve().parents[2]
    dev = root / "bench" / "checksets" / "hashtag_dev_subjects.csv"
    rows = list(csv.DictReader(dev.open(encoding="utf-8")))
    assert len(rows) >= 20 and all(r["label"] and r["group"] for r in rows)

    def member(path: str) -> str:  # the photo itself, whichever archive spelling a set uses
        return path.split("!")[-1].lstrip("/")

    ours = {member(r["path"]) for r in rows}
    for other in [*(root / "bench" / "checksets").glob("*.csv"), *(root / "hashtag").glob("*.csv")]:
        reader = csv.DictReader(other.open(encoding="utf-8"))
        if other == dev or reader.fieldnames == ["package", "path"]:
            continue  # the int8 list has no labels: it compares fp32 with int8 outputs, and nothing is chosen on it
        theirs = {member(r.get("path", "")) for r in reader}
        assert not ours & theirs, f"{other.name} shares photos with the dev subjects"


def test_subject_csv_resolves_relative_paths_and_skips_missing(tmp_path: Path):
    (tmp_path / "cow.jpg").write_bytes(b"x")
    csv = tmp_path / "set.csv"
    csv.write_text("path,subject,acceptable,group\ncow.jpg,Cow,cattle #ox,Animals\nnone.jpg,hammer,tool,objects\n")
    photos = load_subject_set(csv)
    assert len(photos) == 1
    assert photos[0].acceptable == {"cow", "cattle", "ox"} and photos[0].group == "animals"


def test_dev_subjects_cover_every_group():
    photos = load_subject_set()  # the dev photos that are installed here
    if len(photos) < 10:
        pytest.skip("the dev photo packages are not installed")
    assert {p.group for p in photos} == {"animals", "objects", "scenes"}
    assert all(p.subject in p.acceptable for p in photos)


def test_cutout_guard_keeps_the_decoder_off_opaque_pictures_the_gate_calls_clip_art():
    import numpy as np

    from hashtag.concepts import FusionRule

    rule = FusionRule(near=0.4, far=0.0, threshold=0.71, cutout=0.01)
    gate = np.array([0.95, 0.95, 0.2])
    see_through = np.array([0.6, 0.0, 0.6])  # a stamp, an opaque product photo on white, a photo with alpha
    assert rule.weights(gate, transparent=see_through).tolist() == [0.4, 0.0, 0.0]
    assert rule.weights(gate).tolist() == [0.4, 0.4, 0.0]  # transparency unknown: the gate alone decides
    assert FusionRule(near=0.4, far=0.0, threshold=0.71).weights(gate, transparent=see_through).tolist() == \
        [0.4, 0.4, 0.0]  # guard off


def test_transparency_is_recorded_when_an_alpha_channel_is_composited(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from core.images import load_image
    from hashtag.gate import transparency

    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15] = (200, 30, 30, 255)  # a red square on a fully transparent background
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert transparency(load_image(buf.getvalue())) == 0.75
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="JPEG")
    assert transparency(load_image(buf.getvalue())) == 0.0


def test_picture_says_why_an_opaque_picture_counts_as_a_photo():
    from hashtag.service import Picture

    shot = Picture(likeness=0.95, threshold=0.71, decoder_weight=0.0, gate="photo gate", transparent=0.0, cutout=0.01)
    stamp = Picture(likeness=0.95, threshold=0.71, decoder_weight=0.4, gate="photo gate", transparent=0.5, cutout=0.01)
    assert shot.is_photo and "no transparent background" in shot.sentence()
    assert not stamp.is_photo and stamp.sentence().startswith("Looks like the pictures the decoder learned from")
    assert shot.to_json()["transparent"] == 0.0
