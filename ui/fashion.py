"""Fashion tab: upload a garment photo (or pick a catalog item) → visually similar catalog items.

Widgets only; the recommender is ``fashion`` (index building, query preprocessing, search). Indexes are
cached per file version; results per (photo hash or item, options), so reruns with the same query are free.
"""

from __future__ import annotations

import random
from typing import NamedTuple, Optional

import streamlit as st
from PIL import Image

from core.artifacts import ArtifactError
from core.contract import Person, Request
from core.datasets import DataUnavailable
from core.evaluation import chart_frame
from core.feedback.catalog import catalog_key as feedback_key
from core.images import ImageError, letterbox
from core.jobs import JobError
from core.search import Hit, describe
from fashion import service
from fashion.service import Catalog, CatalogError, FashionIndex
from fashion.service import feedback as fashion_feedback
from ui import catalog_view, model_card, result_grid
from ui import profile as profiles
from ui.common import (PERSIST, RESULT_ENTRIES, RESULT_TTL, image_digest, image_upload, show_error,
                       Busy, heavy_slot, md_text)
from ui.jobs_view import show
from ui.result_grid import Cell

CATALOG_LABELS = {
    "fashion-mnist": "Fashion-MNIST — 70,000 Zalando product photos (28 px, grey, 10 classes)",
    "tuxpaint-clothes": "Tux Paint clothes — 48 colour clothing images (shipped)",
    "tuxpaint": "Tux Paint stamps — every clip-art stamp (shipped)",
}


@st.cache_resource(show_spinner="Loading the catalog…")
def _catalog(name: str) -> Catalog:
    return service.catalog(name)


def _index(name: str) -> FashionIndex:
    """The catalog's index, opened once per index version by the service (a rebuilt index is picked up)."""
    with st.spinner("Loading the index…"):
        return service.open(name)


Feedback = tuple[tuple[str, ...], tuple[str, ...]]


