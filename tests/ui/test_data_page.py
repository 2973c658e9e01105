"""The Data tab: a zip of photos goes in through the browser, builds in the worker, and both image tabs search it.

The browser test drives the real app in Chromium: upload a zip of four untitled real photos on the Data page,
wait for the build job to say done, pick the new catalog in Product search and search a word that is in no
title (``cat``), see the cat first; in Fashion, upload the coffee photo and see it first; delete the catalog and
see it gone from both pickers. The AppTest checks that two sessions see the same job's progress.
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

PHOTOS = {"cat.png": "chelsea", "coffee.png": "coffee", "astronaut.png": "astronaut", "rocket.png": "rocket"}


@pytest.fixture(scope="module")
def photo_zip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    path = folder / "my-photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, sample in PHOTOS.items():
            Image.fromarray(getattr(skdata, sample)()).save(folder / name)
            zf.write(folder / name, f"my-photos/{name}")
    return path


def _data_tab() -> None:
    from ui import data

    data.render()


@pytest.mark.slow(reason="a job runs in a worker process")
def test_two_sessions_see_the_same_job(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    queue = JobQueue(url)
    job = queue.submit("catalog.build", "core.catalog.jobs:build_job", "Build catalog shared-view", {"name": "x"})
    queue.claim("test-worker")
    queue.report(job, 0.42, "encoded 42 of 100 images")
    first, second = (AppTest.from_function(_data_tab, default_timeout=60).run() for _ in range(2))
    for session in (first, second):
        assert not session.exception
        bars = [p for p in session.get("progress")]
        assert any("Build catalog shared-view" in str(p.proto.text) and "encoded 42 of 100" in str(p.proto.text)
                   for p in bars), [str(p.proto.text) for p in bars]


@pytest.mark.slow(reason="builds a catalog, browser")
@pytest.mark.browser
def test_data_page_builds_a_catalog_both_tabs_search(photo_zip, browser_page, wait_images, artifacts_dir):
    page = browser_page
    page.get_by_role("tab", name="Data").click()
    panel = page.get_by_role("tabpanel", name="Data")
    panel.get_by_label("Catalog name", exact=True).fill("browser-shop")
    panel.locator('input[type="file"]').first.set_input_files(str(photo_zip))
    panel.get_by_text("my-photos.zip").wait_for()
    panel.get_by_role("button", name="Build this catalog").click()
    page.get_by_text(re.compile(r"Build catalog browser-shop — done")).wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts_dir / "data-page.png"), full_page=True)

    page.get_by_role("tab", name="Product search").click()
    search = page.get_by_role("tabpanel", name="Product search")
    search.get_by_role("combobox").first.click()
    page.get_by_role("option", name="browser-shop (your catalog)").click()
    box = search.get_by_label("Search words")
    box.fill("cat")
    box.press("Enter")
    search.get_by_role("button", name="More like this").nth(3).wait_for()
    wait_images(page, 4)
    captions = search.locator('[data-testid="stImage"] [data-testid="stImageCaption"], [data-testid="stImage"] div')
    first = search.locator('[data-testid="stImage"]').first
    assert "cat.png" in first.inner_text(), captions.all_inner_texts()
    page.screenshot(path=str(artifacts_dir / "data-product-search.png"), full_page=True)

    page.get_by_role("tab", name="Fashion").click()
    fashion = page.get_by_role("tabpanel", name="Fashion")
    fashion.get_by_role("combobox").first.click()
    page.get_by_role("option", name="browser-shop (your catalog)").click()
    fashion.get_by_text("Photo to match (JPEG, PNG, WebP)", exact=True).wait_for()
    fashion.locator('input[type="file"]').first.set_input_files(str(photo_zip.parent / "coffee.png"))
    fashion.get_by_role("button", name="More like this").nth(3).wait_for()
    assert "coffee.png" in fashion.locator('[data-testid="stImage"]').first.inner_text()

    page.get_by_role("tab", name="Data").click()
    panel = page.get_by_role("tabpanel", name="Data")
    panel.get_by_text("Remove browser-shop").click()
    panel.get_by_text("Yes, delete browser-shop", exact=False).click()
    panel.get_by_role("button", name="Delete catalog").click()
    from core.catalog.store import version  # the app and this test share one models folder (conftest)

    deadline = time.time() + 60
    while version("browser-shop") is not None and time.time() < deadline:
        time.sleep(0.5)
    assert version("browser-shop") is None
    for tab in ("Product search", "Fashion"):
        page.get_by_role("tab", name=tab).click()
        picker = page.get_by_role("tabpanel", name=tab).get_by_role("combobox").first
        if picker.count():
            picker.click()
            assert page.get_by_role("option", name="browser-shop (your catalog)").count() == 0
            page.keyboard.press("Escape")


def test_builds_and_removals_need_permission(tmp_path, monkeypatch, photo_zip):
    """Someone heavy work is not open to sees why instead of the form, and the service refuses them anyway."""
    from streamlit.testing.v1 import AppTest

    from core.catalog import service
    from core.catalog.sources import CatalogError

    import ui.profile

    monkeypatch.setenv("RECS_DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    monkeypatch.setattr(ui.profile, "heavy_permission", lambda: (False, "only administrators build catalogs."))
    at = AppTest.from_function(_data_tab, default_timeout=60).run()
    assert not at.exception
    assert any("only administrators build catalogs" in i.value for i in at.info)
    assert "data_add" not in [f.proto.form.form_id for f in at.get("form")]  # no catalog builds
    assert {"photos_import", "history_form"} <= {f.proto.form.form_id for f in at.get("form")}  # personal imports stay open
    with pytest.raises(CatalogError, match="administrators"):
        service.queue_build("nope", permission=(False, "Only administrators may build catalogs."),
                            upload=photo_zip.read_bytes())
    assert service.jobs() == []
