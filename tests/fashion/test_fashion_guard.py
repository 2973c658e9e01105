"""The Fashion tab's garment guard: ImageNet classes under WordNet's clothing/footwear/bag/accessory branches.

A garment upload gets its similar items with no warning; a photo of something else (scikit-image's cat)
gets "this does not look like a garment" above the same results.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(),
                                 reason="Debian's wordnet-base is not installed"),
              pytest.mark.slow(reason="the garment guard: CNN and WordNet branches load in ~10 s, 15-25 s a test")]

WARNING = "does not look like a garment"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def cat_photo() -> Image.Image:
    from skimage import data as skdata

    return Image.fromarray(skdata.chelsea())


@pytest.fixture(scope="module")
def jeans() -> Image.Image:
    from fashion.data import load_catalog

    cat = load_catalog("tuxpaint-clothes")
    return cat.image(cat.ids.index("clothes/bluejeans1"))


def test_garment_classes_come_from_wordnet_branches():
    from core.concepts import concept_table, imagenet_synset_ids
    from fashion.guard import garment_classes

    mask = garment_classes()
    names = concept_table().class_names
    ids = imagenet_synset_ids()
    assert mask[ids.index("n03594734")] == 1  # jean
    assert mask[ids.index("n04120489")] == 1  # running shoe
    assert mask[ids.index("n02124075")] == 0  # Egyptian cat
    assert 30 <= mask.sum() <= 120, [names[i] for i in np.nonzero(mask)[0]]


def test_decision_on_a_garment_and_a_cat(jeans, cat_photo):
    from fashion.service import garment_check

    garment = garment_check(jeans)
    other = garment_check(cat_photo)
    assert garment.is_garment and not other.is_garment
    assert garment.mass > other.mass
    assert WARNING in other.warning and "cat" in other.warning.lower()


def test_only_the_shipped_clothes_catalogs_warn(jeans, cat_photo):
    """The shipped clothes catalogs are searched as ordinary catalogs but keep the garment warning; a person's own
    catalog may hold anything, so it is never second-guessed."""
    from fashion.service import garment_warning

    assert WARNING in garment_warning("tuxpaint-clothes", cat_photo)
    assert garment_warning("tuxpaint-clothes", jeans) is None
    assert garment_warning("my-shop", cat_photo) is None


def test_every_garment_root_is_a_named_hypernym():
    """The guard finds a class's branches among the hypernyms ``class_facts`` records, which are those with a
    one-word name: a root named only by compounds would silently match nothing."""
    from core.concepts import _naming_lemmas, wordnet
    from fashion.guard import GARMENT_ROOTS

    wn = wordnet()
    assert all(_naming_lemmas(wn, wn.synset(root)) for root in GARMENT_ROOTS)


def test_check_runs_the_classifier_once_per_photo(jeans, monkeypatch):
    """A rerun (a like, a filter change) asks again with the same photo, maybe as another object: no second pass."""
    from fashion import guard

    calls = []
    real = guard.classify
    monkeypatch.setattr(guard, "_answers", type(guard._answers)())
    monkeypatch.setattr(guard, "classify", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = guard.garment_check(jeans)
    again = guard.garment_check(jeans.copy())
    assert again == first and len(calls) == 1
    other = guard.garment_check(jeans.rotate(90, expand=True))
    assert len(calls) == 2 and other is not first


@pytest.fixture(scope="module")
def clothes_index(models_dir):
    """The shipped Tux Paint clothes as the tab offers them: an ordinary catalog of the catalog store."""
    from core.catalog.jobs import add_catalog

    return add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)


def _scores(at) -> list[str]:
    return [c.value for c in at.caption if " · score " in f" · {c.value}"]


def _tab():
    import ui.fashion

    ui.fashion.render()


def test_fashion_tab_warns_only_for_non_garments(clothes_index, jeans, cat_photo):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab, default_timeout=180).run()
    at.selectbox(key="fashion_catalog").set_value("tuxpaint-clothes").run()
    at.file_uploader(key="fashion_own_image").set_value(("jeans.png", _png(jeans), "image/png")).run()
    assert not at.exception
    assert not any(WARNING in w.value for w in at.warning)
    assert len(_scores(at)) == 10  # the default number of results

    at.file_uploader(key="fashion_own_image").set_value(("cat.png", _png(cat_photo), "image/png")).run()
    assert not at.exception
    assert any(WARNING in w.value for w in at.warning)
    assert len(_scores(at)) == 10  # the warning sits above the results, which are still shown
