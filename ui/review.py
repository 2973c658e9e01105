"""The review page (administrators only): users' hashtag edits wait here until accepted or rejected.

Why: ``python -m hashtag train --with-feedback`` trains everyone's model on the stored (image, tags) pairs,
so one person's labels must not get in unchecked. The page is listed only for sessions that
``core.identity.may_run_heavy`` allows (``ui.profile.admin_tabs``), and every decision checks the
permission again at click time, in ``hashtag.service.review_edit``: a stale page cannot accept anything.
"""

from __future__ import annotations

import logging

import streamlit as st

from core.feedback import FeedbackError
from hashtag import service
from ui import profile as profiles

log = logging.getLogger(__name__)

#: Edits shown at once (oldest first); the rest follow as these are decided.
PAGE = 20


def _decide(image_id: int, decision: str) -> None:
    """One accept / reject click: the permission is taken now, not when the page was drawn."""
    try:
        service.review_edit(profiles.store(), image_id, decision, profiles.identity(), profiles.heavy_permission())
        st.session_state["review_note"] = f"Tag edit {image_id} {decision}."
    except FeedbackError as exc:
        st.session_state["review_error"] = str(exc)


def render() -> None:
    """The Review tab."""
    allowed, why = profiles.heavy_permission()
    error = st.session_state.pop("review_error", None)
    if error:
        st.error(error)
    if not allowed:
        st.warning(why)
        return
    note = st.session_state.pop("review_note", None)
    if note:
        st.success(note)
    st.subheader("Tag edits waiting for review")
    st.caption("Only accepted edits are trained on by `python -m hashtag train --with-feedback`; a rejected one "
               "stays with its profile but never reaches the model. Saving new tags for the same photo puts it "
               "back in this list.")
    try:
        edits = service.pending_edits(profiles.store())
    except FeedbackError as exc:
        st.error(f"The feedback store cannot be opened: {exc}")
        return
    if not edits:
        st.info("No tag edits are waiting.")
        return
    st.caption(f"{len(edits)} waiting; the oldest {min(PAGE, len(edits))} are shown.")
    for record in edits[:PAGE]:
        with st.container(border=True, horizontal=True, key=f"review_{record.id}"):
            try:
                st.image(record.path, width=120)
            except Exception:  # noqa: BLE001 - a missing file must not hide the decision
                st.caption("(image file missing)")
            with st.container():
                st.text(" ".join(f"#{t}" for t in record.tags) or "(no tags)")
                st.caption("From profile")
                st.text(record.display or "(unnamed)")
            st.button("Accept", key=f"review_accept_{record.id}", type="primary", on_click=_decide,
                      args=(record.id, "accepted"))
            st.button("Reject", key=f"review_reject_{record.id}", on_click=_decide, args=(record.id, "rejected"))
