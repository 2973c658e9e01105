"""Data tab, tagged photos: import a zip of photos with their hashtags, retrain the hashtag model, pick its version.

What a person sees, top to bottom: the import form and the report of their last import; their imports (an
administrator sees everyone's) with a remove button; the retrain jobs with their progress (each epoch's
validation F1@5); the model versions, which one the Hashtags tab serves and, when a newer one is not served, why.

Nothing heavy runs in the page's thread: an import is a job (``hashtag.service.queue_import``; a worker unpacks,
checks and stores the photos, all or nothing) and so is a retrain (``hashtag.service.queue_retrain``). The
hashtag package is reached only through ``hashtag.service``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import pandas as pd
import streamlit as st

from core.feedback import FeedbackError
from core.jobs import JobError
from hashtag import service
from hashtag.service import DEFAULT_DATASET
from ui import profile as profiles
from ui.common import md_text
from ui.jobs_view import follow, job_rows, show

log = logging.getLogger(__name__)

KEY = "photos"
REPORT = f"{KEY}_report"
#: Largest zip the page accepts; ``hashtag.imports.LIMITS`` refuses bigger archives again on the server.
MAX_UPLOAD_MB = 500


def _dataset_root() -> str:
    """The dataset whose model the Hashtags tab serves (the one retrains extend)."""
    return str(DEFAULT_DATASET)


def render() -> None:
    """The tagged-photos section of the Data tab."""
    st.subheader("Tagged photos for the hashtag model")
    st.write("Import a **.zip** of your photos with their hashtags: an `image,hashtags` CSV beside them (paths "
             "relative to the CSV; hashtags separated by spaces or commas, with or without `#`), or Flickr8k's "
             "layout (`Flicker8k_Dataset/` + `Flickr8k.token.txt`). They join the hashtag model's training data as "
             "their own split; an administrator's import is used at once and starts a retrain in the background, "
             "anyone else's waits on the Review page. A retrain that scores worse on the fixed validation split "
             "than the model in use is kept but not served.")
    root = _dataset_root()
    _import_form()
    _import_jobs()
    _report()
    _imports_panel()
    _retrain_panel(root)
    _versions_panel(root)


def _import_form() -> None:
    with st.form(f"{KEY}_import", clear_on_submit=True, border=True):
        upload = st.file_uploader("Tagged photos (.zip)", type=["zip"], key=f"{KEY}_zip", max_upload_size=MAX_UPLOAD_MB)
        submitted = st.form_submit_button("Import these photos")
    if not submitted:
        return
    if upload is None:
        st.error("Choose a .zip of photos with their hashtags first.")
        return
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"The zip is {upload.size / 1e6:,.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
        return
    import_upload(upload.getvalue(), upload.name)


def import_upload(data: bytes, name: str) -> None:
    """Queue the import of one uploaded zip for this session's profile (a worker stores it; see ``_import_jobs``)."""
    def action(store, key: str) -> int:
        return service.queue_import(key, data, label=name, permission=profiles.heavy_permission(),
                                    dataset_root=_dataset_root(), images_dir=store.images_dir)

    try:
        job = profiles.write(action)
    except (JobError, ValueError) as exc:
        st.session_state[REPORT] = {"name": name, "error": str(exc)}
        return
    if job is not None:
        st.session_state.pop(REPORT, None)
        st.toast(f"Import #{job} queued.")


def _import_jobs() -> None:
    """This person's running photo import, and the report of the latest one when it ends (kept in the session)."""
    follow(lambda: service.import_jobs(profiles.known() or "", limit=3), _import_outcome)


def _import_outcome(jobs: Any) -> None:
    job_rows([j for j in jobs if j.active], f"{KEY}_imports", lambda r: "")
    latest = next((j for j in jobs if not j.active), None)
    if latest is None or st.session_state.get(f"{KEY}_reported") == latest.id:
        return
    st.session_state[f"{KEY}_reported"] = latest.id
    r = dict(latest.result or {})
    outcome: dict[str, Any] = {"name": latest.params.get("label", "")}
    if latest.status != "done":
        outcome["error"] = latest.message or latest.status
    else:
        outcome["report"] = r
        if "retrain_job" in r:
            outcome["job"] = r["retrain_job"]
        elif "retrain_error" in r:
            outcome["job_error"] = r["retrain_error"]
    st.session_state[REPORT] = outcome
    st.rerun()  # the report, the imports table and the retrain list follow


