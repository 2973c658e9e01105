"""Adding a catalog: read and check the source, build it, and clean up — the one path the CLI and the Data page use.

The Data page never builds in the server: it saves the upload under a random name and queues
``build_job``, which a worker process runs (``core.jobs``). The CLI calls ``add_catalog`` directly.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from core.catalog.build import build_catalog, catalogs_dir
from core.catalog.sources import CatalogError, builtin_source, check_name, read_source
from core.jobs import job_handler
from core.jobs.uploads import is_upload
from core.progress import ProgressFn

log = logging.getLogger(__name__)

#: Names the shipped catalogs keep (their items' feedback is keyed ``<name>/<id>`` too).
RESERVED = frozenset({"fashion-mnist", "tuxpaint-clothes", "tuxpaint"})
#: The job queue's handler for catalog builds.
HANDLER = "core.catalog.jobs:build_job"


def add_catalog(name: str, source: str | Path, *, meta: Optional[str | Path] = None, replace: bool = False,
                progress: Optional[ProgressFn] = None, source_label: str = "") -> dict[str, Any]:
    """Read ``source`` (folder, CSV, Kaggle folder, zip, or a built-in name) and build catalog ``name``.

    Returns ``{"name", "items", "skipped": {"count", "reasons", "files"}, "seconds", ...}``; raises
    ``CatalogError`` with one sentence for anything a person must fix.
    """
    name = check_name(name)
    if name in RESERVED and str(source) != name:
        raise CatalogError(f"{name} is the name of a shipped catalog; choose another name.")
    started = time.perf_counter()
    catalogs_dir().mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".source-", dir=catalogs_dir()))
    try:
        report = builtin_source(name) if str(source) == name and name in RESERVED else read_source(
            Path(source), meta=Path(meta) if meta else None, workdir=workdir)
        manifest = build_catalog(name, report, progress=progress, replace=replace,
                                 source_label=source_label or str(source))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary(manifest, time.perf_counter() - started)


def summary(manifest: dict[str, Any], seconds: Optional[float] = None) -> dict[str, Any]:
    """What the CLI prints and the Data page lists about a built catalog."""
    reasons: dict[str, int] = {}
    for entry in manifest.get("skipped", []):
        kind = entry["reason"].split(":")[0].split("(")[0].strip()
        reasons[kind] = reasons.get(kind, 0) + 1
    return {
        "name": manifest["name"], "items": manifest["items"], "titled": manifest.get("titled", 0),
        "skipped": {"count": manifest.get("skipped_count", 0), "reasons": reasons,
                    "files": manifest.get("skipped", [])[:100]},
        "seconds": round(seconds if seconds is not None else manifest.get("seconds", 0.0), 2),
        "images_per_s": manifest.get("images_per_s"), "phases": manifest.get("phases", {}),
        "source": manifest.get("source", {}), "created": manifest.get("created"),
        "duplicate_groups": len(manifest.get("duplicates", {}).get("groups", [])),
        "search": manifest.get("search", {}).get("kind", "exact"),
    }


@job_handler
def build_job(params: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    """The queued build: ``params`` = ``{"name", "upload" | "path", "replace"}``; an upload is deleted after."""
    upload = params.get("upload")
    source = upload or params.get("path")
    if not source:
        raise CatalogError("The build job names no source.")
    try:
        return add_catalog(params["name"], source, replace=bool(params.get("replace")), progress=progress,
                           source_label=str(params.get("label") or source))
    finally:
        if upload and is_upload(upload):
            Path(upload).unlink(missing_ok=True)
