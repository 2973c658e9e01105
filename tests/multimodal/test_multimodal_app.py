"""End to end on a tiny real index (40 Tux Paint stamps, real encoders): CLI search, the tab via AppTest, a browser.

The index is built once per session into the temporary RECS_MODELS_DIR that tests/conftest.py sets up, under
the default name, so the app started by the ``app_url`` fixture finds it as a user would after ``make run``.
"""

from __future__ import annotations

import json

import pytest

from multimodal.model import default_stem
from tests.paths import FIXTURES

pytestmark = pytest.mark.slow(reason="a real index of 40 stamps is built for the session")


@pytest.fixture(scope="session")
def tiny_index(models_dir):
    from multimodal.data import load_tuxpaint_catalog
    from multimodal.train import ProjectionConfig, build_index

    try:
        catalog = load_tuxpaint_catalog(limit=40)
    except Exception as exc:  # noqa: BLE001 - no Debian package and no apt on this machine
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    stem, built = build_index(catalog, projection_config=ProjectionConfig(epochs=40))  # few epochs: keep it fast
    assert built and stem == default_stem("tuxpaint")
    assert stem.parent.parent == models_dir
    return catalog


def test_index_is_skipped_when_fresh_and_manifest_records_both_encoders(tiny_index) -> None:
    from core.artifacts import read_json
    from multimodal.train import build_index

    _, built = build_index(tiny_index)
    assert not built
    manifest = read_json(default_stem("tuxpaint").with_suffix(".json"))
    assert manifest["text_encoder"]["name"] == "all-MiniLM-L6-v2"
    assert manifest["image_encoder"]["backbone"] == "efficientnet_lite0"
    assert manifest["data_checksum"] == tiny_index.checksum() and manifest["catalog"]["items"] == 40


