"""Shipped catalogs are ordinary catalogs: ``shipped:NAME`` sources, built by the same code, listed as shipped,
rebuilt only when stale, and removable only by an administrator (or the operator at the command line).

Real Tux Paint clothing stamps, cut to 8 so the build stays short.
"""

from __future__ import annotations

import json

import pytest

from core.catalog import jobs as catalog_jobs
from core.catalog import service as catalog_service
from core.catalog import sources as catalog_sources
from core.catalog.jobs import add_catalog
from core.catalog.sources import CatalogError, read_source, shipped_name
from core.catalog.store import open_catalog, version

pytestmark = pytest.mark.slow(reason="builds 8 shipped stamps through the generic path (~20 s)")


@pytest.fixture(scope="module")
def clothes():
    real = catalog_sources.builtin_source
    try:
        real("tuxpaint-clothes", limit=2)
    except CatalogError as exc:
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog_jobs, "builtin_source", lambda name: real(name, limit=8))
        summary = add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)
        yield summary
        if version("tuxpaint-clothes") is not None:
            catalog_service.remove("tuxpaint-clothes", permission=(True, ""), admin=True)


def test_a_shipped_source_builds_an_ordinary_catalog_marked_shipped(clothes):
    assert clothes["built"] and clothes["shipped"] and clothes["items"] == 8
    listed = {row["name"]: row for row in catalog_service.catalogs()}
    assert listed["tuxpaint-clothes"]["shipped"] and listed["tuxpaint-clothes"]["source"]["kind"] == "shipped"
    catalog = open_catalog("tuxpaint-clothes")
    assert all(catalog.thumbnail(row).is_file() for row in range(len(catalog)))
    assert all(catalog.words_of(row, floor=0.0) for row in range(len(catalog)))
    assert catalog.duplicate_groups() is not None and len(catalog.index.vectors) == 8
    assert catalog.similar_items(catalog.ids[0], k=3)[0].id != catalog.ids[0]


def test_update_skips_a_fresh_catalog_and_the_cli_says_so(clothes, capsys):
    from core.__main__ import main

    before = version("tuxpaint-clothes")
    assert main(["catalog", "add", "tuxpaint-clothes", "shipped:tuxpaint-clothes", "--update", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["built"] is False and out["items"] == 8 and version("tuxpaint-clothes") == before
    assert main(["catalog", "list"]) == 0
    assert "(shipped)" in capsys.readouterr().out


@pytest.mark.parametrize("name, source, says", [
    ("mine", "shipped:tuxpaint", "keeps its own name"),
    ("tuxpaint", "/tmp", "name of a shipped catalog"),
    ("nope", "shipped:nope", "no shipped catalog"),
])
def test_shipped_names_and_sources_are_checked(name, source, says):
    with pytest.raises(CatalogError, match=says):
        add_catalog(name, source)


def test_shipped_name_reads_only_the_prefix():
    assert shipped_name("shipped:tuxpaint") == "tuxpaint" and shipped_name("tuxpaint") is None
    with pytest.raises(CatalogError):
        read_source("shipped:tuxpaint")  # only add_catalog reads shipped sources; a path of that name is none


def test_only_an_administrator_removes_a_shipped_catalog(clothes):
    with pytest.raises(CatalogError, match="only an administrator"):
        catalog_service.remove("tuxpaint-clothes", permission=(True, ""), admin=False)
    assert version("tuxpaint-clothes") is not None and catalog_service.is_shipped("tuxpaint-clothes")
    with pytest.raises(CatalogError, match="build catalogs"):
        catalog_service.queue_shipped("tuxpaint-clothes", permission=(False, ""))
    catalog_service.remove("tuxpaint-clothes", permission=(True, ""), admin=True)
    assert version("tuxpaint-clothes") is None
