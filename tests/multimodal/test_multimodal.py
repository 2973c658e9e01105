"""Multimodal search without the heavy encoders: fusion maths, query modes, projection training, loaders, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from multimodal.data import (CatalogError, Product, load_catalog, load_csv_catalog, load_fashion_catalog, paraphrase,
                             split_groups)
from multimodal.evaluate import rank_metrics
from multimodal.model import MultimodalIndex, Projection, fuse, l2n
from multimodal.train import ProjectionConfig, positive_mask, train_projection
from tests.paths import FIXTURES

FIX = FIXTURES / "multimodal"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return l2n(rng.normal(size=(n, d)).astype(np.float32))


def _index(n: int = 12, seed: int = 0, projection: bool = False) -> MultimodalIndex:
    rng = np.random.default_rng(seed)
    text, image = _unit(rng, n, 8), _unit(rng, n, 16)
    cats = ["a" if i % 2 == 0 else "b" for i in range(n)]
    proj = Projection(rng.normal(size=(16, 8)).astype(np.float32), np.zeros(8, np.float32), {}) if projection else None
    return MultimodalIndex([f"id{i}" for i in range(n)], [f"t{i}" for i in range(n)], cats,
                           [f"/x/{i}.png" for i in range(n)], text, image, projection=proj)


# -- fusion maths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_fused_cosine_is_the_alpha_weighted_mean_of_the_two_cosines(alpha: float) -> None:
    rng = np.random.default_rng(1)
    t, i = _unit(rng, 5, 8), _unit(rng, 5, 16)
    f = fuse(t, i, alpha)
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    expected = alpha * (t @ t.T) + (1 - alpha) * (i @ i.T)
    assert np.allclose(f @ f.T, expected, atol=1e-5)


def test_fuse_normalises_its_inputs_and_rejects_bad_alpha() -> None:
    t, i = np.array([[3.0, 4.0]]), np.array([[0.0, 2.0, 0.0]])
    f = fuse(t, i, 0.5)
    assert np.allclose(f, [[0.6 * math.sqrt(0.5), 0.8 * math.sqrt(0.5), 0.0, math.sqrt(0.5), 0.0]], atol=1e-6)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            fuse(t, i, bad)


def test_query_time_weighting_ranks_exactly_like_stored_fused_vectors() -> None:
    idx = _index(20, seed=2)
    rng = np.random.default_rng(3)
    qt, qi = _unit(rng, 1, 8)[0], _unit(rng, 1, 16)[0]
    for alpha in (0.2, 0.5, 0.8):
        hits = idx.search(text_vec=qt, image_vec=qi, alpha=alpha, k=20)
        stored = fuse(idx.text, idx.image, alpha) @ fuse(qt[None], qi[None], alpha)[0]
        assert [h.id for h in hits] == [f"id{j}" for j in np.argsort(-stored, kind="stable")]
        assert np.allclose([h.score for h in hits], np.sort(stored)[::-1], atol=1e-5)


# -- query modes -------------------------------------------------------------------------------------

def test_text_only_uses_the_text_part_and_image_only_the_image_part() -> None:
    idx = _index()
    hits = idx.search(text_vec=idx.text[3], k=3)
    assert hits[0].id == "id3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].image_score is None and np.allclose(
        [h.score for h in hits], np.sort(idx.text @ idx.text[3])[::-1][:3], atol=1e-5)
    hits = idx.search(image_vec=idx.image[7], k=3)
    assert hits[0].id == "id7" and hits[0].text_score is None
    assert np.allclose([h.score for h in hits], np.sort(idx.image @ idx.image[7])[::-1][:3], atol=1e-5)


def test_fused_query_reports_both_cosines_and_alpha_extremes_reduce_to_one_modality() -> None:
    idx = _index()
    hits = idx.search(text_vec=idx.text[1], image_vec=idx.image[5], alpha=0.5, k=4)
    for h in hits:
        assert h.score == pytest.approx(0.5 * h.text_score + 0.5 * h.image_score, abs=1e-5)
    only_text = idx.search(text_vec=idx.text[1], image_vec=idx.image[5], alpha=1.0, k=4)
    assert [h.id for h in only_text] == [h.id for h in idx.search(text_vec=idx.text[1], k=4)]
    only_image = idx.search(text_vec=idx.text[1], image_vec=idx.image[5], alpha=0.0, k=4)
    assert [h.id for h in only_image] == [h.id for h in idx.search(image_vec=idx.image[5], k=4)]


def test_more_like_this_never_returns_the_item_itself_and_filters_work() -> None:
    idx = _index()
    for alpha in (0.0, 0.5, 1.0):
        hits = idx.more_like_this("id4", alpha=alpha, k=11)
        assert len(hits) == 11 and "id4" not in [h.id for h in hits]
    hits = idx.search(text_vec=idx.text[0], k=12, categories=["b"])
    assert hits and all(h.category == "b" for h in hits) and len(hits) == 6
    with pytest.raises(KeyError):
        idx.more_like_this("nope")
    with pytest.raises(ValueError):
        idx.search(k=3)


def test_items_without_text_are_found_by_words_only_through_the_projection() -> None:
    idx = _index(projection=True)
    text = idx.text.copy()
    text[2] = 0.0  # product 2 has no text
    bare = MultimodalIndex(idx.ids, idx.titles, idx.categories, idx.image_paths, text, idx.image)
    assert not bare.has_text[2]
    q = idx.projection(idx.image[2:3])[0]
    assert {h.id: h.score for h in bare.search(text_vec=q, k=12)}["id2"] == pytest.approx(0.0, abs=1e-6)
    with_proj = MultimodalIndex(idx.ids, idx.titles, idx.categories, idx.image_paths, text, idx.image,
                                projection=idx.projection)
    assert with_proj.search(text_vec=q, k=1)[0].id == "id2"
    mixed = with_proj.search(text_vec=idx.text[5], k=12, picture_weight=0.5)
    row = {h.id: h for h in mixed}["id5"]
    expected = 0.5 * 1.0 + 0.5 * float(with_proj.projected[5] @ idx.text[5])
    assert row.score == pytest.approx(expected, abs=1e-5)


def test_index_round_trips_through_npz_without_pickle(tmp_path: Path) -> None:
    idx = _index(projection=True)
    idx.save(tmp_path / "tiny", {"data_checksum": "abc"})
    idx.projection.info = {"index_checksum": "abc"}
    idx.projection.save(tmp_path / "tiny-projection")
    back = MultimodalIndex.load(tmp_path / "tiny")
    assert back.ids == idx.ids and back.categories == idx.categories
    assert np.allclose(back.text, idx.text) and back.projection is not None
    with np.load(tmp_path / "tiny.npz", allow_pickle=False) as z:
        assert z["ids"].dtype.kind == "U"


# -- projection training ----------------------------------------------------------------------------

def test_projection_training_loss_falls_and_learns_the_pairing() -> None:
    rng = np.random.default_rng(0)
    n, d_img, d_txt = 64, 32, 12
    true_map = rng.normal(size=(d_img, d_txt))
    image = _unit(rng, n, d_img)
    text = l2n(image @ true_map)
    texts = [f"caption {i}" for i in range(n)]
    proj, losses = train_projection([image], text, texts, ProjectionConfig(epochs=60, batch_size=32, input_dropout=0.0))
    assert losses[-1] < 0.5 * losses[0]
    top1 = np.argmax(proj(image) @ text.T, axis=1)
    assert np.mean(top1 == np.arange(n)) > 0.8
    assert proj.weight.shape == (d_img, d_txt)


def test_repeated_captions_are_positives_not_negatives() -> None:
    mask = positive_mask(["Hair.", "hair.", "A hat."])
    assert mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]


# -- loaders ---------------------------------------------------------------------------------------

def test_fashion_loader_skips_and_counts_malformed_rows_and_missing_images() -> None:
    cat = load_fashion_catalog(FIX / "fashion")
    assert [p.id for p in cat.products] == ["15970", "39386", "59263", "21379", "53759"]
    assert cat.skipped["malformed_rows"] == 1 and cat.skipped["missing_image"] == 1
    shirt = cat.products[0]
    assert shirt.title == "Turtle Check Men Navy Blue Shirt"
    assert shirt.category == "Apparel/Topwear/Shirts"
    assert "Navy Blue" in shirt.text and "Shirts" in shirt.text
    assert shirt.image_path.name == "15970.jpg"
    custom = load_fashion_catalog(FIX / "fashion", text_fields=("productDisplayName",), relevance_levels=2)
    assert custom.products[0].text == "Turtle Check Men Navy Blue Shirt." and custom.products[0].category == \
        "Apparel/Topwear"


def test_csv_loader_refuses_paths_outside_the_image_folder_and_missing_files() -> None:
    cat = load_csv_catalog(FIX / "csv" / "catalog.csv")
    assert cat.ids == ["p1", "p2", "p3", "p4"]
    assert cat.skipped["missing_image"] == 2
    assert cat.products[0].category == "kitchen/mugs"
    assert cat.products[0].text.startswith("Red mug. A red ceramic coffee mug")
    assert load_catalog("csv", FIX / "csv" / "catalog.csv").ids == cat.ids
    with pytest.raises(CatalogError):
        load_csv_catalog(FIX / "csv" / "catalog.csv", id_column="sku")
    with pytest.raises(CatalogError):
        load_catalog("fashion", FIX / "csv")


def test_fixture_images_are_real_jpegs() -> None:
    from PIL import Image

    with Image.open(FIX / "fashion" / "images" / "15970.jpg") as im:
        assert im.format == "JPEG" and im.size == (32, 32)


def test_tuxpaint_catalog_has_no_mirror_copies_and_splits_by_group() -> None:
    pytest.importorskip("cairosvg")
    try:
        cat = load_catalog("tuxpaint")
    except Exception as exc:  # noqa: BLE001 - the Debian package may be absent on a dev box
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    assert len(cat) >= 900
    assert not any(p.is_mirror or p.id.endswith("_mirror") for p in cat.products)  # one product per stamp
    train, test = split_groups(cat.products)
    side = {cat.products[i].group: "train" for i in train}
    side.update({cat.products[i].group: "test" for i in test})
    assert not set(cat.products[i].group for i in train) & set(cat.products[i].group for i in test)
    assert 0.15 < len(test) / len(cat) < 0.25
    owl = next(p for p in cat.products if p.id == "animals/birds/owl")
    assert owl.category == "animals/birds" and owl.text.startswith("An owl")
    assert paraphrase(owl) == "owl"


def test_paraphrase_uses_the_name_not_the_caption() -> None:
    p = Product("animals/birds/heron_greatblue", "A great blue heron", "x", "animals/birds", Path("x.png"), "g",
                fields={"name": "heron greatblue"})
    assert paraphrase(p) == "heron greatblue"
    p2 = Product("animals/amphibians/frog-1", "A frog", "x", "animals/amphibians", Path("x.png"), "g",
                 fields={"name": "frog 1"})
    assert paraphrase(p2) == "frog"


# -- metrics ---------------------------------------------------------------------------------------

def test_rank_metrics_on_a_hand_worked_example() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.9], [0.5, 0.5, 0.5, 0.5]])
    relevant = np.array([[False, True, False, False], [True, True, False, False], [False, False, False, False]])
    m = rank_metrics(scores, relevant, ks=(1, 2))
    assert m["queries"] == 2  # the query with no relevant item is dropped
    assert m["recall@1"] == pytest.approx(0.0)
    assert m["recall@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


# -- CLI input checking (no model is loaded for these) -----------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["search", "--top", "3"], "give --text"),
    (["search", "--text", "hat", "--alpha", "2"], "--alpha"),
    (["search", "--text", "   "], "empty"),
    (["search", "--text", "hat", "--top", "0"], "--top"),
    (["search", "--like", "x", "--text", "hat"], "--like"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, fragment, capsys) -> None:
    from multimodal.__main__ import main

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_image_fails_before_loading_models(capsys) -> None:
    from multimodal.__main__ import main

    assert main(["search", "--image", "/no/such/photo.jpg", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "error: No such image file: /no/such/photo.jpg"


def test_svg_with_internal_entities_is_rasterised_and_external_ones_are_not_resolved(tmp_path: Path) -> None:
    pytest.importorskip("cairosvg")
    from core.images import ImageError
    from multimodal.data import load_product_image

    svg = tmp_path / "bread.svg"
    svg.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd" [\n'
        '  <!ENTITY ns_svg "http://www.w3.org/2000/svg">\n]>\n'
        '<svg xmlns="&ns_svg;" width="20" height="20"><rect width="20" height="10" fill="#ff0000"/></svg>\n'
    )
    img = load_product_image(svg)
    assert img.mode == "RGB" and img.getpixel((img.width // 2, 2))[0] > 200
    evil = tmp_path / "evil.svg"
    evil.write_text('<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                    '<svg xmlns="http://www.w3.org/2000/svg" width="5" height="5"><text>&x;</text></svg>\n')
    with pytest.raises(ImageError):
        load_product_image(evil)
