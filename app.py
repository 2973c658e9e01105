"""Recs Studio: four recommenders in one Streamlit app, all on a CPU.

This file only composes the tabs; each tab's widgets live in ``ui/<tab>.py`` and its logic in the
tab's domain package. The tabs are lazy (``st.tabs(..., on_change="rerun")``): only the open tab runs,
so opening the app costs one tab, not four, and switching tabs runs the tab switched to. Each tab also
renders inside its own ``st.fragment``: a click in one tab reruns that tab alone. Each tab is also
its own error boundary: a tab that fails to import or raises shows an error panel with a short id (the
traceback goes to the server log under that id), and the other tabs keep working.

The sidebar holds the profile picker (``ui/profile.py``): every 👍 / 👎, saved item and tag edit is
written to the feedback store under the active profile at click time, inside the tab's fragment, so a
click reruns only its own tab. Behind Streamlit's OIDC login the profile is the logged-in account; without
one it is opened by its link (docs/deployment.md). Administrators also get a Review tab.

Run it with ``make run`` (set-up + default models + this app on http://127.0.0.1:8501).
"""

from __future__ import annotations

import cProfile
import importlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st  # noqa: E402

from streamlit.runtime.scriptrunner import script_runner  # noqa: E402

from core.jobs import worker as job_worker  # noqa: E402
from core.threads import pin_process_threads  # noqa: E402
from ui.common import TAB_VISIT, warn_if_exposed  # noqa: E402

logging.basicConfig(level=os.environ.get("RECS_LOG_LEVEL", "INFO").upper(),
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
log = logging.getLogger("recs.app")

TABS = [
    ("Hashtags", "ui.hashtag"),
    ("Music", "ui.music"),
    ("Fashion", "ui.fashion"),
    ("Product search", "ui.multimodal"),
    ("Data", "ui.data"),
]
#: Session-state key of the open tab's label (``st.session_state[TAB_KEY] = "Music"`` opens Music).
TAB_KEY = "recs_tab"


def _close_pyplot_figures() -> None:
    """What Streamlit's after-run clean-up still does here: close pyplot figures left open by a run."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


@st.cache_resource(show_spinner=False)
def _process_setup() -> int:
    """Once per server process, before any session does work.

    - torch's thread count is fixed (core.threads).
    - the job worker (``python -m core.jobs worker``) is started beside the server unless one is running; it
      runs catalog builds in its own processes and exits when this server does.
    - Streamlit's after-run clean-up stops calling ``keras.backend.clear_session()``. It did so after
      every script and fragment run: Keras then replaces its process-wide state trackers (under other
      sessions' model calls in flight) and runs a full ``gc.collect()`` over a heap of loaded models,
      about 0.5 CPU-s of every click. No model here is built in a run, so there is nothing to clear.
      (The forced collection Streamlit itself runs after each run is off in ``.streamlit/config.toml``,
      ``runner.postScriptGC``; Python's own collector still runs.)
    - One warning in the log when the server listens beyond loopback without a login.
    """
    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = _close_pyplot_figures
    else:  # another Streamlit than the pinned one: clicks cost more, nothing breaks
        log.warning("Streamlit's after-run clean-up hook was not found; every click will also run keras' "
                    "clear_session and a full garbage collection")
    warn_if_exposed()
    threads = pin_process_threads()
    try:  # catalog builds and training run in a worker process beside the server, started with it
        job_worker.ensure_worker()
    except Exception:  # noqa: BLE001 - without a worker the tabs still work; the Data page says builds wait
        log.exception("could not start the job worker")
    return threads


#: ``RECS_PROFILE=<folder>``: each tab render is run under cProfile and its stats written to
#: ``<folder>/<tab>-<time>.pstats`` (read them with ``python -m pstats``), to find what a click costs.
PROFILE_DIR = os.environ.get("RECS_PROFILE")


def _render(module_name: str, label: str) -> None:
    module = importlib.import_module(module_name)
    if not PROFILE_DIR:
        module.render()
        return
    profiler = cProfile.Profile()
    try:
        profiler.runcall(module.render)
    finally:
        folder = Path(PROFILE_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(folder / f"{label.replace(' ', '_')}-{time.time():.3f}.pstats")


@st.fragment
def _tab(label: str, module_name: str) -> None:
    """One tab: its own fragment (reruns alone) and its own error boundary."""
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        _render(module_name, label)
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

try:  # while `make run` builds the default models beside the app (scripts/serve.py)
    from ui.build_banner import render as build_banner

    build_banner()
except Exception:  # noqa: BLE001 - the banner is information; the tabs work without it
    log.exception("the build banner failed")

shown = list(TABS)
try:
    from ui.profile import admin_tabs, render_picker

    render_picker()
    shown += admin_tabs()  # pages only administrators see (each checks the permission again)
except Exception:  # noqa: BLE001 - without the feedback store the tabs still recommend
    log.exception("the profile picker failed")
    st.sidebar.warning("Profiles are unavailable right now; feedback will not be saved.")

tabs = st.tabs([label for label, _ in shown], key=TAB_KEY, on_change="rerun")
if st.session_state.get("_recs_open_tab") != st.session_state.get(TAB_KEY):  # a tab switch (or the first run)
    st.session_state["_recs_open_tab"] = st.session_state.get(TAB_KEY)
    st.session_state[TAB_VISIT] = st.session_state.get(TAB_VISIT, 0) + 1
for (label, module_name), tab in zip(shown, tabs):
    if tab.open:  # a closed tab runs nothing; switching to it reruns the page with it open
        with tab:
            _tab(label, module_name)