def test_cli_search_json_text_image_both_and_like(tiny_index, capsys) -> None:
    from multimodal.__main__ import main

    item = tiny_index.products[5]
    for argv in (["--text", item.title], ["--image", str(item.image_path)],
                 ["--text", item.title, "--image", str(item.image_path), "--alpha", "0.3"]):
        assert main(["search", *argv, "--top", "3", "--json"]) == 0
        results = json.loads(capsys.readouterr().out)
        assert len(results) == 3 and {"id", "title", "category", "score"} <= set(results[0])
        assert results[0]["id"] == item.id or results[0]["title"] == item.title
    assert main(["search", "--like", item.id, "--top", "39", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 39 and item.id not in [r["id"] for r in results]
    assert main(["search", "--image", str(tiny_index.products[0].image_path.parent / "missing.png"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "No such image file" in err


def _app() -> None:
    import ui.multimodal

    ui.multimodal.render()


def test_tab_searches_by_words_then_more_like_this_then_rejects_a_bad_upload(tiny_index) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_app, default_timeout=180)
    at.run()
    assert not at.exception
    assert any("Type a few words" in i.value for i in at.info)
    assert "About this model" in [e.label for e in at.expander]
    item = tiny_index.products[3]
    at.text_input(key="mm_text").set_value(item.title).run()
    assert not at.exception and not at.error
    titles = [m.value for m in at.markdown if m.value.startswith("**") and not m.value.startswith("**Catalog")]
    assert f"**{item.title}**" in titles
    more = [b for b in at.button if b.key and b.key.startswith("mm_more_")]
    assert len(more) == 10
    at.button(key=f"mm_more_{item.id}").click().run()
    assert any(m.value.startswith("**More like:**") for m in at.markdown)
    assert f"mm_more_{item.id}" not in [b.key for b in at.button]  # the item itself is excluded
    at.button(key="mm_clear").click().run()
    at.multiselect(key="mm_cats").set_value([item.category]).run()
    cats = [c.value for c in at.caption if " · score " in c.value]
    assert cats and all(c.startswith(item.category) for c in cats)
    at.button(key=f"mm_more_{item.id}").click().run()
    assert any(m.value.startswith("**More like:**") for m in at.markdown)
    at.text_input(key="mm_text").set_value("a different query").run()  # new words end "more like this"
    assert not any(m.value.startswith("**More like:**") for m in at.markdown)
    at.file_uploader(key="mm_image").set_value(("x.png", b"not an image at all", "image/png")).run()
    assert any("Could not use that file" in e.value for e in at.error)
    assert not at.exception


@pytest.mark.browser
def test_browser_product_search_shows_result_images(tiny_index, browser_page, wait_images, artifacts_dir) -> None:
    page = browser_page
    page.get_by_role("tab", name="Product search").click()
    box = page.get_by_label("Search words")
    box.wait_for()
    box.fill(tiny_index.products[3].title)
    box.press("Enter")
    page.get_by_role("button", name="More like this").nth(4).wait_for()  # results stream in: wait for the fifth
    wait_images(page, 5)
    page.screenshot(path=str(artifacts_dir / "multimodal-search.png"), full_page=True)
    assert page.get_by_role("button", name="More like this").count() >= 5


def test_evaluate_runs_the_whole_protocol_on_the_tiny_catalog(tiny_index) -> None:
    from multimodal.evaluate import bars, evaluate

    result = evaluate(tiny_index, imagenet_baseline=False, cache=False)
    methods = result["methods"]
    assert {"text:minilm", "text:tfidf", "text:projection", "image", "fused"} <= set(methods)
    for metrics in methods.values():
        assert {"recall@1", "recall@5", "recall@10", "mrr"} <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("recall@1", "recall@5", "recall@10", "mrr"))
    assert 0.0 <= result["details"]["fusion"]["alpha"] <= 1.0
    assert set(bars(result)) and result["details"]["split"]["test_products"] > 0


@pytest.mark.parametrize("kind, path", [("fashion", "fashion"), ("csv", "csv/catalog.csv")])
def test_user_catalogs_index_and_search_end_to_end(kind, path, tmp_path) -> None:

    from multimodal.data import load_catalog
    from multimodal.model import MultimodalIndex
    from multimodal.service import SearchService
    from multimodal.train import ProjectionConfig, build_index

    catalog = load_catalog(kind, FIXTURES / "multimodal" / path)
    stem, built = build_index(catalog, stem=tmp_path / kind, projection_config=ProjectionConfig(epochs=5))
    assert built
    service = SearchService(MultimodalIndex.load(stem))
    first = catalog.products[0]
    hits = service.search(text=first.title, k=3)
    assert hits[0].id == first.id
    hits = service.search(image=str(first.image_path), k=2)
    assert hits[0].id == first.id and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert first.id not in [h.id for h in service.more_like_this(first.id, k=len(catalog))]


def test_grid_thumbnails_send_svg_markup_and_png_thumbnails(tmp_path) -> None:
    """An SVG product picture goes to the browser as its own markup (no server-side rasterising, the costly
    part of a search); a raster picture becomes a small PNG; an SVG that is not SVG markup is rasterised or
    refused, never sent as text."""
    from PIL import Image

    from multimodal.data import load_tuxpaint_catalog
    from ui.multimodal import SVG_MARKUP, _thumb

    svg = next(p.image_path for p in load_tuxpaint_catalog().products if str(p.image_path).endswith(".svg"))
    markup = _thumb(str(svg))
    assert isinstance(markup, str) and SVG_MARKUP.search(markup)
    png = tmp_path / "big.png"
    Image.new("RGB", (800, 600), "red").save(png)
    thumb = _thumb(str(png))
    assert isinstance(thumb, bytes) and thumb[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    assert max(Image.open(BytesIO(thumb)).size) <= 200
    fake = tmp_path / "not.svg"
    fake.write_text("hello, not a picture")
    assert not isinstance(_thumb(str(fake)), str)
