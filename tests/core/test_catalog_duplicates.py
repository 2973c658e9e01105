"""One product per stamp: no result page shows the same picture with the same title twice.

Tux Paint ships ``_mirror`` copies (a left-right flip of a stamp, with its caption) and one stamp filed in two
folders byte for byte. In a training set they are harmless (grouped with their original); in a catalog they made
product search show "A measuring tape." twice in a row. The catalog readers keep one product per stamp, and the
pages built from the real encoders over the stamps that have copies repeat nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from core.datasets import DataUnavailable, load_tuxpaint


def _picture(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def stamps():
    try:
        return load_tuxpaint(install=False)
    except DataUnavailable as exc:
        pytest.skip(str(exc))


def _identity(stamps):
    """Stamp id → the picture it shows: a mirror shows its original's picture (flipped), a copy the same bytes."""
    by_id = {s.id: s for s in stamps}
    return {s.id: _picture(by_id[s.group].image_path) for s in stamps}


def test_the_raw_stamps_do_have_copies(stamps):
    """The reader without ``one_per_stamp`` still has them: the checks below can fail."""
    ident = _identity(stamps)
    repeats = Counter((s.caption, ident[s.id]) for s in stamps)
    assert sum(1 for n in repeats.values() if n > 1) >= 10


def test_product_search_catalog_has_one_product_per_stamp(stamps):
    from multimodal.data import load_tuxpaint_catalog

    ident = _identity(stamps)
    catalog = load_tuxpaint_catalog()
    keys = Counter((p.title, ident[p.id]) for p in catalog.products)
    assert [k for k, n in keys.items() if n > 1] == []
    assert not any(p.is_mirror or p.id.endswith("_mirror") for p in catalog.products)
    # nothing else was lost: every stamp is a product or a copy of one
    originals = {(s.caption.rstrip("."), ident[s.id]) for s in stamps}
    assert len(catalog.products) == len(originals)


def test_fashion_tuxpaint_catalog_has_one_product_per_stamp(stamps):
    from fashion.data import load_tuxpaint_clothes

    ident = _identity(stamps)
    clothes = load_tuxpaint_clothes()
    keys = Counter((t, ident[i]) for i, t in zip(clothes.ids, clothes.titles))
    assert [k for k, n in keys.items() if n > 1] == [] and len(clothes) > 40
    assert not any(i.endswith("_mirror") for i in clothes.ids)


@pytest.mark.slow(reason="encodes a catalog")
def test_no_product_search_page_repeats_a_title_and_picture(stamps, models_dir):
    """Real encoders over the stamps that have copies (and their category neighbours): every page is distinct."""
    from multimodal.data import Catalog, load_tuxpaint_catalog
    from multimodal.service import SearchService
    from multimodal.train import build_index

    with_copies = {s.group for s in stamps if s.is_mirror} | {"military/fireman240a", "people/fireman240a"}
    full = load_tuxpaint_catalog()
    folders = {pid.rsplit("/", 1)[0] for pid in with_copies}
    originals = [p for p in full.products if p.id in with_copies]
    neighbours = [p for p in full.products if p.id.rsplit("/", 1)[0] in folders and p.id not in with_copies]
    products = originals + neighbours[: 40 - len(originals)]
    assert len(originals) >= 10
    catalog = Catalog("dupcheck", full.kind, products, full.source, full.text_fields)
    build_index(catalog, projection=False)
    service = SearchService.load("dupcheck")
    ident = _identity(stamps)
    for p in products:
        if p.id not in with_copies:
            continue
        for page in (service.search(image=str(p.image_path), k=10),
                     service.search(text=p.title, image=str(p.image_path), alpha=0.5, k=10),
                     service.search(text=p.title, k=10)):
            keys = [(r.title, ident[r.id]) for r in page]
            assert len(keys) == len(set(keys)), [r.id for r in page]


def test_no_fashion_tuxpaint_page_repeats_a_title_and_picture(stamps, models_dir):
    from fashion import service

    index = service.build("tuxpaint-clothes")
    ident = _identity(stamps)
    clothes = service.catalog("tuxpaint-clothes")
    for row, item in enumerate(clothes.ids):
        pages = [service.similar_items(index, item, 10)]
        if row % 8 == 0:
            pages.append(service.search_upload(index, clothes.image(row), 10))
        for page in pages:
            keys = [(h.meta["title"], ident[h.id]) for h in page]
            assert len(keys) == len(set(keys)), [h.id for h in page]
