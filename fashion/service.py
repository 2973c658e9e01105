"""What the Fashion tab and the CLI call: catalogs, built indexes, queries by upload or by catalog item.

Why a separate room: the UI should not need to know where an index lives, how it is keyed or how an upload is
brought to the catalog's look; those are the package's business, and this module is the one door to them.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, read_json
from core.catalog import service as own_catalogs_service
from core.catalog import store as own_catalogs
from core.contract import (Answer, Handles, ModelCard, Person, Request, Source, built_date, committed, count,
                           file_version, metrics_of, read_results, source_of)
from core.catalog.sources import CatalogError
from core.catalog.store import BuiltCatalog
from core.images import ImageSource
from core.jobs import JobQueue
from core.jobs import worker as job_worker  # called through its module: tests replace worker.ensure_worker
from fashion import feedback  # noqa: F401 - the tab's likes and re-ranking, reached through this service
from core.progress import ProgressFn
from core.search import Hit
from fashion.data import CATALOGS, Catalog, catalog_key, load_catalog
from fashion.evaluate import evaluation_path
from fashion.jobs import HANDLER, KIND
from fashion.guard import GarmentCheck, garment_check  # cached per photo: reruns run no second CNN pass
from fashion.model import FashionIndex, index_stem, to_fashion_mnist_style
from fashion.train import build_index, open_index

log = logging.getLogger(__name__)

__all__ = ["BuiltCatalog", "Catalog", "CatalogError", "catalog_key", "feedback", "FashionIndex", "Hit", "build",
           "build_jobs", "catalog", "catalog_look", "catalog_names", "GarmentCheck", "garment_check", "garment_warning", "queue_build",
           "index_version", "is_built_catalog", "is_own", "is_shipped", "open_index", "shipped_build_jobs",
           "own_catalog", "own_version",
           "saved_evaluation", "search_upload", "similar_items",
           # the contract every tab's service offers (core.contract)
           "sources", "open", "query", "record_feedback", "explain", "card"]


#: Catalogs this tab searches with its own index and head (Fashion-MNIST: 28 px grey, 96 px encoding and a
#: projection trained on its labels). Every other catalog, the shipped Tux Paint ones included, is an ordinary
#: catalog from the one catalog store (``core.catalog``), searched by its image vectors.
TAB_INDEXES = ("fashion-mnist",)


def _stored() -> list[dict[str, Any]]:
    """The catalog store's usable catalogs (their manifests, read once), shipped first."""
    listed = [m for m in own_catalogs.list_catalogs() if "error" not in m and m["name"] not in TAB_INDEXES]
    return sorted(listed, key=lambda m: not m.get("shipped", False))


def catalog_names() -> list[str]:
    """Every catalog the tab can search, each once: its own indexes, then the catalog store (shipped first)."""
    return list(TAB_INDEXES) + [m["name"] for m in _stored()]


def is_own(name: str) -> bool:
    """True for a catalog of the catalog store (``core.catalog``: shipped or built from someone's photos),
    searched by its image vectors; False for the tab's own Fashion-MNIST index."""
    return name not in TAB_INDEXES


#: Shipped catalogs that hold only clothes: an upload that does not look like a garment is warned about there
#: (people's own catalogs may hold anything, so they are never second-guessed).
GARMENT_CATALOGS = ("fashion-mnist", "tuxpaint-clothes")


def garment_warning(name: str, image: ImageSource) -> Optional[str]:
    """The warning to show above catalog ``name``'s results for ``image``, or None (a garment, or not a clothes
    catalog). Cached per photo, like ``garment_check``."""
    if name not in GARMENT_CATALOGS:
        return None
    check = garment_check(image)
    return None if check.is_garment else check.warning


def is_shipped(name: str) -> bool:
    """True for a catalog that ships with the app (Fashion-MNIST, the Tux Paint catalogs)."""
    return name in TAB_INDEXES or own_catalogs_service.is_shipped(name)


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


def index_version(name: str) -> Optional[float]:
    """The built index's version (its manifest's modification time: a cache key that changes on rebuild), or None
    if unbuilt."""
    return file_version(index_stem(catalog_key(name)).with_suffix(".json"))


