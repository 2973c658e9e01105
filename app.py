"""Recs Studio: four recommenders in one Streamlit app, all on a CPU.

This file only composes the tabs; each tab's widgets live in ``ui/<tab>.py`` and its logic in the
tab's domain package. Each tab renders inside its own ``st.fragment``: a click in one tab reruns that
tab alone, not the other three (``st.tabs`` alone would run all four on every click). Each tab is also
its own error boundary: a tab that fails to import or raises shows an error panel with a short id (the
traceback goes to the server log under that id), and the other tabs keep working.

The sidebar holds the profile picker (``ui/profile.py``): every 👍 / 👎, saved item and tag edit is
written to the feedback store under the active profile at click time, inside the tab's fragment, so a
click reruns only its own tab. Behind Streamlit's OIDC login the profile is the logged-in account.

Run it with ``make run`` (set-up + default models + this app on http://127.0.0.1:8501).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st  # noqa: E402

logging.basicConfig(level=os.environ.get("RECS_LOG_LEVEL", "INFO").upper(),
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
log = logging.getLogger("recs.app")

TABS = [
    ("Hashtags", "ui.hashtag"),
    ("Music", "ui.music"),
    ("Fashion", "ui.fashion"),
    ("Product search", "ui.multimodal"),
]


@st.cache_resource(show_spinner=False)
def _process_setup() -> int:
    """Once per server process: fix torch's thread count before any session does work (core.threads)."""
    from core.threads import pin_process_threads

    return pin_process_threads()


@st.fragment
def _tab(label: str, module_name: str) -> None:
    """One tab: its own fragment (reruns alone) and its own error boundary."""
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        module = importlib.import_module(module_name)
        module.render()
    except ImportError as exc:
        st.warning(f"The {label} tab is not available: {exc}")
    except Exception:  # noqa: BLE001 - one failing tab must not take the others down
        error_id = uuid.uuid4().hex[:8]
        log.exception("tab %s failed (error id %s)", label, error_id)
        st.error(f"Something went wrong in the {label} tab (error id `{error_id}`). The other tabs still work; "
                 "reload the page to try again. The server log has the details under that id.")
    finally:
        log.debug("render tab=%s %.3f s wall, %.3f s CPU", label, time.perf_counter() - started,
                  time.thread_time() - cpu)


_process_setup()
st.set_page_config(page_title="Recs Studio", page_icon="🧭", layout="wide")
st.title("Recs Studio")
st.caption(
    "Four recommenders, all running on this machine's CPU. Each tab says what it shows, how it was trained "
    "and how well it does on held-out data."
)

try:
    from ui.profile import render_picker

    render_picker()
except Exception:  # noqa: BLE001 - without the feedback store the tabs still recommend
    log.exception("the profile picker failed")
    st.sidebar.warning("Profiles are unavailable right now; feedback will not be saved.")

for (label, module_name), tab in zip(TABS, st.tabs([label for label, _ in TABS])):
    with tab:
        _tab(label, module_name)
