"""The public face of the package for the CLI and the UI: load an index with its encoders, answer queries.

Why a separate object: the encoders an index needs are named in its manifest (text model, image backbone and
pooling); loading them from there guarantees query vectors live in the same spaces as the stored ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, read_json
from core.catalog import store as own_catalogs
from core.catalog.sources import CatalogError  # noqa: F401 - the Product search tab catches it from here
from core.catalog.store import BuiltCatalog
from core.contract import (Answer, Handles, ModelCard, Person, Request, Source, built_date, committed,
                           file_version, metrics_of, read_results, source_of, without)
from core.encoders import get_image_encoder
from core.images import ImageError, ImageSource, load_image
from core.metrics import RESULTS_DIR
from core.text import get_text_encoder
from multimodal import feedback  # noqa: F401 - the tab's likes and re-ranking, reached through this service
from core.progress import ProgressFn
from multimodal.data import load_product_image
from multimodal.train import build_catalog_head
from multimodal.model import DEFAULT_ALPHA, MultimodalIndex, Result, default_stem, index_dir
from core.jobs import JobQueue
from core.jobs import worker as job_worker  # called through its module: tests replace worker.ensure_worker
from multimodal.jobs import HANDLER, KIND, SHIPPED

log = logging.getLogger(__name__)


def own_catalog_names() -> list[str]:
    """Catalogs people built on the Data page (``core.catalog``): searched by words, photo or both."""
    return own_catalogs.catalog_names()


def own_version(name: str) -> Optional[float]:
    """The built catalog's version (manifest mtime) or None when it is gone: the cache key of its results."""
    return own_catalogs.version(name)


def own_catalog(name: str) -> BuiltCatalog:
    """A built catalog, opened once per build and shared by every session; ``CatalogError`` when absent."""
    return own_catalogs.open_catalog(name)


class SearchService:
    """An index plus the text and image encoders that made it."""

    def __init__(self, index: MultimodalIndex) -> None:
        self.index = index
        text_spec = index.manifest.get("text_encoder", {})
        image_spec = index.manifest.get("image_encoder", {})
        allow = bool(index.manifest.get("allow_download", False))  # a hub model the index was built with
        self.text_encoder = get_text_encoder(str(text_spec.get("name", "all-MiniLM-L6-v2")), allow_download=allow)
        self.image_encoder = get_image_encoder(
            str(image_spec.get("backbone", "efficientnet_lite0")), pooling=str(image_spec.get("pooling", "max")),
            input_size=image_spec.get("input_size"), allow_download=allow,
        )
        if image_spec and self.image_encoder.spec != image_spec:
            raise ArtifactError(
                f"The index was built with image encoder {image_spec}, but this machine's is "
                f"{self.image_encoder.spec}. Rebuild it with `python -m multimodal index --force`."
            )

    #: The text weight used when a query gives both words and a photo and the caller names none.
    alpha: float = DEFAULT_ALPHA

    @classmethod
    def load(cls, name: str = "tuxpaint") -> "SearchService":
        service = cls(MultimodalIndex.load(default_stem(name)))
        service.alpha = chosen_alpha(name)
        return service

    # -- encoders ----------------------------------------------------------------------------------
    def encode_text(self, text: str) -> np.ndarray:
        text = (text or "").strip()
        if not text:
            raise ValueError("The search text is empty.")
        if len(text) > 1000:
            raise ValueError("The search text is longer than 1,000 characters; shorten it.")
        return self.text_encoder.encode([text])[0]

    def encode_image(self, image: ImageSource) -> np.ndarray:
        """Decode with the shared loader (clear ``ImageError`` on bad files), then embed."""
        img = load_image(image) if not isinstance(image, (str, Path)) else _load_path(image)
        return self.image_encoder.encode([img])[0]

    # -- queries ----------------------------------------------------------------------------------
    def search(
        self,
        *,
        text: Optional[str] = None,
        image: Optional[ImageSource] = None,
        alpha: float = DEFAULT_ALPHA,
        k: int = 10,
        categories: Optional[Sequence[str]] = None,
        picture_weight: float = 0.0,
    ) -> list[Result]:
        """Text only, image only, or both (fused at ``alpha``, the text weight)."""
        if (text is None or not text.strip()) and image is None:
            raise ValueError("Type some words, upload a photo, or both.")
        self._check_categories(categories)
        text_vec = self.encode_text(text) if text and text.strip() else None
        image_vec = self.encode_image(image) if image is not None else None
        return self.index.search(text_vec=text_vec, image_vec=image_vec, alpha=alpha, k=k, categories=categories,
                                 picture_weight=picture_weight)

    def more_like_this(self, item_id: str, *, alpha: float = DEFAULT_ALPHA, k: int = 10,
                       categories: Optional[Sequence[str]] = None) -> list[Result]:
        self._check_categories(categories)
        return self.index.more_like_this(item_id, alpha=alpha, k=k, categories=categories)

    def _check_categories(self, categories: Optional[Sequence[str]]) -> None:
        unknown = sorted(set(categories or ()) - set(self.index.categories))
        if unknown:
            raise ValueError(f"Unknown category {', '.join(unknown)}; see the catalog's categories.")

    # -- what the UI explains -----------------------------------------------------------------------
    @property
    def categories(self) -> list[str]:
        return self.index.categories_sorted()

    def item(self, item_id: str) -> dict[str, Any]:
        row = self.index.position(item_id)
        return {"id": item_id, "title": self.index.titles[row], "category": self.index.categories[row],
                "image_path": self.index.image_paths[row], "text": self.index.texts[row]}


