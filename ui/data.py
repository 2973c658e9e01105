"""Data tab: add your own catalog of photos, watch it build, inspect it, remove it.

Nothing heavy runs here: "Build" checks the name and the archive's directory, keeps the upload under a random
name and queues a job that a worker process runs (``core.catalog.service``). The job list is shared by every
session and refreshes itself while a build runs; a finished build appears at once in the catalog pickers of
Fashion and Product search, for everyone.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import Any

import pandas as pd
import streamlit as st

from core.catalog import service as catalogs
from core.catalog.sources import CatalogError
from core.jobs import JobError
from ui import data_history, data_music, data_photos
from ui import profile as profiles
from ui.common import md_text
from ui.jobs_view import show

log = logging.getLogger(__name__)

#: Largest archive the page accepts (photo uploads elsewhere keep ``server.maxUploadSize``, 20 MB); the upload
#: is held in memory until it is written to disk for the build, so this also bounds a session's memory.
MAX_UPLOAD_MB = 500
KEY = "data"


def _server_paths_allowed() -> bool:
    """Folder paths on the server are offered only when the operator says so (they can read any folder)."""
    return os.environ.get("RECS_ALLOW_SERVER_PATHS", "") == "1"


def render() -> None:
    st.subheader("Your data")
    st.write("Add a catalog of your own photos: a **.zip** of a folder of images (sub-folders become categories), "
             "of a CSV with an image column (plus title, category, description, any other columns), or of the "
             "Kaggle *Fashion Product Images* layout (`styles.csv` + `images/`). It builds in the background; "
             "then Fashion and Product search offer it in their catalog pickers, for everyone using this app.")
    _add_form()
    _jobs_panel()
    _catalogs_panel()
    st.divider()
    data_history.render()
    st.divider()
    data_music.render()
    st.divider()
    data_photos.render()


def _add_form() -> None:
    allowed, why = profiles.heavy_permission()
    if not allowed:
        st.info(f"Building catalogs is not open to you here: {md_text(why)}")
        return
    with st.form(f"{KEY}_add", clear_on_submit=True, border=True):
        name = st.text_input("Catalog name", max_chars=64, key=f"{KEY}_name",
                             help="1–64 letters, digits, '-' or '_' (e.g. my-shop)")
        upload = st.file_uploader("Photos (.zip)", type=["zip"], key=f"{KEY}_zip", max_upload_size=MAX_UPLOAD_MB)
        path = st.text_input("…or a folder, CSV or zip on the server", key=f"{KEY}_path") \
            if _server_paths_allowed() else ""
        submitted = st.form_submit_button("Build this catalog")
    if not submitted:
        return
    try:
        if upload is not None and upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            raise CatalogError(f"The archive is {upload.size / 1e6:,.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
        job = catalogs.queue_build(name, permission=profiles.heavy_permission(),
                                   upload=upload.getvalue() if upload is not None else None,
                                   path=path.strip() or None, label=upload.name if upload is not None else path,
                                   owner=profiles.identity().key or None)
    except (CatalogError, JobError) as exc:
        st.error(md_text(str(exc)))
        return
    st.success(f"Queued build #{job}. It appears below; the catalog is usable once it says done.")


def _jobs_panel() -> None:
    """The shared job list; redrawn while a build runs, and the whole tab once one finishes."""
    show(lambda: catalogs.jobs(limit=10), KEY, _built, title="Builds",
         cancel=lambda job_id: catalogs.cancel(job_id, permission=profiles.heavy_permission()))


def _built(r: dict[str, Any]) -> str:
    return f"{r.get('items', 0):,} images in {r.get('seconds', 0):.0f} s, {r.get('skipped', {}).get('count', 0)} skipped"


def _catalogs_panel() -> None:
    rows = catalogs.catalogs()
    if not rows:
        st.info("No catalog yet (the shipped ones appear here once `make run` or `make models` has built them).")
        return
    st.markdown("**Catalogs**")
    table = pd.DataFrame([{
        "name": r["name"], "shipped": "✓" if r.get("shipped") else "", "images": r.get("items"), "titled": r.get("titled"),
        "skipped": r.get("skipped", {}).get("count"), "near-duplicate groups": r.get("duplicate_groups"),
        "source": r.get("source", {}).get("label", ""), "built": r.get("created"), "problem": r.get("error", ""),
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch")
    names = [r["name"] for r in rows]
    name = st.selectbox("Inspect a catalog", names, key=f"{KEY}_inspect")
    if name:
        _inspect(name)


def _inspect(name: str) -> None:
    try:
        manifest = catalogs.details(name)
    except (CatalogError, Exception) as exc:  # noqa: BLE001 - a damaged catalog can still be removed
        st.error(f"{name} cannot be read: {md_text(str(exc))}")
        manifest = None
    if manifest:
        skipped = manifest.get("skipped", [])
        with st.expander(f"Skipped: {manifest.get('skipped_count', 0)} file(s) or row(s)", expanded=False):
            if skipped:
                st.dataframe(pd.DataFrame(skipped), hide_index=True, width="stretch")
        _duplicates(name)
        phases = manifest.get("phases", {})
        st.caption(f"Built in {manifest.get('seconds', 0):.1f} s ({manifest.get('images_per_s', 0)} images/s); "
                   + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    _remove(name)


def _duplicates(name: str) -> None:
    try:
        catalog = catalogs.open_catalog(name)
    except Exception as exc:  # noqa: BLE001 - shown, not raised: the page keeps working
        st.error(f"{name} cannot be opened: {md_text(str(exc))}")
        return
    groups = catalog.duplicate_groups()
    threshold = catalog.manifest.get("duplicates", {}).get("cosine")
    with st.expander(f"Near-duplicates: {len(groups)} group(s) (image cosine ≥ {threshold})", expanded=bool(groups)):
        if not groups:
            st.write("No near-identical images.")
        for group in groups[:20]:
            cols = st.columns(min(len(group), 6))
            for col, item in zip(cols, group[:6]):
                col.image(str(catalog.thumbnail(catalog.index.position(item))), caption=md_text(item), width="stretch")


def _remove(name: str) -> None:
    """The delete button, for whoever may remove it: a shipped catalog only for an administrator's login."""
    admin = profiles.identity().admin
    if not profiles.heavy_permission()[0]:
        return
    if catalogs.is_shipped(name) and not admin:
        st.caption(f"{name} ships with the app: only an administrator may remove it.")
        return
    with st.expander(f"Remove {name}"):
        sure = st.checkbox(f"Yes, delete {name}: its files and everyone's likes of its items", key=f"{KEY}_sure_{name}")
        if st.button("Delete catalog", key=f"{KEY}_delete_{name}", disabled=not sure, type="primary"):
            try:
                removed = catalogs.remove(name, permission=profiles.heavy_permission(), admin=admin,
                                          store=profiles.store())
            except CatalogError as exc:
                st.error(md_text(str(exc)))
                return
            log.info("removed catalog %s (%s) at %s", name, removed, _dt.datetime.now().isoformat(timespec="seconds"))
            st.rerun()
