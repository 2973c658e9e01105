"""What the Fashion tab and the CLI call: catalogs, built indexes, queries by upload or by catalog item.

Why a separate room: the UI should not need to know where an index lives, how it is keyed or how an upload is
brought to the catalog's look; those are the package's business, and this module is the one door to them.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, read_json
from core.catalog import store as own_catalogs
from core.catalog.sources import CatalogError
from core.catalog.store import BuiltCatalog
from core.images import ImageSource
from fashion import feedback  # noqa: F401 - the tab's likes and re-ranking, reached through this service
from core.progress import ProgressFn
from core.search import Hit
from fashion.data import CATALOGS, Catalog, catalog_key, load_catalog
from fashion.evaluate import evaluation_path
from fashion.guard import GarmentCheck, garment_check  # cached per photo: reruns run no second CNN pass
from fashion.model import FashionIndex, index_stem, to_fashion_mnist_style
from fashion.train import build_index, open_index

log = logging.getLogger(__name__)

__all__ = ["BuiltCatalog", "Catalog", "CatalogError", "catalog_key", "feedback", "FashionIndex", "Hit", "build",
           "build_jobs", "catalog", "catalog_look", "catalog_names", "GarmentCheck", "garment_check", "queue_build",
           "index_stamp", "is_built_catalog", "is_own", "open_index", "own_catalog", "own_version", "saved_evaluation", "search_upload",
           "similar_items"]


def catalog_names() -> list[str]:
    """Every catalog the tab can search: the shipped ones, then the ones people built on the Data page."""
    return list(CATALOGS) + [n for n in own_catalogs.catalog_names() if n not in CATALOGS]


def is_own(name: str) -> bool:
    """True for a catalog built from someone's own photos (``core.catalog``), searched by its image vectors."""
    return name not in CATALOGS


def is_built_catalog(name: str) -> bool:
    """True when ``name`` is a catalog built with ``python -m core catalog add`` or on the Data page."""
    try:
        return own_catalogs.version(name) is not None
    except CatalogError:  # a path or another string that is no catalog name
        return False


def own_version(name: str) -> Optional[float]:
    """The built catalog's version (manifest mtime) or None when it is gone: the cache key of its results."""
    return own_catalogs.version(name)


def own_catalog(name: str) -> BuiltCatalog:
    """A built catalog, opened once per build and shared by every session; ``CatalogError`` when absent."""
    return own_catalogs.open_catalog(name)


def catalog(name: str) -> Catalog:
    """A catalog by name (``fashion-mnist``, ``tuxpaint-clothes``) or folder; ``DataUnavailable`` when absent."""
    return load_catalog(name)


def index_stamp(name: str) -> Optional[float]:
    """The built index's manifest modification time (a cache key that changes on rebuild), or None if unbuilt."""
    path = index_stem(catalog_key(name)).with_suffix(".json")
    return path.stat().st_mtime if path.is_file() else None


def build(name: str, progress: Optional[ProgressFn] = None) -> FashionIndex:
    """Build (or reuse a fresh) index for a catalog with the default encoder settings."""
    index, _built = build_index(name, progress=progress)
    return index


def queue_build(name: str, *, permission: tuple[bool, str], owner: Optional[str] = None, queue: Any = None) -> int:
    """Queue the index build of a shipped catalog for a worker process (``fashion.jobs``); returns the job id.

    A build of the same catalog already queued or running is returned instead of a second one.
    """
    from core.jobs import JobQueue, ensure_worker
    from fashion.jobs import HANDLER, KIND

    allowed, why = permission
    if not allowed:
        raise CatalogError(why or "Only administrators may build indexes.")
    if name not in CATALOGS:
        raise CatalogError(f"{name!r} is not a shipped catalog (those are {', '.join(CATALOGS)}).")
    queue = queue or JobQueue()
    waiting = next((j for j in build_jobs(queue=queue) if j.active and j.params.get("catalog") == name), None)
    if waiting is not None:
        return waiting.id
    job = queue.submit(KIND, HANDLER, f"Build the {name} index", {"catalog": name}, owner=owner)
    ensure_worker(queue.url)
    return job


def build_jobs(limit: int = 5, queue: Any = None) -> list:
    """The latest index builds, newest first (every session sees the same list)."""
    from core.jobs import JobQueue
    from fashion.jobs import KIND

    return [j for j in (queue or JobQueue()).list(limit=50) if j.kind == KIND][:limit]


def catalog_look(image: ImageSource) -> np.ndarray:
    """An upload as a 28 px grey catalog image sees it (what the search of a grey catalog encodes)."""
    return to_fashion_mnist_style(image)


def search_upload(index: FashionIndex, image: Any, k: int = 10,
                  categories: Optional[Sequence[str]] = None) -> list[Hit]:
    """Catalog items most similar to an uploaded image; a bad image raises ``core.images.ImageError``."""
    return index.search(image, k, categories)


def similar_items(index: FashionIndex, item_id: str, k: int = 10,
                  categories: Optional[Sequence[str]] = None) -> list[Hit]:
    """Catalog items most similar to a catalog item, itself excluded; an unknown id raises ``ArtifactError``."""
    try:
        return index.similar(item_id, k, categories)
    except KeyError as exc:
        raise ArtifactError(f"{item_id!r} is not an item of the {index.catalog} index") from exc


def saved_evaluation() -> Optional[dict[str, Any]]:
    """The last ``python -m fashion evaluate`` results (``{method: metrics}``), or None when there are none."""
    path = evaluation_path()
    if not path.is_file():
        return None
    try:
        return read_json(path)["results"]
    except (ArtifactError, KeyError):
        log.warning("ignoring unreadable %s", path)
        return None
