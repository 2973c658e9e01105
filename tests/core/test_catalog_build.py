"""Building a catalog from real photos: every artifact, word search without titles, near-duplicates, atomicity.

The photos are scikit-image's real samples (a cat, a cup of coffee, an astronaut, a rocket), written to a
folder as a person's shop would be, with a resized JPEG copy of the cat, a damaged JPEG and a text file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from core.catalog import build as catalog_build
from core.catalog.jobs import add_catalog
from core.catalog.sources import CatalogError, read_source
from core.catalog.store import list_catalogs, open_catalog, remove_catalog, version
from core.feedback.store import FeedbackStore

PHOTOS = {"animals/cat.png": "chelsea", "food/coffee.png": "coffee", "people/astronaut.png": "astronaut",
          "space/rocket.png": "rocket"}


def _shop(folder: Path) -> Path:
    for rel, sample in PHOTOS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skdata, sample)()).save(folder / rel)
    cat = Image.fromarray(skdata.chelsea())
    cat.resize((cat.width * 7 // 10, cat.height * 7 // 10)).save(folder / "animals" / "cat-copy.jpg", quality=80)
    buf = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buf, format="JPEG")
    (folder / "food" / "broken.jpg").write_bytes(buf.getvalue()[:600])  # a valid header, then nothing
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return _shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def built(shop) -> dict:
    return add_catalog("test-shop", shop)


@pytest.mark.slow(reason="builds the module's catalog (~30 s on a busy machine)")
def test_build_reports_items_skips_and_writes_thumbnails(built, shop):
    assert built["items"] == 5
    skipped = {f["what"]: f["reason"] for f in built["skipped"]["files"]}
    assert "notes.txt" in skipped and "food/broken.jpg" in skipped
    catalog = open_catalog("test-shop")
    assert sorted(catalog.ids) == sorted(["animals/cat.png", "animals/cat-copy.jpg", "food/coffee.png",
                                          "people/astronaut.png", "space/rocket.png"])
    assert catalog.categories == ["animals", "food", "people", "space"]
    for row in range(len(catalog)):
        with Image.open(catalog.thumbnail(row)) as thumb:
            assert max(thumb.size) <= catalog_build.THUMB_SIDE
    assert not any(p.name.startswith(".") for p in catalog_build.catalogs_dir().iterdir())


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_photo_search_finds_the_photo_itself_first(built):
    catalog = open_catalog("test-shop")
    hits = catalog.search(image=skdata.coffee(), k=3)
    assert hits[0].id == "food/coffee.png" and hits[0].score > 0.99


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_word_search_finds_untitled_photos_by_what_they_show(built):
    catalog = open_catalog("test-shop")
    assert catalog.manifest["titled"] == 0
    top = [h.id for h in catalog.search(text="cat", k=2)]
    assert set(top) == {"animals/cat.png", "animals/cat-copy.jpg"}
    assert catalog.search(text="coffee", k=1)[0].id == "food/coffee.png"
    assert "cat" in catalog.search(text="cat", k=1)[0].reason


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_near_duplicates_group_the_resized_copy(built):
    groups = open_catalog("test-shop").duplicate_groups()
    assert sorted(map(sorted, groups)) == [["animals/cat-copy.jpg", "animals/cat.png"]]


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_filters_and_exclusions(built):
    catalog = open_catalog("test-shop")
    assert {h.category for h in catalog.search(text="cat", k=5, categories=["food"])} == {"food"}
    assert "animals/cat.png" not in [h.id for h in catalog.search(text="cat", k=5, exclude=["animals/cat.png"])]
    with pytest.raises(ValueError):
        catalog.search(text="cat", categories=["nope"])


@pytest.mark.slow(reason="builds a titled catalog (~6 s)")
def test_titles_are_searched_where_a_csv_gives_them(tmp_path):
    folder = _shop(tmp_path / "titled")
    rows = ["image,title", "animals/cat.png,Striped kitten portrait", "food/coffee.png,Espresso in a white cup",
            "people/astronaut.png,Woman in a space suit", "space/rocket.png,Launch vehicle on the pad",
            "animals/cat-copy.jpg,Small kitten photo"]
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n")
    add_catalog("test-titled", folder / "catalog.csv")
    catalog = open_catalog("test-titled")
    assert catalog.manifest["titled"] == 5
    assert catalog.search(text="space suit", k=1)[0].id == "people/astronaut.png"
    remove_catalog("test-titled")


def test_a_failed_build_leaves_nothing_behind(shop, monkeypatch):
    monkeypatch.setattr(catalog_build, "BATCH", 2)
    calls = {"n": 0}
    real = catalog_build.ImageEncoder.grid_batch

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the worker was stopped")
        return real(self, batch)

    monkeypatch.setattr(catalog_build.ImageEncoder, "grid_batch", failing)
    with pytest.raises(RuntimeError):
        add_catalog("half-built", shop)
    assert version("half-built") is None
    assert not [p for p in catalog_build.catalogs_dir().iterdir() if "half-built" in p.name]


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_names_are_checked_and_never_reused_silently(shop, built):
    with pytest.raises(CatalogError, match="already exists"):
        add_catalog("test-shop", shop)
    with pytest.raises(CatalogError, match="shipped catalog"):
        add_catalog("fashion-mnist", shop)
    with pytest.raises(CatalogError):
        add_catalog("../escape", shop)


def test_cli_add_list_show_remove(shop, capsys, tmp_path):
    from core.__main__ import main

    assert main(["catalog", "add", "cli-shop", str(shop), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "cli-shop" and out["items"] == 5 and out["skipped"]["count"] == 2
    assert main(["catalog", "list", "--json"]) == 0
    assert "cli-shop" in [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert main(["catalog", "show", "cli-shop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 5
    assert main(["catalog", "add", "x", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert main(["catalog", "remove", "cli-shop", "--json"]) == 0
    assert "cli-shop" not in [m["name"] for m in list_catalogs()]


def test_removing_a_catalog_forgets_its_items_feedback(shop, tmp_path):
    from core.catalog.service import remove

    add_catalog("gone-shop", shop)
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'fb.sqlite3'}", tmp_path / "images")
    store.create_profile("ann")
    store.record("ann", "fashion", "gone-shop/animals/cat.png", "like")
    store.record("ann", "multimodal", "gone-shop/food/coffee.png", "dislike")
    store.record("ann", "fashion", "gone-shop-2/animals/cat.png", "like")  # another catalog's item stays
    store.save_item("ann", "fashion", "gone-shop/space/rocket.png")
    with pytest.raises(CatalogError, match="administrators"):
        remove("gone-shop", permission=(False, "Only administrators may remove shared catalogs."), store=store)
    assert version("gone-shop") is not None
    removed = remove("gone-shop", permission=(True, ""), store=store)
    assert removed == {"events": 2, "saved": 1}
    assert store.likes("ann", "fashion") == ["gone-shop-2/animals/cat.png"]
    assert version("gone-shop") is None


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_vocabulary_embeddings_are_cached(built):
    words, first = catalog_build.vocabulary_embeddings()
    _, again = catalog_build.vocabulary_embeddings()
    assert len(words) == len(first) and np.array_equal(first, again)


def test_read_source_rejects_an_empty_folder(tmp_path):
    with pytest.raises(CatalogError):
        read_source(tmp_path)


@pytest.mark.slow(reason="needs the module's built catalog (~30 s)")
def test_tab_clis_search_a_built_catalog(built, shop, capsys):
    """``python -m fashion search PHOTO --catalog NAME`` and ``python -m multimodal search --catalog NAME``."""
    from fashion.__main__ import main as fashion_main
    from multimodal.__main__ import main as multimodal_main

    assert fashion_main(["search", str(shop / "food" / "coffee.png"), "--catalog", "test-shop", "--top", "3",
                         "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == "food/coffee.png" and {"id", "score"} <= set(hits[0])
    assert multimodal_main(["search", "--catalog", "test-shop", "--text", "cat", "--top", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["id"] for h in hits} == {"animals/cat.png", "animals/cat-copy.jpg"}
    assert multimodal_main(["search", "--catalog", "no-such-shop", "--text", "cat", "--json"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow(reason="a worker process builds and is killed")
def test_killing_the_worker_mid_build_leaves_no_catalog(tmp_path, shop):
    """A real catalog build job, its worker SIGKILLed half-way: the job ends failed, no catalog appears, and the
    next build of the same name starts clean (the hidden half-built folder is swept)."""
    import os
    import signal
    import time

    from core.catalog.jobs import HANDLER
    from core.feedback.store import close_engine
    from core.jobs import INTERRUPTED, JobQueue, Worker
    from test_core_jobs import start_worker, stop, wait_for

    folder = tmp_path / "many"
    folder.mkdir()
    cat = Image.fromarray(skdata.chelsea())
    for i in range(160):  # enough batches that the kill lands mid-pass on a busy machine
        cat.rotate(i % 360).save(folder / f"cat-{i:03d}.jpg", quality=70)
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    queue = JobQueue(url)
    job = queue.submit("catalog.build", HANDLER, "Build catalog killed-shop", {"name": "killed-shop", "path": str(folder)})
    worker = start_worker(url)
    try:
        wait_for(lambda: queue.get(job).progress > 0.05, timeout=240, what="the build to make progress")
        os.kill(worker.pid, signal.SIGKILL)  # the job's own process notices its worker is gone and stops
    finally:
        stop(worker)
    time.sleep(1.5)
    Worker(url, stale_after=1.0).recover()
    view = queue.get(job)
    close_engine(url)
    assert (view.status, view.message) == ("failed", INTERRUPTED)
    assert version("killed-shop") is None
    assert "killed-shop" not in [m["name"] for m in list_catalogs()]
    add_catalog("killed-shop", shop)  # the next build of the name sweeps what the killed one left
    assert version("killed-shop") is not None
    assert not list(catalog_build.catalogs_dir().glob(".building-killed-shop-*"))


@pytest.mark.parametrize("size, decoded", [((600, 450), (300, 225)), ((450, 600), (225, 300)),
                                           ((3000, 2000), (375, 250)), ((200, 150), (200, 150))])
def test_jpegs_decode_at_the_scale_their_long_side_needs(tmp_path, size, decoded):
    path = tmp_path / "photo.jpg"
    Image.fromarray(skdata.chelsea()).resize(size).save(path, quality=90)
    img = catalog_build._open_scaled(path, catalog_build.THUMB_SIDE)
    assert img.size == decoded and max(img.size) >= min(catalog_build.THUMB_SIDE, max(size))


def test_each_distinct_text_is_embedded_once(monkeypatch):
    calls = []

    class Fake:
        def encode(self, texts):
            calls.append(list(texts))
            return np.array([[float(len(t)), float(i)] for i, t in enumerate(texts)], np.float32)

    monkeypatch.setattr(catalog_build, "get_text_encoder", lambda: Fake())
    vectors = catalog_build._embed_distinct(["cat", "coffee", "cat", "", "coffee", "cat"])
    assert calls == [["cat", "coffee", ""]]
    assert vectors[:, 0].tolist() == [3, 6, 3, 0, 6, 3] and vectors[0].tolist() == vectors[2].tolist()
