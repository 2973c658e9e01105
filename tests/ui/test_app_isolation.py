"""In a real browser, only the open tab runs (lazy tabs), and a click in one tab reruns that tab alone
(each tab is its own ``st.fragment``).

The app logs one ``render tab=<label>`` line per tab render at DEBUG level; the test counts them in the
server's log after opening the page, after switching to the Fashion tab, and after changing a widget there.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT

TABS = ["Hashtags", "Music", "Fashion", "Product search"]


def _renders(log: Path) -> Counter:
    return Counter(m.group(1) for m in re.finditer(r"render tab=(.+?) \d", log.read_text(errors="replace")))


def _settled(log: Path, quiet: float = 3.0, timeout: float = 90.0) -> Counter:
    """Render counts once no tab has rendered for ``quiet`` seconds (the page's own start-up reruns are over)."""
    last, since, deadline = _renders(log), time.time(), time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        now = _renders(log)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            break
    return last


def _wait_for(predicate, timeout: float = 90.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow(reason="browser")
@pytest.mark.browser
def test_only_the_open_tab_runs_and_a_click_in_it_runs_it_alone(models_dir, _browser):
    """Its own app (debug log on) in the session's shared Chromium: one Playwright per test process, because a
    second sync Playwright in the same thread refuses to start while the session's is open."""
    from bench.app_load import start_app, stop_app

    log = Path(tempfile.mktemp(prefix="streamlit-isolation-", suffix=".log"))
    env = dict(os.environ, RECS_MODELS_DIR=str(models_dir), RECS_LOG_LEVEL="DEBUG")
    proc, url = start_app(ROOT, env, log)
    try:
        context = _browser.new_context(viewport={"width": 1400, "height": 1600})
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_text("Hashtags for a photo").wait_for()
        # a tab logs its render when it ends: with a trained model the Hashtags tab is still loading it here
        assert _wait_for(lambda: _renders(log)["Hashtags"] >= 1), _renders(log)
        opened = _settled(log)  # the page's start-up reruns are over

        page.get_by_role("tab", name="Fashion", exact=True).click()
        page.get_by_text("Similar garments").wait_for()
        assert _wait_for(lambda: _renders(log)["Fashion"] >= 1), _renders(log)
        before = _settled(log)
        page.get_by_role("combobox", name="Catalog").click()
        page.get_by_role("option", name=re.compile("Tux Paint clothes")).click()
        assert _wait_for(lambda: _renders(log)["Fashion"] > before["Fashion"]), _renders(log)
        after = _settled(log)  # anything else the click triggered has had time to log
        context.close()
    finally:
        stop_app(proc)
    assert opened["Hashtags"] >= 1 and not any(opened[t] for t in TABS[1:]), opened  # one tab, not four
    assert before["Fashion"] >= 1 and before["Hashtags"] == opened["Hashtags"], (opened, before)
    assert after["Fashion"] == before["Fashion"] + 1
    for other in ("Hashtags", "Music", "Product search"):
        assert after[other] == before[other], (other, before, after)
