"""Tux Paint clothes in the Fashion tab: an ordinary catalog of the catalog store, built from
``shipped:tuxpaint-clothes``, searched by its image vectors (it has no learned head) with the same results as the
tab's own index of the same clothes gave before.

Real stamps (48 clothing images) and the real encoder, in a private models folder.
"""

from __future__ import annotations

import pytest

from core import artifacts
from core.catalog.jobs import add_catalog
from core.catalog.sources import CatalogError, builtin_source
from core.catalog.store import BuiltCatalog
from core.contract import Request
from core.images import load_any
from fashion import model as fashion_model
from fashion import service
from fashion.train import build_index

pytestmark = pytest.mark.slow(reason="builds the 48 Tux Paint clothes twice, old index and catalog (~40 s)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    try:
        builtin_source("tuxpaint-clothes")
    except CatalogError as exc:
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    root = tmp_path_factory.mktemp("fashion-shipped-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artifacts, "MODELS_DIR", root)
        mp.setattr(fashion_model, "MODELS_DIR", root)
        summary = add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)
        old, _ = build_index("tuxpaint-clothes")  # the tab's own index, as it was built before
        yield summary, old


def test_the_tab_lists_the_shipped_catalog_once_and_opens_the_ordinary_catalog(built):
    summary, old = built
    assert summary["shipped"] and summary["items"] == len(old) == 48
    names = [s.name for s in service.sources()]
    assert names.count("tuxpaint-clothes") == 1 and names[0] == "fashion-mnist"
    assert service.is_shipped("tuxpaint-clothes") and service.is_own("tuxpaint-clothes")
    catalog = service.open("tuxpaint-clothes")
    assert isinstance(catalog, BuiltCatalog) and sorted(catalog.ids) == sorted(old.ids)
    assert set(catalog.categories) == set(old.categories)


def test_the_catalog_gives_the_old_index_results(built):
    _, old = built
    catalog = service.open("tuxpaint-clothes")
    for item in (old.ids[0], old.ids[17], old.ids[40]):
        before = [h.id for h in service.similar_items(old, item, k=6)]
        after = [h.id for h in service.query(catalog, Request(item=item, k=6)).hits]
        assert after == before, item
    upload = load_any(catalog.items[catalog.ids.index(old.ids[17])]["source"])
    before = [h.id for h in service.search_upload(old, upload, k=6)]
    assert [h.id for h in service.query(catalog, Request(image=upload, k=6)).hits] == before


def test_a_missing_shipped_catalog_is_offered_for_building(built, monkeypatch):
    monkeypatch.setattr(service, "_stored", lambda: [])  # the catalog store holds no built catalog
    sources = {s.name: s for s in service.sources()}
    assert sources["tuxpaint-clothes"].kind == "shipped catalog" and not sources["tuxpaint-clothes"].ready
