"""The whole app: four tabs render, none fails to import, no exception escapes; only the open tab runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABS = {"Hashtags": "Hashtags for a photo", "Music": "Music picks", "Fashion": "Similar garments",
        "Product search": "Multimodal product search"}


def test_app_renders_every_tab_and_only_the_open_one(models_dir):
    """Runs against the session's private models folder, which holds at most the small test models."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs][:4] == list(TABS)
    for label, header in TABS.items():
        at.session_state["recs_tab"] = label  # what a click on the tab does
        at.run()
        assert not at.exception, (label, [e.value for e in at.exception])
        assert not any("not available" in w.value for w in at.warning), [w.value for w in at.warning]
        shown = {h.value for h in at.subheader}
        assert header in shown, (label, shown)
        assert not (set(TABS.values()) - {header}) & shown, (label, shown)  # the closed tabs ran nothing
