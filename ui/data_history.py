"""Data page, "Your listening history": import a Spotify, Last.fm or ListenBrainz export into your profile.

Why here and not in the Music tab: an import is data you give, like a catalog; the Music tab then uses it in
every dataset with real artist names ("Your picks"). The click only keeps the files and queues a job
(``music.history.jobs``): a worker process reads the export whole and stores it in one transaction, so a bad
file changes nothing and a ten-year export never slows the app. Only you see your imports and their reports.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from core.artifacts import ArtifactError
from core.jobs import JobError
from music.service import HISTORY_MAX_BYTES as MAX_UPLOAD_BYTES, NO_REAL_NAMES, HistoryError, stored_report
from music.service import history_jobs as jobs_of, queue_history as queue_import, trained_datasets
from ui import profile as profiles
from ui.common import RESULT_ENTRIES, RESULT_TTL, md_text
from ui.jobs_view import follow, job_rows
from ui.music import bundle_for

log = logging.getLogger(__name__)

KEY = "history"
MAX_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
TYPES = ["zip", "json", "jsonl", "csv"]


def render() -> None:
    st.markdown("#### Your listening history")
    st.write("Import what Spotify, Last.fm or ListenBrainz let you download: Spotify's **my_spotify_data.zip** "
             "(extended streaming history or the basic account data), a Last.fm scrobble **CSV**, or a "
             "ListenBrainz listens export. Plays under 30 s count as skips, not likes; play counts become "
             "how sure the picks are of your taste. Only your profile sees it; **Forget me** removes it.")
    datasets = [d for d in trained_datasets() if d != "simulated"]
    _import_form(datasets)
    _imports_panel()
    _stored_panel(datasets)


def _import_form(datasets: list[str]) -> None:
    with st.form(f"{KEY}_form", clear_on_submit=True, border=True):
        files = st.file_uploader("Export files (or the .zip)", type=TYPES, accept_multiple_files=True,
                                 key=f"{KEY}_files", max_upload_size=MAX_UPLOAD_MB)
        dataset = st.selectbox("Match against", datasets, key=f"{KEY}_dataset",
                               help="a trained music dataset with real artist names") if datasets else None
        submitted = st.form_submit_button("Import history")
    if not datasets:
        st.caption(NO_REAL_NAMES.replace("The simulated dataset's", "The only trained dataset's"))
    if not submitted:
        return
    try:
        job = profiles.write(lambda db, key: queue_import(key, [(f.name, f.getvalue()) for f in files or []], dataset))
    except (HistoryError, JobError) as exc:
        st.error(md_text(str(exc)))
        return
    profiles.show_write_error()
    if job is not None:
        st.toast(f"Import #{job} queued.")


def _bundle(dataset: str) -> Any:
    try:
        return bundle_for(dataset)
    except (ArtifactError, OSError) as exc:
        st.warning(f"The {md_text(dataset)} models cannot be used for matching: {md_text(str(exc))}")
        return None


def _imports_panel() -> None:
    """This person's latest imports (nobody else's): progress while one runs, then its report."""
    follow(lambda: jobs_of(profiles.known() or "", limit=3), _imports)


def _imports(jobs: Any) -> None:
    job_rows(jobs, KEY, lambda r: f"{r.get('added', 0):,} new plays of {r.get('plays', 0):,} read",
             title="Your imports", failed_note="Nothing was imported.")
    if jobs and jobs[0].status == "done":
        _report(jobs[0].result)  # the latest import in full, with its match report


def _report(report: dict[str, Any]) -> None:
    """One import's report: plays read, skips, artists, matches, and what is not in the dataset."""
    st.success(f"Imported {report['added']:,} new plays ({report['already']:,} were already here).")
    cols = st.columns(4)
    cols[0].metric("Plays read", f"{report['plays']:,}")
    cols[1].metric("Skipped (< 30 s)", f"{report['skipped_short']:,}")
    if "artists" in report:
        cols[2].metric("Artists", f"{report['artists']:,}")
        cols[3].metric(f"In {report.get('dataset', 'the dataset')}", f"{report['matched']:,}")
    if report.get("skipped_no_artist"):
        st.caption(f"{report['skipped_no_artist']:,} plays had no artist (podcasts, audiobooks) and were left out.")
    if report.get("unmatched"):
        st.caption("Not in this dataset (most played first): " + ", ".join(md_text(a) for a in report["unmatched"]))
    if report.get("note"):
        st.info(report["note"])
    st.caption("Your picks are in the **Music** tab, under *Your picks*.")


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _stored_report(dataset: str, checksum: str, profile: str, version: str) -> dict[str, Any]:
    """The stored history matched to a dataset, once per (dataset version, history version): a rerun of the
    page does not match every play again."""
    return stored_report(profiles.store(), bundle_for(dataset), profile)


def _stored_panel(datasets: list[str]) -> None:
    """What this profile has imported so far, matched to a dataset, with a way to remove it."""
    profile = profiles.known()
    if not profile:
        return
    summary = profiles.store().play_summary(profile)
    if not summary["plays"]:
        return
    sources = ", ".join(f"{n:,} from {md_text(s)}" for s, n in summary["sources"].items())
    st.markdown(f"**Your imported history:** {summary['plays']:,} plays ({sources}), "
                f"{summary['skips']:,} of them skips.")
    if datasets:
        dataset = st.selectbox("Show how it matches", datasets, key=f"{KEY}_match_dataset")
        bundle = _bundle(dataset)
        if bundle is not None:
            _match_table(_stored_report(dataset, bundle.manifest.get("dataset_checksum", ""), profile,
                                        summary["version"]))
    with st.expander("Remove my imported history"):
        if st.button("Remove all imported plays", key=f"{KEY}_remove", type="primary"):
            gone = profiles.write(lambda db, key: db.forget_plays(key))
            if gone is not None:
                st.success(f"Removed {gone:,} plays.")
                st.rerun()


def _match_table(report: dict[str, Any]) -> None:
    st.dataframe(pd.DataFrame([{"artists": report.get("artists", 0), "in this dataset": report.get("matched", 0),
                                "plays counted": report.get("counted_plays", 0),
                                "plays of matched artists": report.get("matched_plays", 0)}]),
                 hide_index=True, width="stretch")
    if report.get("unmatched"):
        st.caption("Not in this dataset (most played first): " + ", ".join(md_text(a) for a in report["unmatched"]))

