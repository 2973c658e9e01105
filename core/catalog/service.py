"""What the Data page calls: the shelf of catalogs, queued builds, removal, near-duplicates.

The page never builds anything itself: ``queue_build`` checks what can be checked at once (the name, the
archive's directory), saves the upload under a random name and queues a job that a worker process runs.
Fashion and Product search open catalogs through their own services, which call ``core.catalog.store``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Optional

from core.catalog.archive import check_archive
from core.catalog.build import read_manifest
from core.catalog.jobs import HANDLER, RESERVED, summary
from core.artifacts import ArtifactError
from core.catalog.sources import BUILTINS, SHIPPED_PREFIX, CatalogError, check_name
from core.catalog.store import BuiltCatalog, folder_of, list_catalogs, open_catalog, remove_catalog, version
from core.feedback.store import FeedbackStore
from core.jobs import JobQueue, JobView
from core.jobs import worker as job_worker  # called through its module: tests replace worker.ensure_worker
from core.jobs.uploads import save_upload

log = logging.getLogger(__name__)

#: The tabs whose likes and dislikes of catalog items are keyed ``<catalog>/<id>``.
ITEM_TABS = ("fashion", "multimodal")
KIND = "catalog.build"

__all__ = ["BuiltCatalog", "CatalogError", "cancel", "catalogs", "details", "is_shipped", "jobs", "open_catalog",
           "queue_build", "queue_shipped", "remove", "version"]


def catalogs() -> list[dict[str, Any]]:
    """Every built catalog as a summary row (damaged ones carry ``error``), newest first."""
    return [summary(m) if "error" not in m else m for m in list_catalogs()]


def details(name: str) -> dict[str, Any]:
    """One catalog's manifest: source, skipped files, duplicate groups, timings."""
    folder = folder_of(name)
    if not folder.is_dir():
        raise CatalogError(f"There is no catalog named {name}.")
    return read_manifest(folder)


Permission = tuple[bool, str]


def _allowed(permission: Permission, what: str) -> None:
    """Refuse a heavy or shared action unless ``core.identity.may_run_heavy`` allowed it for this person."""
    allowed, why = permission
    if not allowed:
        raise CatalogError(why or f"Only administrators may {what}.")


def queue_build(name: str, *, permission: Permission, upload: Optional[bytes] = None, path: Optional[str] = None,
                label: str = "", owner: Optional[str] = None, replace: bool = False,
                queue: Optional[JobQueue] = None) -> int:
    """Check the request, keep the upload, queue the build; returns the job id. ``CatalogError`` when refused.

    ``permission`` is ``core.identity.may_run_heavy`` for the person asking, taken at the moment they ask.
    """
    _allowed(permission, "build catalogs")
    name = check_name(name)
    if name in RESERVED:
        raise CatalogError(f"{name} is the name of a shipped catalog; choose another name.")
    if version(name) is not None and not replace:
        raise CatalogError(f"A catalog named {name} already exists; remove it first or choose another name.")
    if (upload is None) == (path is None):
        raise CatalogError("Give either an uploaded .zip or a folder path on the server.")
    params: dict[str, Any] = {"name": name, "replace": replace, "label": label[:200]}
    if upload is not None:
        _check_upload(upload)
        params["upload"] = str(save_upload(upload, ".zip"))
    else:
        folder = Path(str(path)).expanduser()
        if not folder.exists():
            raise CatalogError(f"There is no file or folder {folder} on the server.")
        params["path"] = str(folder.resolve())
    queue = queue or JobQueue()
    job = queue.submit(KIND, HANDLER, f"Build catalog {name}", params, owner=owner)
    job_worker.ensure_worker(queue.url)
    return job


def queue_shipped(name: str, *, permission: Permission, owner: Optional[str] = None,
                  queue: Optional[JobQueue] = None) -> int:
    """Queue the build of a shipped catalog (``shipped:NAME``) that is missing or stale; returns the job id.

    A build of it already queued or running is returned instead of a second one.
    """
    _allowed(permission, "build catalogs")
    if name not in BUILTINS:
        raise CatalogError(f"{name[:64]!r} is not a shipped catalog (those are {', '.join(BUILTINS)}).")
    queue = queue or JobQueue()
    waiting = queue.waiting(KIND, name=name)
    if waiting is not None:
        return waiting.id
    params = {"name": name, "path": f"{SHIPPED_PREFIX}{name}", "update": True, "label": f"{SHIPPED_PREFIX}{name}"}
    job = queue.submit(KIND, HANDLER, f"Build the shipped catalog {name}", params, owner=owner)
    job_worker.ensure_worker(queue.url)
    return job


def _check_upload(data: bytes) -> None:
    """The archive checks that need no extraction (size, entries, paths, links, ratio), before it is queued."""
    with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
        tmp.write(data)
        tmp.flush()
        check_archive(Path(tmp.name))


def jobs(limit: int = 20, queue: Optional[JobQueue] = None) -> list[JobView]:
    """The latest catalog builds, newest first: every session sees the same list."""
    return [j for j in (queue or JobQueue()).list(limit=limit) if j.kind == KIND]


def cancel(job_id: int, *, permission: Permission, queue: Optional[JobQueue] = None) -> JobView:
    _allowed(permission, "cancel builds")
    return (queue or JobQueue()).cancel(job_id)


def is_shipped(name: str) -> bool:
    """True for a catalog that ships with the app (built from ``shipped:NAME``), whether built yet or not."""
    if name in RESERVED:
        return True
    try:
        return bool(read_manifest(folder_of(name)).get("shipped", False))
    except (CatalogError, ArtifactError):
        return False


def remove(name: str, *, permission: Permission, admin: bool = False,
           store: Optional[FeedbackStore] = None) -> dict[str, int]:
    """Delete a catalog's files and every like, dislike and saved item of its items; returns the rows removed.

    A shipped catalog is everyone's starting point, so only an administrator (a login listed in ``admins``,
    passed as ``admin``) or the operator at the command line (``python -m core catalog remove``) removes it.
    """
    _allowed(permission, "remove shared catalogs")
    if is_shipped(name) and not admin:
        raise CatalogError(f"{name} ships with the app; only an administrator may remove it.")
    remove_catalog(name)
    if store is None:
        return {}
    return store.forget_items(f"{name}/", ITEM_TABS)
