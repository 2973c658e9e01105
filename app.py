"""Recs Studio: four recommenders in one Streamlit app, all on a CPU.

This file only composes the tabs; each tab's widgets live in ``ui/<tab>.py`` and its logic in the
tab's domain package. A tab that fails to import shows its error inside its own tab, so one broken
dependency never takes the whole app down.

Run it with ``make run`` (set-up + default models + this app on http://127.0.0.1:8501).
"""

from __future__ import annotations

import importlib
import logging
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

TABS = [
    ("Hashtags", "ui.hashtag"),
    ("Music", "ui.music"),
    ("Fashion", "ui.fashion"),
    ("Product search", "ui.multimodal"),
]

st.set_page_config(page_title="Recs Studio", page_icon="🧭", layout="wide")
st.title("Recs Studio")
st.caption(
    "Four recommenders, all running on this machine's CPU. Each tab says what it shows, how it was trained "
    "and how well it does on held-out data."
)

for (label, module_name), tab in zip(TABS, st.tabs([label for label, _ in TABS])):
    with tab:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            st.warning(f"The {label} tab is not available: {exc}")
            continue
        module.render()