def _report() -> None:
    """The last import's report (kept in the session, so it stays while the page refreshes)."""
    profiles.show_write_error()
    last: Optional[dict[str, Any]] = st.session_state.get(REPORT)
    if not last:
        return
    if "error" in last:
        st.error(f"{md_text(last['name'])} was not imported: {md_text(last['error'])}")
        return
    r = last.get("report")
    if not r:
        return
    layout = "Flickr8k layout" if r["kind"] == "flickr8k" else f"CSV {r['source']}"
    skipped = "; ".join(f"{n} {why}" for why, n in r.get("skipped", {}).items())
    st.success(f"Imported {r['photos']:,} photos from {md_text(r['label'])} ({md_text(layout)}, {r['tags']:,} distinct "
               f"hashtags) as import #{r['batch']}" + (f". Left out: {md_text(skipped)}." if skipped else "."))
    if r["review"] == "accepted":
        if "job" in last:
            st.info(f"Accepted for training; retrain #{last['job']} is queued below.")
        elif "job_error" in last:
            st.warning(f"Accepted for training, but the retrain could not be queued: {md_text(last['job_error'])}")
    else:
        st.info("Waiting for an administrator (here, or photo by photo on the Review page); once accepted, the photos "
                "join the next retrain.")


def _imports_panel() -> None:
    """This profile's imports (everyone's for an administrator), with their review state and a remove button."""
    who = profiles.identity()
    admin = profiles.heavy_permission()[0]
    note = st.session_state.pop(f"{KEY}_note", None)
    if note:
        st.success(note)
    if not who.has_profile and not admin:
        return
    try:
        batches = service.imports(profiles.store(), None if admin else who.key)
    except FeedbackError as exc:
        st.error(f"The imports cannot be listed: {md_text(str(exc))}")
        return
    if not batches:
        st.caption("No imports of tagged photos yet.")
        return
    st.markdown("**Imports**" + (" (everyone's)" if admin else ""))
    st.dataframe(pd.DataFrame([{
        "import": f"#{b.id}", "file": b.label, "layout": b.kind, "photos": b.images,
        "accepted": b.reviews.get("accepted", 0), "pending": b.reviews.get("pending", 0),
        "rejected": b.reviews.get("rejected", 0), "imported": b.created_at[:16].replace("T", " "),
    } for b in batches]), hide_index=True, width="stretch")
    labels = {b.id: f"#{b.id} {b.label} ({b.images} photos)" for b in batches}
    with st.expander("Review or remove an import" if admin else "Remove an import"):
        chosen = st.selectbox("Import", list(labels), format_func=labels.get, key=f"{KEY}_pick")
        if chosen is None:
            return
        cols = st.columns(3)
        if admin and cols[0].button("Accept its photos for training", key=f"{KEY}_accept"):
            _review(int(chosen), "accepted")
        if admin and cols[1].button("Reject its photos", key=f"{KEY}_reject"):
            _review(int(chosen), "rejected")
        if cols[2].button("Remove this import and its photos", key=f"{KEY}_remove"):
            _remove(int(chosen), who.key)


def _review(batch_id: int, decision: str) -> None:
    """Accept or reject a whole import (the permission is taken at the click); an acceptance queues a retrain."""
    who = profiles.identity()
    try:
        n = service.review_import(profiles.store(), batch_id, decision, reviewer=who.key,
                                  permission=profiles.heavy_permission())
        note = f"Import #{batch_id}: {n} photos {decision}."
        if decision == "accepted":
            job = service.queue_retrain(_dataset_root(), store=profiles.store(), permission=profiles.heavy_permission(),
                                        owner=who.key or None)
            note += f" Retrain #{job} is queued below."
    except (FeedbackError, JobError, ValueError) as exc:
        st.error(md_text(str(exc)))
        return
    st.session_state[f"{KEY}_note"] = note
    st.rerun()