def _load_path(path: str | Path):
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"No such image file: {p}")
    return load_product_image(p)


def chosen_alpha(name: str = "tuxpaint") -> float:
    """The fusion weight ``python -m multimodal evaluate`` chose on validation for this catalog.

    Read from the index's own evaluation report, else from the committed result of the default protocol
    (``bench/results/multimodal_evaluate.json``) when it was made for this catalog; ``DEFAULT_ALPHA`` (an even
    split) only when the catalog was never evaluated. The app's default is thereby the evaluated one.
    """
    report = evaluation_report(name)
    alpha = (report or {}).get("details", {}).get("fusion", {}).get("alpha")
    if alpha is None:
        path = RESULTS_DIR / "multimodal_evaluate.json"
        try:
            committed = read_json(path) if path.is_file() else {}
        except ArtifactError:
            committed = {}
        if committed.get("catalog") == name:
            alpha = committed.get("fusion", {}).get("alpha")
    if alpha is None:
        log.info("no evaluation of %s yet: fusion weight %.2f", name, DEFAULT_ALPHA)
        return DEFAULT_ALPHA
    return float(alpha)


def evaluation_report(name: str = "tuxpaint") -> Optional[dict[str, Any]]:
    """The last saved ``python -m multimodal evaluate`` report for this index, or None."""
    path = index_dir() / f"{name}-evaluation.json"
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ArtifactError:
        return None


# ----------------------------------------------------------------------------------------------
# the contract every tab's service offers (core.contract)

#: Loaded indexes with their encoders, one per (index, version), shared by the app's sessions and the CLI.
_HANDLES = Handles(keep=2)

#: Files beside an index that are not indexes themselves.
_NOT_INDEXES = ("-projection", "-evalcache", "-evaluation")

LIMITS = (
    "The shipped catalog is Tux Paint clip art standing in for products: no real shop catalog ships offline.",
    "Relevance was judged as 'same category', so a right-category but wrong-looking result counts as a hit.",
    "Words match captions and categories; brand names, sizes and prices are not understood.",
)


def queue_build(name: str, *, permission: tuple[bool, str], owner: Optional[str] = None, queue: Any = None) -> int:
    """Queue the shipped index's build for a worker process (``multimodal.jobs``); returns the job id.

    A build already queued or running is returned instead of a second one: ten people clicking build once.
    """
    allowed, why = permission
    if not allowed:
        raise CatalogError(why or "Only administrators may build indexes.")
    if name != SHIPPED:
        raise CatalogError(f"{name!r} is not the shipped index ({SHIPPED}); add your own catalog on the Data tab.")
    queue = queue or JobQueue()
    waiting = queue.waiting(KIND)
    if waiting is not None:
        return waiting.id
    job = queue.submit(KIND, HANDLER, f"Build the {name} product index", {"catalog": name}, owner=owner)
    job_worker.ensure_worker(queue.url)
    return job


