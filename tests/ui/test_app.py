"""The whole app: four tabs render, none fails to import, no exception escapes; only the open tab runs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABS = {"Hashtags": "Hashtags for a photo", "Music": "Music picks", "Fashion": "Similar garments",
        "Product search": "Multimodal product search"}


@pytest.mark.slow(reason="renders every tab with AppTest")
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


def _upload_in_a_lazy_tab() -> None:
    import streamlit as st

    from ui.common import image_upload

    if st.session_state.get("tab_open", True):  # a closed lazy tab draws nothing
        image = image_upload("Photo", key="photo")
        st.markdown(f"image: {None if image is None else image.size}")


def _switch(at, open_: bool) -> None:
    """What app.py does on a tab switch: the tab's widgets are (not) drawn, the visit counter moves."""
    from ui.common import TAB_VISIT

    at.session_state["tab_open"] = open_
    at.session_state[TAB_VISIT] = at.session_state[TAB_VISIT] + 1 if TAB_VISIT in at.session_state else 1
    at.run()


@pytest.mark.slow(reason="AppTest of the whole app across tabs (~7 s)")
def test_an_upload_survives_a_tab_switch_and_can_still_be_removed():
    import io

    from PIL import Image
    from streamlit.testing.v1 import AppTest

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, format="PNG")
    at = AppTest.from_function(_upload_in_a_lazy_tab, default_timeout=30)
    _switch(at, True)
    at.file_uploader(key="photo").set_value(("red.png", buf.getvalue(), "image/png")).run()
    assert "image: (64, 48)" in [m.value for m in at.markdown]
    _switch(at, False)  # another tab opened: this one's uploader is gone
    _switch(at, True)   # back: the uploader is new and empty, the photo is kept
    assert not at.exception
    assert "image: (64, 48)" in [m.value for m in at.markdown]
    assert any("last photo" in c.value for c in at.caption)
    at.run()  # any later click in the tab keeps it too
    assert "image: (64, 48)" in [m.value for m in at.markdown]
    at.button(key="photo_forget").click().run()
    assert "image: None" in [m.value for m in at.markdown]

    at.file_uploader(key="photo").set_value(("red.png", buf.getvalue(), "image/png")).run()
    assert "image: (64, 48)" in [m.value for m in at.markdown]
    at.file_uploader(key="photo").set_value(None).run()  # removed in the uploader itself: gone
    assert "image: None" in [m.value for m in at.markdown]