def build(name: str, progress: Optional[ProgressFn] = None) -> FashionIndex:
    """Build (or reuse a fresh) index for a catalog with the default encoder settings."""
    index, _built = build_index(name, progress=progress)
    return index


def queue_build(name: str, *, permission: tuple[bool, str], owner: Optional[str] = None, queue: Any = None) -> int:
    """Queue the index build of a shipped catalog for a worker process (``fashion.jobs``); returns the job id.

    A build of the same catalog already queued or running is returned instead of a second one.
    """
    allowed, why = permission
    if not allowed:
        raise CatalogError(why or "Only administrators may build indexes.")
    if name not in TAB_INDEXES:
        if name in CATALOGS:  # a shipped catalog of the catalog store: its ordinary build
            return own_catalogs_service.queue_shipped(name, permission=permission, owner=owner, queue=queue)
        raise CatalogError(f"{name!r} is not a shipped catalog (those are {', '.join(CATALOGS)}).")
    queue = queue or JobQueue()
    waiting = queue.waiting(KIND, catalog=name)
    if waiting is not None:
        return waiting.id
    job = queue.submit(KIND, HANDLER, f"Build the {name} index", {"catalog": name}, owner=owner)
    job_worker.ensure_worker(queue.url)
    return job


def shipped_build_jobs(name: str, limit: int = 5, queue: Any = None) -> list:
    """The latest ordinary catalog builds of shipped catalog ``name``, newest first (every session sees them)."""
    return [j for j in own_catalogs_service.jobs(limit=50, queue=queue) if j.params.get("name") == name][:limit]


def build_jobs(limit: int = 5, queue: Any = None) -> list:
    """The latest index builds, newest first (every session sees the same list)."""
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


# ----------------------------------------------------------------------------------------------
# the contract every tab's service offers (core.contract)

#: Opened indexes, one per (catalog, index version), shared by the app's sessions and the CLI.
_HANDLES = Handles(keep=len(TAB_INDEXES) + 2)

#: What the tab's search cannot do, whatever its measured quality.
LIMITS = (
    "Similar means similar-looking (shape, texture, colour at the catalog's resolution), not the same product.",
    "Fashion-MNIST is 28 px grey: colour, print and fine detail of an upload are lost before the search.",
    "A photo that is not of a garment still gets the nearest garments; the tab warns but cannot refuse.",
)


def sources() -> list[Source]:
    """The tab's own Fashion-MNIST index (its version, None while unbuilt), then every catalog of the catalog
    store, each once: the shipped Tux Paint catalogs (``shipped catalog``; version None while unbuilt) and
    people's own (``own catalog``)."""
    shipped = [source_of(n, "catalog", index_stem(catalog_key(n)).with_suffix(".json")) for n in TAB_INDEXES]
    stored = [source_of(m["name"], "shipped catalog" if m.get("shipped") else "own catalog", None,
                        version=own_version(m["name"])) for m in _stored()]
    built = {s.name for s in stored}
    unbuilt = [Source(n, "shipped catalog") for n in CATALOGS if n not in TAB_INDEXES and n not in built]
    return (shipped + [s for s in stored if s.kind == "shipped catalog"] + unbuilt
            + [s for s in stored if s.kind == "own catalog"])


def open(name: str) -> "FashionIndex | BuiltCatalog":  # noqa: A001 - the contract's name for "give me one"
    """A shipped catalog's index or an own catalog, opened once per version; ``ArtifactError`` /
    ``CatalogError`` when it is not built or cannot be used."""
    if is_own(name):
        return own_catalog(name)
    version = index_version(name)
    if version is None:
        raise ArtifactError(f"The {name} index has not been built yet (`python -m fashion index --catalog {name}`).")
    return _HANDLES.get(str(index_stem(catalog_key(name))), version, lambda: open_index(name))


