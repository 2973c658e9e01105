"""Data tab, "Listening logs": upload a service's log of many listeners, pick its columns, train it in the background.

Nothing heavy runs here: the page reads only the upload's first bytes (its header and a few rows, to offer the
columns), and "Train" checks the request and queues a job (``music.jobs``) that a worker process runs. The job
list is shared by every session and refreshes itself while a training runs; a finished log appears in the Music
tab's dataset picker for everyone.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import pandas as pd
import streamlit as st

from core.jobs import JobError
from music.service import logs
from ui import profile as profiles
from ui.common import md_text
from ui.jobs_view import show

log = logging.getLogger(__name__)

KEY = "data_log"
NONE = "(none)"
#: The roles offered as column pickers, with their labels; user and item are required.
ROLES = {"user": "Listener (user) column", "item": "Item (track or artist) column",
         "weight": "Weight column (plays or rating)", "timestamp": "Time column (enables up next)",
         "title": "Title column", "artist": "Artist column"}


def render() -> None:
    """The "Listening logs" section of the Data tab."""
    st.subheader("Listening logs")
    st.write("Train the Music tab on your own service's log of many listeners: a **CSV or TSV** with one row per "
             "play or rating (you choose which columns hold the listener, the item and, optionally, play counts or "
             "ratings, times, titles and artists), or a **Last.fm-1K** TSV. It trains in the background; then the "
             "Music tab offers it under the name you give, for everyone using this app. A dated log also trains "
             "*up next*.")
    allowed, why = profiles.heavy_permission()
    if allowed:
        _train_form()
    else:
        st.info(f"Training on logs is not open to you here: {md_text(why)}")
    _jobs_panel()


def _server_paths_allowed() -> bool:
    """A file path on the server is offered only when the operator says so (it can read any file)."""
    return os.environ.get("RECS_ALLOW_SERVER_PATHS", "") == "1"


def _train_form() -> None:
    fmt = st.radio("Log format", list(logs.PAGE_FORMATS), format_func=logs.PAGE_FORMATS.get, key=f"{KEY}_format")
    types = ["xz", "gz", "tar", "zip"] if fmt == "listenbrainz" else ["csv", "tsv", "txt"]
    upload = st.file_uploader(f"Log file ({', '.join('.' + t for t in types)})", type=types, key=f"{KEY}_file",
                              max_upload_size=logs.MAX_UPLOAD_MB)
    path = st.text_input("…or a file on the server", key=f"{KEY}_path") if _server_paths_allowed() else ""
    if upload is None and not path.strip():
        return
    columns: Optional[dict[str, str]] = None
    weight_kind: Optional[str] = None
    if fmt == "csv":
        head = upload.getvalue()[: logs.HEAD_BYTES] if upload is not None else _server_head(path.strip())
        if head is None:
            return
        try:
            found = logs.preview(head)
        except logs.LogError as exc:
            st.error(md_text(str(exc)))
            return
        columns, weight_kind = _column_pickers(found)
    name = st.text_input("Name in the Music tab", max_chars=64, key=f"{KEY}_name",
                         help="1–64 lower-case letters, digits, '-' or '_' (e.g. my-radio)")
    replace = st.checkbox("Replace a trained log of this name", key=f"{KEY}_replace")
    if not st.button("Train", key=f"{KEY}_train", type="primary"):
        return
    try:
        if upload is not None and upload.size > logs.MAX_UPLOAD_MB * 1024 * 1024:
            raise logs.LogError(f"The log is {upload.size / 1e6:,.0f} MB; the limit is {logs.MAX_UPLOAD_MB} MB.")
        job = logs.queue_training(name.strip(), permission=profiles.heavy_permission(),
                                  upload=upload.getvalue() if upload is not None else None,
                                  path=None if upload is not None else path.strip(), source=fmt, columns=columns,
                                  weight_kind=weight_kind, label=upload.name if upload is not None else path.strip(),
                                  owner=profiles.identity().key or None, replace=replace)
    except (logs.LogError, JobError) as exc:
        st.error(md_text(str(exc)))
        return
    st.success(f"Queued training #{job}. It appears below; the Music tab offers it once it says done.")


def _server_head(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read(logs.HEAD_BYTES)
    except OSError as exc:
        st.error(f"Cannot read {md_text(path)}: {md_text(exc.strerror or exc)}")
        return None


def _column_pickers(found: dict[str, Any]) -> tuple[dict[str, str], Optional[str]]:
    """One picker per role over the file's own header (guessed from the usual names), and the first rows."""
    header: list[str] = found["columns"]
    st.caption(f"{'Tab' if found['sep'] == chr(9) else 'Comma'}-separated, {len(header)} columns; the first rows:")
    rows = [r[: len(header)] + [""] * (len(header) - len(r)) for r in found["rows"]]
    st.dataframe(pd.DataFrame(rows, columns=header), hide_index=True, width="stretch")
    chosen: dict[str, str] = {}
    cols = st.columns(3)
    for k, (role, label) in enumerate(ROLES.items()):
        options = header if role in ("user", "item") else [NONE] + header
        guess = found["guess"].get(role)
        index = options.index(guess) if guess in options else (min(k, len(options) - 1) if role in ("user", "item")
                                                                 else 0)
        with cols[k % 3]:
            pick = st.selectbox(label, options, index=index, key=f"{KEY}_col_{role}")
        if pick and pick != NONE:
            chosen[role] = pick
    weight_kind = None
    if "weight" in chosen:
        rating = found["guess"].get("weight", "").lower() == "rating"
        weight_kind = st.radio("The weight is", ["plays", "rating"], index=1 if rating else 0, horizontal=True,
                               key=f"{KEY}_weight_kind",
                               help="plays: how often a listener played the item (more = stronger); "
                                    "rating: an explicit score (e.g. 1–5)")
    return chosen, weight_kind


def _jobs_panel() -> None:
    """The shared list of log trainings; redrawn while one runs, and the whole app once one finishes."""
    show(lambda: logs.jobs(limit=10), KEY, _done_text, title="Log trainings",
         cancel=lambda job_id: logs.cancel(job_id, permission=profiles.heavy_permission()))


def _done_text(result: dict[str, Any]) -> str:
    """What a finished training says: its size, the validation metric, whether up next was trained."""
    s = result.get("summary", {})
    text = f"{s.get('users', 0):,} listeners, {s.get('items', 0):,} items, {s.get('interactions', 0):,} interactions"
    v = result.get("validation")
    if v:
        text += f"; validation {v['metric'].upper()} {v['value']} at epoch {v['epoch']}"
    nxt = result.get("up_next")
    if nxt:
        text += "; up next trained" if nxt.get("trained") else f"; up next not trained ({nxt.get('reason', '')})"
    return text + ". Open the Music tab to use it."
