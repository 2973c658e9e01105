"""Fashion tab: loaders on fixtures in the exact real formats, query preprocessing, index, CLI, app."""

from __future__ import annotations

import re

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.artifacts import ArtifactError
from core.datasets import DataUnavailable
from fashion.data import KAGGLE_COLUMNS, load_catalog, load_folder, load_kaggle, read_idx
from fashion.model import FashionIndex, index_stem, to_fashion_mnist_style
from fashion.train import build_index, open_index

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# loaders


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_fixture(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    cat = load_catalog("fashion-mnist", root=tmp_path)
    assert len(cat) == 10 and cat.grey28
    assert list(cat.split) == ["train"] * 6 + ["test"] * 4
    assert cat.labels[:2] == ["T-shirt/top", "Trouser"] and cat.ids[6] == "test-00000"
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataUnavailable, match="truncated"):
        read_idx(tmp_path / "bad.gz")


def _jpeg(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (60, 80), "white")
    ImageDraw.Draw(img).rectangle((10, 10, 50, 70), fill=colour)
    img.save(path, "JPEG")


def test_kaggle_fixture_counts_malformed_rows(tmp_path):
    rows = [
        ",".join(KAGGLE_COLUMNS),
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt",
        "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans",
        # a real styles.csv quirk: unquoted commas in the name give too many fields
        "12345,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Sassy, Red, Top",
        "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch",
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Duplicate row",
    ]
    (tmp_path / "styles.csv").write_text("\n".join(rows) + "\n")
    for item, colour in (("15970", "navy"), ("39386", "blue")):  # 59263 has no image
        _jpeg(tmp_path / "images" / f"{item}.jpg", colour)
    cat = load_catalog(str(tmp_path))
    assert cat.ids == ["15970", "39386"]
    assert cat.labels == ["Shirts", "Jeans"]
    assert cat.titles[1] == "Peter England Men Party Blue Jeans"
    assert cat.report == {"rows": 5, "malformed": 1, "missing_image": 1, "duplicates": 1}
    assert load_kaggle(tmp_path, label_column="baseColour").labels == ["Navy Blue", "Blue"]


def test_folder_of_images(tmp_path):
    _jpeg(tmp_path / "shirts" / "a.jpg", "red")
    _jpeg(tmp_path / "shoes" / "b.jpg", "black")
    (tmp_path / "notes.txt").write_text("not an image")
    cat = load_folder(tmp_path)
    assert cat.ids == ["shirts/a", "shoes/b"] and cat.labels == ["shirts", "shoes"]
    with pytest.raises(DataUnavailable):
        load_catalog(str(tmp_path / "missing"))


def test_fashion_mnist_style_query():
    photo = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(photo).rectangle((100, 20, 160, 180), fill=(20, 20, 120))  # a dark garment on white
    look = to_fashion_mnist_style(photo)
    assert look.shape == (28, 28) and look.dtype == np.uint8
    rows, cols = np.nonzero(look > 50)
    assert rows.max() - rows.min() + 1 == 28  # longest side scaled to 28 px
    assert look[0, 0] == 0 and look[14, 14] > 200  # background black, garment bright, as in Fashion-MNIST
    assert not to_fashion_mnist_style(Image.new("RGB", (50, 50), "white")).any()


# ---------------------------------------------------------------------------------------------
# index on the Tux Paint clothes catalog (48 colour images; built once per session, ~10 s)


@pytest.fixture(scope="session")
def clothes_index(models_dir):
    index, built = build_index("tuxpaint-clothes", force=True)  # another test module may have built it already
    assert built
    return index


def test_index_records_what_made_it(clothes_index):
    manifest = clothes_index.manifest
    assert manifest["kind"] == "fashion-index" and manifest["encoder"]["backbone"] == "efficientnet_lite0"
    assert manifest["encoder"]["pooling"] == "max" and len(manifest["data"]) == 16 and "torch" in manifest["versions"]
    again, built = build_index("tuxpaint-clothes")  # fresh: skipped
    assert not built and again.ids == clothes_index.ids


def test_upload_keeps_its_best_match_and_similar_excludes_itself(clothes_index):
    cat = load_catalog("tuxpaint-clothes")
    row = cat.ids.index("clothes/bluejeans1")
    hits = clothes_index.search(cat.image(row), 5)
    assert hits[0].id == "clothes/bluejeans1" and hits[0].score > 0.99
    similar = clothes_index.similar("clothes/bluejeans1", 5)
    assert "clothes/bluejeans1" not in [h.id for h in similar]
    assert similar[0].id == "clothes/bluejeans2"  # the other pair of jeans
    assert all(h.meta["label"] == "hats" for h in clothes_index.search(cat.image(row), 5, ["hats"]))


