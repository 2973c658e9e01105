"""How the Data page shows background jobs: one row per job (progress, then what it made or why it failed), an
optional Cancel, and a rerun of the page when one finishes so that what it made appears at once.

Why shared: catalog builds, log trainings, history imports and hashtag retrains are all rows of one job queue
(``core.jobs``), and a person should read them the same way wherever they appear.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import streamlit as st

from ui.common import md_text

#: What a finished job says (its result as a sentence; plain text, escaped here).
DoneText = Callable[[Any], str]
#: Seconds between redraws while a job runs.
POLL_SECONDS = 2


def follow(fetch: Callable[[], Sequence[Any]], body: Callable[[Sequence[Any]], None]) -> None:
    """Draw ``body(fetch())``; while one of the jobs is queued or running, inside a fragment that redraws itself.

    Why only then: a page that polls with nothing to follow reruns for every session every few seconds (ten
    people on the Data page, four job lists: twenty script runs a second for nothing), and each redraw closes
    any drop-down a person has open. Idle, the list is drawn once; the page's own rerun shows a job just queued.
    """
    jobs = fetch()
    if any(j.active for j in jobs):
        _follow_live(fetch, body)
    else:
        body(jobs)


@st.fragment(run_every=POLL_SECONDS)
def _follow_live(fetch: Callable[[], Sequence[Any]], body: Callable[[Sequence[Any]], None]) -> None:
    body(fetch())


def show(fetch: Callable[[], Sequence[Any]], key: str, done: DoneText, **options: Any) -> None:
    """``job_rows`` of the jobs ``fetch`` returns, redrawn while one runs (``follow``)."""
    follow(fetch, lambda jobs: job_rows(jobs, key, done, **options))


def job_rows(jobs: Sequence[Any], key: str, done: DoneText, *, title: str = "",
             cancel: Optional[Callable[[int], None]] = None, failed_note: str = "") -> None:
    """Draw ``jobs`` (newest first) and rerun the app when one of them has finished since the last draw.

    Drawn through ``show``/``follow``, which redraw it while a job runs; ``cancel(job_id)`` adds a Cancel button
    to active jobs and may raise ``ValueError`` with a message to show.
    """
    if not jobs:
        return
    if title:
        st.markdown(f"**{title}**")
    for job in jobs:
        _row(job, key, done, cancel, failed_note)
    finished = {j.id for j in jobs if not j.active}
    seen = st.session_state.setdefault(f"{key}_finished", set(finished))
    if finished - seen:
        st.session_state[f"{key}_finished"] = finished
        st.rerun()  # what the job made (a catalog, a dataset, a version, plays) shows everywhere at once


def _row(job: Any, key: str, done: DoneText, cancel: Optional[Callable[[int], None]], failed_note: str) -> None:
    left, right = st.columns([5, 1]) if cancel else (st.container(), None)
    with left:
        eta = f", about {duration(job.eta_seconds)} left" if job.status == "running" and job.eta_seconds else ""
        label = f"#{job.id} {md_text(job.title)} — {job.status}{eta}"
        if job.active:
            st.progress(min(max(job.progress, 0.0), 1.0), text=f"{label}: {md_text(job.message or 'waiting for a worker')}")
        elif job.status == "done":
            st.success(f"{label}: {md_text(done(job.result or {}))}")
        else:
            st.error(f"{label}: {md_text(job.message or '')}{' ' + failed_note if failed_note else ''}")
    if right is not None and job.active:
        with right:
            if st.button("Cancel", key=f"{key}_cancel_{job.id}"):
                try:
                    cancel(job.id)  # type: ignore[misc]
                except ValueError as exc:
                    st.error(md_text(str(exc)))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
