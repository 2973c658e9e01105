"""The shipped Tux Paint catalog as an ordinary catalog: built by ``core.catalog`` from ``shipped:tuxpaint``, with
Product search's tuned head (product text, image→text projection, fusion weight) fitted on top of it.

Real stamps and real encoders, on an evenly spaced subset of 40 stamps (the one ``load_tuxpaint_catalog(limit=40)``
keeps), in a private models folder so the session's other Tux Paint index is left alone. The head is compared
with the index the tab built before, from the same stamps, on fixed queries.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core import artifacts
from core.artifacts import read_json
from core.catalog import jobs as catalog_jobs
from core.catalog import sources as catalog_sources
from core.catalog.jobs import add_catalog
from core.catalog.sources import CatalogError
from core.catalog.store import BuiltCatalog, folder_of, open_catalog
from core.images import load_any
from multimodal import model as mm_model
from multimodal import service as mm_service
from multimodal.data import load_tuxpaint_catalog
from multimodal.model import MultimodalIndex
from multimodal.service import SearchService
from multimodal.train import build_index

pytestmark = pytest.mark.slow(reason="builds a 40-stamp shipped catalog, its head and the old index (~1 min)")

LIMIT = 40
CLOTHES = 8


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A models folder of this module's own, and shipped sources cut to the test's subsets."""
    real = catalog_sources.builtin_source
    try:
        real("tuxpaint", limit=2)
    except CatalogError as exc:
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    root = tmp_path_factory.mktemp("shipped-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artifacts, "MODELS_DIR", root)
        mp.setattr(mm_model, "MODELS_DIR", root)
        mp.setattr(catalog_jobs, "builtin_source",
                   lambda name: real(name, limit=LIMIT if name == "tuxpaint" else CLOTHES))
        yield root


@pytest.fixture(scope="module")
def heads(private):
    """The index the tab built before (its own loader and encoding) and the head on the ordinary catalog."""
    old_catalog = load_tuxpaint_catalog(limit=LIMIT)
    old_stem, _ = build_index(old_catalog, stem=private / "old" / "tuxpaint")
    new_stem, rebuilt, summary = mm_service.build_head()
    assert rebuilt
    return old_stem, new_stem, summary, old_catalog


def test_the_shipped_catalog_is_built_by_the_generic_path_with_every_artifact(heads):
    _, _, summary, old_catalog = heads
    assert summary["built"] and summary["shipped"] and summary["items"] == LIMIT
    assert summary["source"]["kind"] == "shipped" and summary["source"]["label"] == "shipped:tuxpaint"
    catalog = open_catalog("tuxpaint")
    assert catalog.shipped and catalog.ids == old_catalog.ids  # the stamps' own ids, in the same order
    assert all(catalog.thumbnail(row).is_file() for row in range(len(catalog)))
    assert (catalog.word_mass[:, 0] > 0).all() and all(catalog.words_of(row, floor=0.0) for row in range(len(catalog)))
    assert "groups" in catalog.manifest["duplicates"] and catalog.manifest["search"]["kind"] == "exact"
    item = catalog.ids[7]
    hits = catalog.search(image=load_any(catalog.items[7]["source"]), k=3)  # an SVG stamp, rasterised
    assert hits[0].id == item  # the image index finds the photo itself first
    similar = catalog.similar_items(item, k=5)
    assert len(similar) == 5 and item not in [h.id for h in similar]


def test_word_search_without_titles_finds_stamps_by_what_they_show(heads):
    catalog = open_catalog("tuxpaint")
    untitled = BuiltCatalog(folder_of("tuxpaint"))  # a fresh copy: the shared one stays titled
    untitled.titled = False
    word, _ = Counter(catalog.vocabulary[int(row[0])] for row in catalog.word_ids).most_common(1)[0]
    hits = untitled.search(text=word, k=3)
    assert hits and all(h.reason.startswith("sees ") for h in hits)
    assert word in hits[0].reason and word in hits[0].words


def test_the_head_gives_the_old_results_on_fixed_queries(heads):
    old_stem, new_stem, _, old_catalog = heads
    old_manifest, new_manifest = read_json(old_stem.with_suffix(".json")), read_json(new_stem.with_suffix(".json"))
    assert new_manifest["built_from"]["catalog"] == "tuxpaint"
    assert new_manifest["data_checksum"] == old_manifest["data_checksum"]  # same products, texts and pictures
    old, new = SearchService(MultimodalIndex.load(old_stem)), SearchService.load("tuxpaint")
    assert new.index.ids == old.index.ids and np.allclose(new.index.image, old.index.image, atol=1e-5)
    item = old_catalog.products[5]
    queries = [{"text": item.title}, {"text": "a bird"}, {"image": item.image_path},
               {"text": "animal", "image": item.image_path, "alpha": 0.3}]
    for query in queries:
        before, after = old.search(k=8, **query), new.search(k=8, **query)
        assert [r.id for r in after] == [r.id for r in before], query
        assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-4)
    assert [r.id for r in new.more_like_this(item.id, k=8)] == [r.id for r in old.more_like_this(item.id, k=8)]


def test_both_services_list_each_shipped_catalog_once_and_a_second_build_is_skipped(heads):
    import fashion.service

    assert add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)["items"] == CLOTHES
    again = add_catalog("tuxpaint", "shipped:tuxpaint", update=True)
    assert not again["built"]
    _, rebuilt, _ = mm_service.build_head()
    assert not rebuilt  # the head on an unchanged catalog is fresh
    products = {s.name: s.kind for s in mm_service.sources()}
    assert [s.name for s in mm_service.sources()].count("tuxpaint") == 1
    assert products["tuxpaint"] == "index" and products["tuxpaint-clothes"] == "shipped catalog"
    assert isinstance(mm_service.open("tuxpaint"), SearchService)
    assert isinstance(mm_service.open("tuxpaint-clothes"), BuiltCatalog)
    garments = [s.name for s in fashion.service.sources()]
    assert garments[0] == "fashion-mnist" and len(garments) == len(set(garments))
    assert {"tuxpaint", "tuxpaint-clothes"} <= set(garments)
    assert {s.kind for s in fashion.service.sources() if s.name.startswith("tuxpaint")} == {"shipped catalog"}
    assert isinstance(fashion.service.open("tuxpaint-clothes"), BuiltCatalog)


def _app() -> None:
    import ui.multimodal

    ui.multimodal.render()


def test_the_tab_searches_the_shipped_catalog_with_its_head_or_as_an_ordinary_catalog(heads):
    from streamlit.testing.v1 import AppTest

    add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)
    at = AppTest.from_function(_app, default_timeout=180)
    at.run()
    assert not at.exception
    picker = at.selectbox(key="mm_catalog")
    assert picker.options.count("tuxpaint") == 1 and "tuxpaint-clothes (shipped)" in picker.options
    assert at.text_input(key="mm_text")  # the tuned head's own search box
    at.radio(key="mm_head_tuxpaint").set_value("the catalog search (words seen in every picture)").run()
    assert not at.exception and not at.error
    assert "Search words" in [t.label for t in at.text_input]  # the shared catalog view over the same catalog