def test_stale_and_corrupt_index(clothes_index):
    stem = index_stem("tuxpaint-clothes")
    with pytest.raises(ArtifactError, match="stale"):
        FashionIndex.load(stem, expect={"data": "something-else"})
    backup = stem.with_suffix(".npz").read_bytes()
    try:
        stem.with_suffix(".npz").write_bytes(backup[:100])
        with pytest.raises(ArtifactError, match="python -m fashion index"):
            open_index("tuxpaint-clothes")
    finally:
        stem.with_suffix(".npz").write_bytes(backup)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow(reason="python -m fashion processes")
def test_cli_search_json_and_bad_input(clothes_index, tmp_path):
    query = tmp_path / "query.png"
    load_catalog("tuxpaint-clothes").image(0).save(query)
    out = _cli("search", str(query), "--catalog", "tuxpaint-clothes", "--top", "3", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 3 and {"id", "label", "score"} <= set(hits[0]) and hits[0]["score"] >= hits[1]["score"]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    out = _cli("search", str(bad), "--catalog", "tuxpaint-clothes", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().startswith("error:") and "Traceback" not in out.stderr
    out = _cli("search", str(query), "--catalog", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow(reason="encodes and evaluates a sample")
def test_evaluate_on_a_fashion_mnist_sample(models_dir):
    """The evaluation runs end to end on a seeded sample and the learned projection beats frozen features."""
    from fashion.data import load_fashion_mnist
    from fashion.evaluate import evaluate

    try:
        full = load_fashion_mnist(install=False)
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.where(full.split == "train")[0], 3000, replace=False),
                           rng.choice(np.where(full.split == "test")[0], 300, replace=False)])
    results = evaluate(catalog=full.subset(rows))
    assert {"model", "frozen", "pixel_knn", "photo:catalog_look", "photo:plain"} <= set(results)
    assert results["model"]["queries"] == 300
    assert results["model"]["precision@10"] > results["frozen"]["precision@10"]
    assert 0.5 < results["pixel_knn"]["precision@10"] < 0.95


# ---------------------------------------------------------------------------------------------
# the tab


def _tab():
    import ui.fashion

    ui.fashion.render()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def clothes_catalog(models_dir):
    """The shipped Tux Paint clothes as the tab offers them: an ordinary catalog of the catalog store."""
    from core.catalog.jobs import add_catalog

    return add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)


def _scores(at) -> list[str]:
    return [c.value for c in at.caption if " · score " in f" · {c.value}"]


@pytest.mark.slow(reason="AppTest of the Fashion tab on the shipped clothes catalog (~6 s)")
def test_app_tab_upload_filter_and_bad_file(clothes_catalog):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab, default_timeout=180).run()
    at.selectbox(key="fashion_catalog").set_value("tuxpaint-clothes").run()
    assert not at.exception
    assert "About this model" in [e.label for e in at.expander]  # unmeasured catalog: the card says so
    assert any("not measured yet" in m.value for m in at.markdown)
    photo = load_catalog("tuxpaint-clothes").image(4)
    at.file_uploader(key="fashion_own_image").set_value(("jeans.png", _png(photo), "image/png")).run()
    assert not at.exception and not at.error
    assert len(_scores(at)) == 10  # the default number of results
    at.slider(key="fashion_own_top").set_value(5).run()
    at.multiselect(key="fashion_own_cats").set_value(["hats"]).run()
    kinds = [caption.split(" · ")[0] for caption in _scores(at)]
    assert kinds and set(kinds) == {"hats"}
    at.file_uploader(key="fashion_own_image").set_value(("x.png", b"this is not a picture", "image/png")).run()
    assert not at.exception
    assert at.error


@pytest.mark.slow(reason="browser")
@pytest.mark.browser
def test_browser_upload_shows_similar_items(clothes_catalog, browser_page, wait_images, artifacts_dir, tmp_path):
    page = browser_page
    page.get_by_role("tab", name="Fashion").click()
    panel = page.get_by_role("tabpanel", name="Fashion")  # the tabs are lazy: the Fashion tab runs on this click
    panel.get_by_role("combobox").first.click()
    page.get_by_role("option", name="Tux Paint clothes").click()
    query = tmp_path / "garment.png"
    load_catalog("tuxpaint-clothes").image(4).save(query)
    panel.get_by_text("Photo to match (JPEG, PNG, WebP)", exact=True).wait_for()
    panel.locator('input[type="file"]').first.set_input_files(str(query))
    # results stream in: wait until the default 10 have rendered (fails by timeout if they never do)
    page.wait_for_function("() => (document.body.innerText.match(/score \\d/g) || []).length >= 10")
    wait_images(page, 10)
    page.screenshot(path=str(artifacts_dir / "fashion.png"), full_page=True)
    # what the user sees: ten results, and the uploaded garment's own catalog item first (the grid's first cell;
    # the page reads column by column, so only the first value's place is fixed)
    shown = [float(x) for x in re.findall(r"score (\d\.\d{3})", panel.inner_text())]
    assert len(shown) >= 10 and shown[0] == max(shown) >= 0.99, shown
    title = load_catalog("tuxpaint-clothes").titles[4]
    assert panel.get_by_text(title, exact=True).first.is_visible(), title