def _remove(batch_id: int, profile: str) -> None:
    try:
        removed = service.remove_import(profiles.store(), batch_id, profile=profile,
                                        permission=profiles.heavy_permission())
    except FeedbackError as exc:
        st.error(md_text(str(exc)))
        return
    st.session_state[f"{KEY}_note"] = f"Removed import #{batch_id} ({removed['tagged_images']} photos)."
    if (st.session_state.get(REPORT) or {}).get("report", {}).get("batch") == batch_id:
        st.session_state.pop(REPORT)  # its report describes photos that are gone
    st.rerun()


def _retrain_panel(root: str) -> None:
    allowed, why = profiles.heavy_permission()
    if allowed:
        if st.button("Retrain with imported photos", key=f"{KEY}_retrain",
                     help="Trains a new model version on the dataset plus every accepted tagged photo, in the "
                          "background; it is served only if it does not score worse on the validation split."):
            try:
                job = service.queue_retrain(root, store=profiles.store(), permission=profiles.heavy_permission(),
                                            owner=profiles.identity().key or None)
                st.success(f"Retrain #{job} queued.")
            except (JobError, ValueError) as exc:
                st.error(md_text(str(exc)))
    else:
        st.caption(f"Retrains are started by administrators: {md_text(why)}")
    _jobs()


def _jobs() -> None:
    """The shared list of retrains; redrawn while one runs, and the whole section once one finishes."""
    show(lambda: service.retrain_jobs(limit=5), KEY, _retrained, title="Retrains")


def _retrained(r: dict[str, Any]) -> str:
    verdict = "now serving" if r.get("served") else "kept, not served"
    return (f"version {r.get('version')} {verdict} ({r.get('reason', '')}); "
            f"{r.get('user_photos', 0)} tagged photos, {r.get('seconds') or 0:.0f} s")


def trained_on(row: dict[str, Any]) -> str:
    """``tuxpaint (759 images) + 20 tagged photos from imports #3, #4``: what one version learned from."""
    text = f"{row.get('dataset') or '?'} ({row.get('dataset_images') or '?'} images)"
    if row.get("user_photos"):
        imports = ", ".join(f"#{i}" for i in row.get("imports") or [])
        text += f" + {row['user_photos']} tagged photos" + (f" from imports {imports}" if imports else "")
    return text


def _versions_panel(root: str) -> None:
    rows = service.list_versions(root)
    if not rows:
        st.info("No hashtag model is trained yet; a retrain (or `python -m hashtag train`) makes the first one.")
        return
    st.markdown("**Model versions**")
    st.dataframe(pd.DataFrame([{
        "version": r["version"], "serving": "✓" if r["serving"] else "", "created": r["created"][:16].replace("T", " "),
        "val F1@5": r["val_f1@5"], "trained on": trained_on(r), "decision": r["decision"],
    } for r in rows]), hide_index=True, width="stretch")
    newest = rows[0]
    if not newest["serving"]:
        served = next((r["version"] for r in rows if r["serving"]), service.BASE)
        # a retrain's own verdict, unless it was served at first and an administrator switched away since
        why = newest["decision"] if newest.get("switched") is False else "an administrator serves another version"
        st.warning(f"The newest version {newest['version']} is not served (still {served}): {why}.")
    allowed = profiles.heavy_permission()[0]
    if allowed and len(rows) > 1:
        with st.expander("Serve another version"):
            chosen = st.selectbox("Version", [r["version"] for r in rows], key=f"{KEY}_version_pick")
            if st.button("Serve this version", key=f"{KEY}_serve"):
                try:
                    service.switch_version(root, chosen, permission=profiles.heavy_permission())
                except ValueError as exc:
                    st.error(md_text(str(exc)))
                    return
                st.rerun()