@st.cache_data(show_spinner="Searching…", max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _search(name: str, version: float, digest: str, top_n: int, categories: tuple[str, ...], feedback: Feedback,
            _image: Image.Image, _profile: str):
    """Catalog items like an uploaded photo (by content hash), re-ranked by the profile's likes and dislikes
    (``feedback`` is part of the key: a click changes the ranking at once, nothing else recomputes)."""
    answer = service.query(_index(name), Request(image=_image, k=top_n, categories=categories),
                           Person(profiles.store(), _profile) if _profile else None)
    return answer.hits, answer.note


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _similar(name: str, version: float, item: str, top_n: int, categories: tuple[str, ...], feedback: Feedback,
             _profile: str):
    answer = service.query(_index(name), Request(item=item, k=top_n, categories=categories),
                           Person(profiles.store(), _profile) if _profile else None)
    return answer.hits, answer.note


def _feedback(index: FashionIndex) -> Feedback:
    """The active profile's (liked, disliked) ids in this catalog; empty for a profile with no feedback."""
    profile = profiles.known()
    if profile is None:
        return (), ()
    liked, disliked = fashion_feedback.profile_feedback(profiles.store(), profile, index)
    return tuple(liked), tuple(disliked)


def _saved(index: FashionIndex) -> list[str]:
    profile = profiles.known()
    prefix = feedback_key(index.catalog, "")
    items = profiles.store().saved(profile, fashion_feedback.TAB) if profile else []
    return [i[len(prefix):] for i in items if i.startswith(prefix)]


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _catalog_look(digest: str, _image: Image.Image) -> Image.Image:
    """The upload as the 28 px grey catalog sees it, enlarged for display."""
    return Image.fromarray(service.catalog_look(_image)).resize((112, 112), Image.Resampling.NEAREST)


def _display(catalog: Catalog, row: int, size: int = 112) -> Image.Image:
    img = catalog.image(row)
    if catalog.grey28:  # 28 px: enlarge with hard pixels rather than blur
        return img.resize((size, size), Image.Resampling.NEAREST)
    return letterbox(img, size * 2)  # square tiles keep the grid rows even


def _results_grid(catalog: Catalog, hits, index: Optional[FashionIndex] = None, feedback: Feedback = ((), ()),
                  saved: tuple[str, ...] = (), section: str = "r") -> None:
    liked, disliked = set(feedback[0]), set(feedback[1])
    cells = []
    for hit in hits:
        row = catalog.row(hit.id)
        scored = hit.score == hit.score  # saved items carry no score (NaN)
        cells.append(Cell(id=hit.id, image=_display(catalog, row) if row is not None else None, title=hit.meta["label"],
                          subtitle=f"similarity {hit.score:.3f}" if scored else "", lines=(hit.meta["title"],)))
    under = None
    if index is not None:
        def under(cell: Cell) -> None:
            _item_buttons(index, cell.id, liked, disliked, cell.id in saved, f"ffb_{section}")
    result_grid.show(cells, under=under)


def _item_buttons(index: FashionIndex, item: str, liked: set[str], disliked: set[str], is_saved: bool,
                  key: str) -> None:
    """👍 / 👎 / 💾 under one result; each writes to the store in its click."""
    verdict = "like" if item in liked else "dislike" if item in disliked else None
    stored = feedback_key(index.catalog, item)
    profiles.item_buttons(f"{key}_{item}", verdict,
                          record=lambda db, p, sig: service.record_feedback(Person(db, p), index, item, sig),
                          undo=lambda db, p: db.undo(p, fashion_feedback.TAB, stored),
                          tab=fashion_feedback.TAB, stored=stored, is_saved=is_saved)


def _note(note: str) -> None:
    profiles.reranked_note(note, "item")


def _saved_panel(catalog: Catalog, index: FashionIndex, saved: list[str], feedback: Feedback) -> None:
    with st.expander(f"Your saved list ({len(saved)})"):
        if not saved:
            st.caption("Nothing saved yet: :material/bookmark_add: under a result keeps it here (under your profile).")
            return
        kept = [catalog.row(i) for i in saved]
        hits = [Hit(id=i, index=int(r), score=float("nan"), meta={"label": catalog.labels[r], "title": i})
                for i, r in zip(saved, kept) if r is not None]
        _results_grid(catalog, hits, index, feedback, tuple(saved), section="saved")


def _evaluation_panel() -> None:
    data = service.saved_evaluation()
    if data is None:
        st.caption("No evaluation yet: `python -m fashion evaluate` measures precision@10 against a pixel baseline.")
        return
    table = chart_frame(data, ("precision@1", "precision@10", "map@10", "ndcg@10", "queries"))
    st.markdown(
        "**How good is it?** Each Fashion-MNIST test image queries the 60,000 train images; precision@10 is the share "
        "of the 10 nearest that have the query's class. `model` = this tab's pipeline, `frozen` = ImageNet features "
        "without the learned projection, `pixel_knn` = raw-pixel baseline; `photo:*` = colour photos as queries."
    )
    st.bar_chart(table[["precision@10"]], horizontal=True, height=220)
    st.dataframe(table, width="stretch")


def _own_catalog(name: str) -> None:
    """A catalog of the catalog store (shipped, or built on the Data page): search it by photo through the
    shared catalog view."""
    version = service.own_version(name)
    if version is None and service.is_shipped(name):
        _offer_shipped_build(name)
        return
    if version is None:
        st.warning(f"The catalog {name} was just removed.")
        return
    try:
        catalog = service.own_catalog(name)
    except (CatalogError, ArtifactError) as exc:
        show_error(exc, "The catalog cannot be used")
        return
    model_card.show(service.card, name, key="fashion_card")
    catalog_view.render("fashion", catalog, version, words=False,
                        warn=lambda image: service.garment_warning(name, image))


def render() -> None:
    st.subheader("Similar garments")
    st.write(
        "Upload a garment photo, or pick a catalog item, and get the most visually similar catalog items."
    )
    sources = service.sources()
    names = [s.name for s in sources]
    shipped = {s.name for s in sources if s.kind == "shipped catalog"}
    choice = st.selectbox("Catalog", names, format_func=lambda n: CATALOG_LABELS.get(
        n, f"{n} (shipped)" if n in shipped else f"{n} (your catalog)"), key="fashion_catalog", persist_state=PERSIST)
    if service.is_own(choice):
        _own_catalog(choice)
        return
    try:
        catalog = _catalog(choice)
    except DataUnavailable as exc:
        show_error(exc, "The catalog is not available")
        return

    version = service.index_version(choice)
    if version is None:
        _offer_build(choice)
        return
    try:
        index = _index(choice)
    except ArtifactError as exc:
        show_error(exc, "The index cannot be used")
        return

    _pipeline_caption(index)
    model_card.show(service.card, choice, key="fashion_card")
    left, right = st.columns([1, 1])
    with left:
        top_n = st.slider("How many results", 5, 50, 10, step=5, key="fashion_top", persist_state=PERSIST)
    with right:
        categories = st.multiselect("Only these categories", index.categories, key="fashion_categories",
                                    persist_state=PERSIST)

    profiles.show_write_error()
    feedback = _feedback(index)
    saved = _saved(index)
    query = _Query(choice, version, catalog, index, top_n, tuple(categories), feedback, tuple(saved))
    upload_tab, pick_tab = st.tabs(["Upload a photo", "Pick a catalog item"])
    with upload_tab:
        _upload_tab(query)
    with pick_tab:
        _pick_tab(query)

    _saved_panel(catalog, index, saved, feedback)
    with st.expander("Evaluation", expanded=False):
        _evaluation_panel()


class _Query(NamedTuple):
    """What both query tabs search with: the catalog and its index, the result count, the category filter and
    the listener's feedback and saved items."""

    choice: str
    version: float
    catalog: Catalog
    index: FashionIndex
    top_n: int
    categories: tuple[str, ...]
    feedback: Feedback
    saved: tuple[str, ...]


def _offer_build(choice: str) -> None:
    """The catalog's index is not built yet: say how, and offer to build it in the background."""
    st.info(f"The {choice} index has not been built yet (`python -m fashion index --catalog {choice}`).")
    if st.button("Build it now", key="fashion_build"):
        try:
            service.queue_build(choice, permission=profiles.heavy_permission(), owner=profiles.identity().key or None)
        except (CatalogError, JobError) as exc:
            st.error(md_text(str(exc)))
            return
    show(lambda: [j for j in service.build_jobs() if j.params.get("catalog") == choice], "fashion_build",
         lambda r: f"{r.get('items', 0):,} items indexed in {r.get('seconds', 0):.0f} s", title="Index build")


def _offer_shipped_build(name: str) -> None:
    """A shipped catalog not built yet: say how, and offer its ordinary catalog build in the background."""
    st.info(f"The shipped catalog {name} has not been built yet (`python -m core catalog add {name} shipped:{name}`).")
    if st.button("Build it now", key="fashion_build_shipped"):
        try:
            service.queue_build(name, permission=profiles.heavy_permission(), owner=profiles.identity().key or None)
        except (CatalogError, JobError) as exc:
            st.error(md_text(str(exc)))
            return
    show(lambda: service.shipped_build_jobs(name), "fashion_build_shipped",
         lambda r: f"{r.get('items', 0):,} images built in {r.get('seconds', 0):.0f} s", title="Catalog build")


def _pipeline_caption(index: FashionIndex) -> None:
    """How this index turns a photo into results, in one caption, and how it searches."""
    enc = index.encoder_config
    st.caption(
        f"Pipeline: {enc.backbone} (ImageNet weights, {enc.input_size or 224} px) → global {enc.pooling} pool → "
        + ("projection learned on the catalog's train labels → " if index.projection is not None else "L2 norm → ")
        + f"exact cosine nearest neighbours among {len(index):,} items."
        + (" Uploads are first brought to the catalog's look: grey, background removed, cropped, 28 px." if index.grey28 else "")
    )
    st.caption(describe(index.search_info))


def _upload_tab(q: _Query) -> None:
    """Search by an uploaded photo: the photo (and, for a grey 28 px catalog, how the catalog sees it), a warning
    when it does not look like a garment, then the results."""
    image = image_upload("Garment photo (JPEG, PNG, WebP)", key="fashion_upload")
    if image is None:
        return
    q1, q2 = st.columns([1, 4])
    with q1:
        st.image(image, caption="your photo", width="stretch")
        if q.index.grey28:
            st.image(_catalog_look(image_digest(image), image), caption="as the catalog sees it",
                     width="stretch")
    with q2:
        try:
            with heavy_slot():
                if warning := service.garment_warning(q.choice, image):
                    st.warning(warning)
                hits, note = _search(q.choice, q.version, image_digest(image), q.top_n, q.categories, q.feedback,
                                     image, profiles.current())
        except Busy as exc:
            st.info(str(exc))
            hits, note = [], ""
        except ImageError as exc:
            show_error(exc, "Could not use that image")
            hits, note = [], ""
        _note(note)
        if hits:
            _results_grid(q.catalog, hits, q.index, q.feedback, q.saved, section="up")
        elif q.categories:
            st.warning("No catalog item in the chosen categories.")


def _pick_tab(q: _Query) -> None:
    """Search by a catalog item, typed by id or drawn at random."""
    catalog = q.catalog
    if "fashion_item" not in st.session_state or st.session_state.get("fashion_item_catalog") != q.choice:
        st.session_state["fashion_item"] = catalog.ids[0]
        st.session_state["fashion_item_catalog"] = q.choice
    c1, c2 = st.columns([3, 1])
    with c2:
        if st.button("Random item", key="fashion_random"):
            st.session_state["fashion_item"] = random.choice(catalog.ids)
    with c1:
        item = st.text_input("Catalog item id", key="fashion_item",
                             persist_state=PERSIST, help="e.g. test-00042 for Fashion-MNIST")
    row = catalog.row(item)
    if row is None:
        st.warning(f"{md_text(repr(item))} is not an item of this catalog.")
        return
    q1, q2 = st.columns([1, 4])
    with q1:
        st.image(_display(catalog, row), caption=md_text(catalog.labels[row]), width="stretch")
    with q2:
        try:
            hits, note = _similar(q.choice, q.version, item, q.top_n, q.categories, q.feedback, profiles.current())
            _note(note)
            _results_grid(catalog, hits, q.index, q.feedback, q.saved, section="item")
        except ArtifactError as exc:
            show_error(exc, "Item not in the index (rebuild it)")