def query(handle: Any, request: Request, person: Optional[Person] = None) -> Answer:
    """Items like ``request.image`` (an upload) or ``request.item`` (a catalog item), in ``request.categories``.

    With a ``person`` who liked or disliked items of this catalog the results are re-ranked by that feedback
    (and the note says so); dislikes are never shown. Without feedback it is the plain nearest-neighbour search.
    """
    categories = list(request.categories) or None
    if isinstance(handle, BuiltCatalog):
        hits = (handle.search(image=request.image, k=request.k, categories=categories) if request.image is not None
                else handle.similar_items(str(request.item), request.k, categories))
        return Answer(list(hits))
    if request.image is None and not request.item:
        raise ValueError("Upload a photo or pick a catalog item.")
    if person is not None and person.profile:
        hits, note = feedback.search_with_feedback(person.store, person.profile, handle, image=request.image,
                                                   item_id=None if request.image is not None else request.item,
                                                   k=request.k, categories=categories)
        return Answer(hits, note)
    if request.image is not None:
        return Answer(search_upload(handle, request.image, request.k, categories))
    return Answer(similar_items(handle, str(request.item), request.k, categories))


def record_feedback(person: Person, handle: Any, item: str, signal: str) -> int:
    """Store ``person``'s 👍 / 👎 / 💾 of one catalog item (the key names the catalog and the item)."""
    return feedback.record_feedback(person.store, str(person.profile), handle, item, signal)


def explain(handle: Any, hit: Any) -> str:
    """Why ``hit`` is a result: how alike it looks, in which features, and its category."""
    if getattr(hit, "reason", ""):
        return f"{hit.title}: {hit.reason} (score {hit.score:.2f})."
    label = hit.meta.get("label", "") if hasattr(hit, "meta") else ""
    if hit.score != hit.score:  # a saved item carries no score
        return f"Saved by you ({label})."
    enc = handle.encoder_config
    space = "a projection learned on the catalog's labels" if handle.projection is not None else "ImageNet features"
    return (f"Looks alike: cosine similarity {hit.score:.2f} to the query in {enc.backbone} {space}"
            + (f"; a {label}." if label else "."))


def card(name: str) -> ModelCard:
    """The catalog's model card: encoder and projection from the index manifest, quality from the last
    ``python -m fashion evaluate`` (the artifact's own, else the committed ``bench/results/fashion_evaluate.json``)."""
    if is_own(name):
        version = own_version(name)
        shipped = is_shipped(name)
        unmeasured = ("This shipped catalog has no measured search quality here." if shipped
                      else "Own catalogs have no labelled queries, so their search is not measured.")
        data = (f"{name}: a catalog that ships with the app (Tux Paint stamps)" if shipped
                else f"{name}: photos someone added on the Data page")
        return ModelCard(name, "EfficientNet-Lite0 image vectors (ImageNet weights), exact cosine search",
                         data, version, built_date(version), (), "", limits=LIMITS[:1] + (unmeasured,))
    path = index_stem(catalog_key(name)).with_suffix(".json")
    manifest = read_results(path) or {}
    enc = manifest.get("encoder", {})
    model = (f"{enc.get('backbone', 'efficientnet_lite0')} ({enc.get('input_size', '?')} px, global "
             f"{enc.get('pooling', 'max')} pool)"
             + (", projection learned on the train labels" if manifest.get("projection") else "")
             + ", exact cosine nearest neighbours")
    data = f"{name}: {count(manifest.get('items'))} items" if manifest else f"{name} (index not built)"
    wanted = [("model", "precision@10"), ("model", "map@10"), ("pixel_knn", "precision@10"),
              ("photo:catalog_look", "precision@10")]
    results_path, metrics = "", ()
    for path_, results in _evaluations(name):
        metrics, results_path = metrics_of(results["results"], wanted), str(path_)
        if metrics:
            break
    version = file_version(path)
    return ModelCard(name, model, data, version, built_date(version), metrics, results_path if metrics else "",
                     protocol=("each Fashion-MNIST test image queries the 60,000 train images; relevant = same class; "
                               "photo:* = colour photos as queries") if metrics else "",
                     limits=LIMITS, command="python -m fashion evaluate --json")


def _evaluations(name: str) -> "list[tuple[Any, dict[str, Any]]]":
    """The evaluations that measured ``name`` (only Fashion-MNIST is measured), the artifact's before the committed."""
    if name != "fashion-mnist":
        return []
    found = [(path, read_results(path)) for path in (evaluation_path(), committed("fashion_evaluate"))]
    return [(path, data) for path, data in found if data and "results" in data]
