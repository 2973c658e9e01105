"""The whole app: four tabs render, none fails to import, no exception escapes."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_app_renders_all_tabs(models_dir):
    """Runs against the session's private models folder, which holds at most the small test models."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs][:4] == ["Hashtags", "Music", "Fashion", "Product search"]
    assert not any("not available" in w.value for w in at.warning), [w.value for w in at.warning]
