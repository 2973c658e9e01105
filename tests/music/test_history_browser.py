"""In Chromium: a Spotify export imported on the Data page becomes picks with reasons in the Music tab, none of
them an imported artist, and it is still there after a reload (the profile's link is in the URL)."""

from __future__ import annotations

import re

import pytest

from music.data.sources import load_csv
from music.mf.train import train
from tests.music.test_music_history_picks import DATASET, FIXTURE, spotify_zip

pytestmark = pytest.mark.slow

PLAYED = ("Björk", "Sigur Rós", "The Beatles", "Radiohead", "Portishead", "Muse")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    train(DATASET, data=load_csv(FIXTURE), force=True)  # the app lists it on its next render
    path = tmp_path_factory.mktemp("export") / "my_spotify_data.zip"
    path.write_bytes(spotify_zip())
    return path


def _music_picks(page):
    """The Music tab on the fixture dataset; returns the tab panel once the history picks show."""
    page.get_by_role("tab", name="Music").click()
    music = page.get_by_role("tabpanel", name="Music")
    music.get_by_role("combobox").first.click()
    page.get_by_role("option", name=DATASET).click()
    music.get_by_text(re.compile("Picks from your imported listening history")).wait_for()
    return music


def test_imported_history_gives_picks_with_reasons(export, browser_page, artifacts_dir):
    page = browser_page
    page.get_by_role("tab", name="Data").click()
    panel = page.get_by_role("tabpanel", name="Data")
    panel.get_by_text("Your listening history").wait_for()
    uploader = panel.locator('[data-testid="stFileUploader"]').filter(has_text="Export files")
    uploader.locator('input[type="file"]').set_input_files(str(export))
    panel.get_by_test_id("stFileChipName").filter(has_text="my_spotify_data.zip").wait_for()
    panel.get_by_role("button", name="Import history").click()
    panel.get_by_text(re.compile(r"Imported \d+ new plays")).wait_for()
    assert panel.get_by_text("Zq Garage Band", exact=False).first.is_visible()  # honest about what did not match
    page.screenshot(path=str(artifacts_dir / "history_import.png"), full_page=True)

    music = _music_picks(page)
    reasons = music.get_by_text(re.compile(r"because you played .+ \d+ times?"))
    reasons.nth(4).wait_for()  # at least five picks, each with its reason
    picks_text = music.inner_text()
    section = picks_text[picks_text.index("Picks from your imported listening history"):]
    section = section[: section.find("How good are these models?")] if "How good are these models?" in section else section
    shown = [line for line in section.splitlines() if " — " in line]
    assert shown, section[:500]
    for line in shown:  # "Title — Artist": no played artist is picked again
        assert not any(line.split(" — ")[-1].strip() == artist for artist in PLAYED), line
    page.screenshot(path=str(artifacts_dir / "history_picks.png"), full_page=True)

    page.reload()
    page.get_by_role("tab").first.wait_for()
    music = _music_picks(page)
    music.get_by_text(re.compile(r"because you played .+ \d+ times?")).nth(4).wait_for()
