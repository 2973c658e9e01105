"""The banner above the tabs while `make run` builds the default models beside the app (core.build_status).

Why a banner: the app is up within the set-up's minute, minutes before every default model is; a person should
see what is being built, how far it is, and that each tab fills in by itself. It redraws every few seconds only
while the build runs, and reruns the page when a step finishes so the open tab picks up its new model.
"""

from __future__ import annotations

import streamlit as st

from core.build_status import read_status, summary
from ui.common import md_text

POLL_SECONDS = 3
_SEEN = "_recs_build_steps_done"


def render() -> None:
    """Nothing once every default model is ready (or when none was ever built by the runner)."""
    status = read_status()
    if status is None or status.get("state") == "done":
        return
    if status.get("state") == "running":
        _live()
    else:
        _stopped(status)


@st.fragment(run_every=POLL_SECONDS)
def _live() -> None:
    status = read_status()
    if status is None:
        return
    steps = status.get("steps", [])
    done = sum(step["state"] == "done" for step in steps)
    if status.get("state") == "running":
        st.progress(done / max(len(steps), 1),
                    text=f"Building the default models beside the app: {md_text(summary(status))}. "
                         "Each tab fills in as its model is ready; your own data can go in on the Data tab meanwhile.")
    seen = st.session_state.setdefault(_SEEN, done)
    if done != seen or status.get("state") != "running":
        st.session_state[_SEEN] = done
        st.rerun()  # a model just became ready (or the build ended): the open tab reads it now


def _stopped(status: dict) -> None:
    failed = [step["name"] for step in status.get("steps", []) if step["state"] == "failed"]
    what = f"stopped at {', '.join(failed)}" if failed else "was interrupted"
    st.warning(md_text(f"The default model build {what}: {summary(status)}. The tabs whose model is missing say "
                       "so; `make run` again resumes the build (its logs are in models/build-logs/)."))