def build_jobs(limit: int = 5, queue: Any = None) -> list:
    """The latest product-index builds, newest first (every session sees the same list)."""
    return [j for j in (queue or JobQueue()).list(limit=50) if j.kind == KIND][:limit]


def index_names() -> list[str]:
    """Built product indexes (a manifest with its arrays beside it), the shipped Tux Paint one first."""
    folder = index_dir()
    if not folder.is_dir():
        return []
    names = [m.stem for m in sorted(folder.glob("*.json"))
             if not m.stem.endswith(_NOT_INDEXES) and "-evaluation-seed" not in m.stem
             and (m.with_suffix(".npz").is_file() or m.with_suffix(".safetensors").is_file())]
    return sorted(names, key=lambda n: (n != "tuxpaint", n))


def index_version(name: str) -> Optional[float]:
    """The built index's version (its manifest's modification time), or None when it is not built."""
    return file_version(index_dir() / f"{name}.json")


def sources() -> list[Source]:
    """Every catalog in the one catalog store, each once (shipped ones first), then product indexes built from
    a path with ``python -m multimodal index --catalog-path`` that are no catalog.

    ``kind``: ``index`` where this tab has a tuned head on the catalog (the shipped Tux Paint catalog: fusion
    weight, image→text projection and feedback re-ranker chosen on its data) or a path-built index;
    ``shipped catalog`` / ``own catalog`` for catalogs searched by the shared catalog search.
    """
    heads = index_names()
    listed = [m for m in own_catalogs.list_catalogs() if "error" not in m]
    listed.sort(key=lambda m: (not m.get("shipped", False), m["name"] not in heads, m["name"] != SHIPPED))
    out = []
    for manifest in listed:
        name = manifest["name"]
        if name in heads:
            out.append(source_of(name, "index", index_dir() / f"{name}.json"))
        else:
            kind = "shipped catalog" if manifest.get("shipped") else "own catalog"
            out.append(source_of(name, kind, None, version=own_version(name)))
    named = {s.name for s in out}
    return out + [source_of(n, "index", index_dir() / f"{n}.json") for n in heads if n not in named]


def build_head(name: str = SHIPPED, *, force: bool = False, projection: bool = True, augment: bool = False,
               progress: Optional[ProgressFn] = None) -> tuple[Path, bool, dict[str, Any]]:
    """Build the shipped catalog ``name`` the ordinary way (``core.catalog``, skipped when fresh), then this tab's
    head on top of it (``multimodal.train.build_catalog_head``). Returns (index stem, whether the head was
    rebuilt, the catalog's build summary)."""
    if name != SHIPPED:
        raise CatalogError(f"Only the shipped {SHIPPED!r} catalog has a Product search head.")
    # the product kind the Tux Paint loader gave its products, kept so their data checksum does not change
    return build_catalog_head(name, kind=SHIPPED, force=force, projection=projection, augment=augment,
                              progress=progress)


def open(name: str) -> "SearchService | BuiltCatalog":  # noqa: A001 - the contract's name for "give me one"
    """A product index with its encoders, or an own catalog, loaded once per version and shared."""
    version = index_version(name)
    if version is None:
        if name in own_catalog_names():
            return own_catalog(name)
        raise ArtifactError(f"No product index {name!r}; build it with `python -m multimodal index`.")
    return _HANDLES.get(str(index_dir() / name), version, lambda: SearchService.load(name))


