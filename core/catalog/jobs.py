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

from core.artifacts import ArtifactError
from core.catalog.build import DEFAULT_ENCODER, build_catalog, catalogs_dir, read_manifest
from core.catalog.sources import (SHIPPED_PREFIX, CatalogError, SourceReport, builtin_source, check_name, read_source,
                                  shipped_name)
from core.encoders import get_image_encoder
from core.jobs import job_handler
from core.jobs.uploads import is_upload
from core.progress import ProgressFn

log = logging.getLogger(__name__)

#: Names the shipped catalogs keep (their items' feedback is keyed ``<name>/<id>`` too); only their
#: ``shipped:NAME`` source builds them.
RESERVED = frozenset({"fashion-mnist", "tuxpaint-clothes", "tuxpaint"})
#: The job queue's handler for catalog builds.
HANDLER = "core.catalog.jobs:build_job"


def add_catalog(name: str, source: str | Path, *, meta: Optional[str | Path] = None, replace: bool = False,
                update: bool = False, progress: Optional[ProgressFn] = None, source_label: str = "") -> dict[str, Any]:
    """Read ``source`` (folder, CSV, Kaggle folder, zip, or ``shipped:NAME``) and build catalog ``name``.

    A shipped catalog is built by this same code from its source adapter (``builtin_source``) and keeps its
    own name (``add tuxpaint shipped:tuxpaint``): its items' feedback is keyed ``<name>/<id>``. ``update``
    builds only when the catalog is missing or its source or image encoder changed (the default-model build
    runs it on every ``make run``); otherwise the existing catalog's summary comes back with ``built`` false.
    Returns ``{"name", "items", "skipped": {"count", "reasons", "files"}, "seconds", "built", ...}``; raises
    ``CatalogError`` with one sentence for anything a person must fix.
    """
    name = check_name(name)
    shipped = shipped_name(source)
    if shipped is not None and shipped != name:
        raise CatalogError(f"A shipped catalog keeps its own name: `python -m core catalog add {shipped[:64]} "
                           f"{SHIPPED_PREFIX}{shipped[:64]}`.")
    if name in RESERVED and shipped is None:
        raise CatalogError(f"{name} is the name of a shipped catalog; choose another name.")
    started = time.perf_counter()
    catalogs_dir().mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".source-", dir=catalogs_dir()))
    try:
        report = builtin_source(name) if shipped is not None else read_source(
            Path(source), meta=Path(meta) if meta else None, workdir=workdir)
        fresh = _fresh_manifest(name, report) if update else None
        if fresh is not None:
            log.info("catalog %s is fresh (source %s); not rebuilt", name, fresh["source"].get("checksum"))
            return {**summary(fresh, time.perf_counter() - started), "built": False}
        manifest = build_catalog(name, report, progress=progress, replace=replace or update,
                                 source_label=source_label or str(source))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**summary(manifest, time.perf_counter() - started), "built": True}


def _fresh_manifest(name: str, report: SourceReport) -> Optional[dict[str, Any]]:
    """The built catalog's manifest when it was made from this very source with today's image encoder, else None."""
    folder = catalogs_dir() / name
    try:
        manifest = read_manifest(folder)
    except ArtifactError:  # missing, damaged or of another version: build it
        return None
    same_source = manifest.get("source", {}).get("checksum") == report.checksum()
    same_encoder = manifest.get("image_encoder") == get_image_encoder(*DEFAULT_ENCODER).spec
    return manifest if same_source and same_encoder else None


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
        "shipped": bool(manifest.get("shipped", False)),
        "duplicate_groups": len(manifest.get("duplicates", {}).get("groups", [])),
        "search": manifest.get("search", {}).get("kind", "exact"),
    }


@job_handler
def build_job(params: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    """The queued build: ``params`` = ``{"name", "upload" | "path", "replace", "update"}`` (a path may be
    ``shipped:NAME``); an upload is deleted after."""
    upload = params.get("upload")
    source = upload or params.get("path")
    if not source:
        raise CatalogError("The build job names no source.")
    try:
        return add_catalog(params["name"], source, replace=bool(params.get("replace")),
                           update=bool(params.get("update")), progress=progress,
                           source_label=str(params.get("label") or source))
    finally:
        if upload and is_upload(upload):
            Path(upload).unlink(missing_ok=True)