def query(handle: Any, request: Request, person: Optional[Person] = None) -> Answer:
    """Products for words (``request.text``), a photo (``request.image``) or both, or "more like"
    ``request.item``; ``request.options``: ``alpha`` (text weight) and ``picture_weight``.

    With a ``person`` who gave feedback in this catalog, a search is re-ranked by it; their dislikes are never
    shown, in a search or in "more like this".
    """
    alpha = float(request.options.get("alpha", getattr(handle, "alpha", DEFAULT_ALPHA)))
    categories = list(request.categories) or None
    text = (request.text or "").strip() or None
    if isinstance(handle, BuiltCatalog):
        hits = (handle.similar_items(request.item, request.k, categories) if request.item else
                handle.search(text=text, image=request.image, k=request.k, alpha=alpha, categories=categories))
        return Answer(list(hits))
    liked, disliked = ((), ())
    if person is not None and person.profile:
        liked, disliked = feedback.profile_feedback(person.store, person.profile, handle.index)
    if request.item:
        results = handle.more_like_this(request.item, alpha=alpha, k=request.k + len(disliked), categories=categories)
        return Answer(without(results, disliked, request.k, key=lambda r: r.id))
    if liked or disliked:
        results, note = feedback.search_with_feedback(person.store, person.profile, handle, text=text,
                                                      image=request.image, alpha=alpha, k=request.k,
                                                      categories=categories)
        return Answer(results, note)
    return Answer(handle.search(text=text, image=request.image, alpha=alpha, k=request.k, categories=categories,
                                picture_weight=float(request.options.get("picture_weight", 0.0))))


def record_feedback(person: Person, handle: Any, item: str, signal: str) -> int:
    """Store ``person``'s 👍 / 👎 / 💾 of one product of this index."""
    index = handle.index if isinstance(handle, SearchService) else handle
    return feedback.record_feedback(person.store, str(person.profile), index, item, signal)


def explain(handle: Any, hit: Any) -> str:
    """Why ``hit`` is a result: which part of the query it matched, and how well."""
    if getattr(hit, "reason", ""):
        return f"{hit.title}: {hit.reason} (score {hit.score:.2f})."
    if hit.text_score is not None and hit.image_score is not None:
        lead = "its words" if hit.text_score >= hit.image_score else "its picture"
        return (f"{hit.title} ({hit.category}) matched mostly by {lead}: text {hit.text_score:.2f}, "
                f"image {hit.image_score:.2f}, fused {hit.score:.2f}.")
    return f"{hit.title} ({hit.category}) scored {hit.score:.2f} against your query."


def card(name: str) -> ModelCard:
    """The index's model card: encoders from its manifest; quality from its own evaluation report, else the
    committed ``bench/results/multimodal_evaluate.json`` when that measured this catalog."""
    path = index_dir() / f"{name}.json"
    manifest = read_results(path) or {}
    text_enc = manifest.get("text_encoder", {}).get("name", "all-MiniLM-L6-v2")
    image_enc = manifest.get("image_encoder", {}).get("backbone", "efficientnet_lite0")
    catalog = manifest.get("catalog", {})
    model = (f"{text_enc} (text) + {image_enc} (image, ImageNet), fused at text weight {chosen_alpha(name):.2f}; "
             "a linear image→text projection lets words find pictures")
    data = (f"{catalog.get('source', name)}: {catalog.get('items', '?')} products"
            if manifest else f"{name} (index not built)")
    wanted = [("fused", "recall@10"), ("fused", "ndcg@10"), ("text:minilm", "recall@10"), ("image", "recall@10")]
    results_path, results, metrics = None, None, ()
    for results_path, results in _evaluations(name):
        metrics = metrics_of(results["methods"], wanted, results.get("intervals"))
        if metrics:
            break
    version = file_version(path)
    split = (results or {}).get("split", {})
    return ModelCard(name, model, data, version, built_date(version), metrics, str(results_path) if metrics else "",
                     protocol=(f"{split.get('test_products', '?')} held-out products query the rest; relevant = "
                               f"{split.get('relevance', 'same category')}") if metrics else "",
                     limits=LIMITS, command="python -m multimodal evaluate --json")


def _evaluations(name: str) -> "list[tuple[Path, dict[str, Any]]]":
    """The evaluations of this catalog, the index's own report before the committed result."""
    own = index_dir() / f"{name}-evaluation.json"
    found = [(path, read_results(path)) for path in (own, committed("multimodal_evaluate"))]
    return [(path, data) for path, data in found
            if data and "methods" in data and (path == own or data.get("catalog") == name)]
