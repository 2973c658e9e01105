"""Product search tab: search a catalog by words, by photo, or both, and browse "more like this".

Everything heavy (index, encoders) is loaded once per index version through ``st.cache_resource``; results are
cached on the query (words, photo hash, options) with ``st.cache_data``, so a rerun with the same query is free.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any, Optional

import streamlit as st

from core.artifacts import ArtifactError
from core.contract import Person, Request
from core.images import ImageError, thumbnail
from core.jobs import JobError
from multimodal import service as products
from multimodal.service import CatalogError, Result, evaluation_report, load_product_image, own_catalog, own_version
from multimodal.service import feedback as mm_feedback
from ui import catalog_view, model_card, result_grid
from ui import profile as profiles
from ui.common import (PERSIST, RESULT_ENTRIES, RESULT_TTL, Busy, heavy_slot, image_digest, image_upload, md_code, md_text,
                       show_error)
from ui.jobs_view import show
from ui.result_grid import Cell

log = logging.getLogger(__name__)

KEY = "mm"
COLUMNS = result_grid.COLUMNS
PICTURE_WEIGHT = 0.3


def _service(name: str):
    """The index with its encoders, loaded once per index version by the service (a rebuild reloads)."""
    with st.spinner("Loading the product index and encoders…"):
        return products.open(name)


Feedback = tuple[tuple[str, ...], tuple[str, ...]]


@st.cache_data(show_spinner="Searching…", max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _search(name: str, version: float, text: Optional[str], digest: Optional[str], alpha: float, k: int,
            categories: Optional[tuple[str, ...]], picture_weight: float, feedback: Feedback, _image: Any,
            _profile: str) -> tuple[list[Result], str]:
    """One query's results (words, photo by content hash, options, the profile's likes and dislikes):
    computed once, whichever session asks; a 👍 / 👎 changes ``feedback`` and so the ranking at once."""
    request = Request(text=text, image=_image, k=k, categories=categories or (),
                      options={"alpha": alpha, "picture_weight": picture_weight})
    answer = products.query(_service(name), request, Person(profiles.store(), _profile) if _profile else None)
    return answer.hits, answer.note


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _more_like_this(name: str, version: float, item: str, alpha: float, k: int,
                    categories: Optional[tuple[str, ...]], feedback: Feedback = ((), ()),
                    _profile: str = "") -> list[Result]:
    """Products like one product, minus the ones the profile disliked (the service never shows them again)."""
    request = Request(item=item, k=k, categories=categories or (), options={"alpha": alpha})
    return products.query(_service(name), request, Person(profiles.store(), _profile) if _profile else None).hits


def _feedback(service: Any) -> Feedback:
    profile = profiles.known()
    if profile is None:
        return (), ()
    liked, disliked = mm_feedback.profile_feedback(profiles.store(), profile, service.index)
    return tuple(liked), tuple(disliked)


def _saved(service: Any) -> list[str]:
    profile = profiles.known()
    prefix = mm_feedback.item_key(service.index, "")
    items = profiles.store().saved(profile, mm_feedback.TAB) if profile else []
    return [i[len(prefix):] for i in items if i.startswith(prefix) and i[len(prefix):] in service.index.ids]


#: What Streamlit accepts as SVG markup (it sends it to the browser as an image data URI, where no script runs).
SVG_MARKUP = re.compile(r"(^\s?(<\?xml[\s\S]*<svg\s)|^\s?<svg\s|^\s?<svg>\s)")


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(path: str) -> Optional[bytes | str]:
    """A catalog image for the grid, cached: a PNG thumbnail, or an SVG's own markup.

    Why SVGs go to the browser as they are: the browser draws a few KB of vectors for free, while rasterising
    one here costs about 0.1 CPU-s of the server per picture, most of a search's cost for ten results.
    Markup Streamlit would not recognise as SVG is rasterised as before.
    """
    if path.lower().endswith(".svg"):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        if SVG_MARKUP.search(text):
            return text
    try:
        img = thumbnail(load_product_image(path), 200)
    except (ImageError, OSError):
        return None
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _own_catalog(name: str) -> None:
    """A catalog of the catalog store without this tab's head (a shipped one, or one built on the Data page):
    words, photo or both, through the shared catalog view."""
    version = own_version(name)
    if version is None:
        st.warning(f"The catalog {name} was just removed.")
        return
    try:
        catalog = own_catalog(name)
    except (CatalogError, ArtifactError) as exc:
        show_error(exc, "The catalog cannot be used")
        return
    catalog_view.render("multimodal", catalog, version, words=True)


def _explain(name: str, service: Any) -> None:
    manifest = service.index.manifest
    catalog = manifest.get("catalog", {})
    with st.expander("What is this catalog, and how well does search work?", expanded=False):
        if catalog.get("kind") == "tuxpaint":
            st.markdown(
                f"**Catalog:** {len(service.index)} clip-art objects from Tux Paint's stamp collection (Debian "
                "`tuxpaint-stamps-default`, GPL-2): clothes, food, household goods, vehicles, animals, … each with "
                "a one-line caption and a category folder. It stands in for a product catalog; no real shop "
                "catalog ships offline. A user catalog (Kaggle fashion layout or any CSV + image folder) is indexed "
                "with `python -m multimodal index --catalog fashion|csv --catalog-path …`."
            )
        else:
            st.markdown(f"**Catalog:** {md_code(catalog.get('source', name))}, {len(service.index)} products.")
        st.markdown(
            "**How:** product text (" + ", ".join(catalog.get("text_fields", [])) + ") → all-MiniLM-L6-v2; "
            "product image → EfficientNet-Lite0 (ImageNet). Text-only queries compare with the text part, photos "
            "with the image part, both with `weight·cos_text + (1−weight)·cos_image`. A linear image→text "
            "projection (trained contrastively on the catalog's own image/caption pairs) lets words find "
            "products by their picture."
        )
        report = evaluation_report(name)
        if report is None:
            st.info("No evaluation yet: run `python -m multimodal evaluate` to measure this index.")
            return
        rows = [{"method": m, **{k: round(v, 3) for k, v in met.items() if k != "queries"},
                 "queries": met.get("queries")} for m, met in report["methods"].items()]
        st.markdown(
            "**Held-out evaluation** (20 % of products held out by group; relevant = same category; "
            "Recall@k = relevant in top k / min(k, relevant); see docs/multimodal.md):"
        )
        st.dataframe(rows, hide_index=True)
        alpha = report.get("details", {}).get("fusion", {}).get("alpha")
        if alpha is not None:
            st.caption(f"Fused uses weight {alpha} (chosen on a validation split of the training products). "
                       "`text:projection` searches products whose text is withheld, by picture only.")


def _set_like(item_id: Optional[str]) -> None:
    st.session_state[f"{KEY}_like"] = item_id


def _item_buttons(service: Any, item: str, feedback: Feedback, is_saved: bool, key: str) -> None:
    """👍 / 👎 / 💾 under one product; each writes to the store in its click."""
    index = service.index
    verdict = "like" if item in feedback[0] else "dislike" if item in feedback[1] else None
    stored = mm_feedback.item_key(index, item)
    profiles.item_buttons(f"{key}_{item}", verdict,
                          record=lambda db, p, sig: products.record_feedback(Person(db, p), service, item, sig),
                          undo=lambda db, p: db.undo(p, mm_feedback.TAB, stored),
                          tab=mm_feedback.TAB, stored=stored, is_saved=is_saved)


def _saved_panel(service: Any, saved: list[str], feedback: Feedback) -> None:
    with st.expander(f"Your saved list ({len(saved)})"):
        if not saved:
            st.caption("Nothing saved yet: :material/bookmark_add: under a product keeps it here (under your profile).")
            return
        items = [service.item(item_id) for item_id in saved]
        cells = [Cell(id=i, image=_thumb(item["image_path"]), title=item["title"], lines=(item["category"],))
                 for i, item in zip(saved, items)]
        result_grid.show(cells, under=lambda c: _item_buttons(service, c.id, feedback, True, f"{KEY}_fbsaved"),
                         columns=COLUMNS)


def _grid(results: list[Result], service: Any, feedback: Feedback = ((), ()), saved: tuple[str, ...] = ()) -> None:
    cells = []
    for r in results:
        scores = [f"score {r.score:.3f}"]
        if r.text_score is not None and r.image_score is not None:
            scores.append(f"text {r.text_score:.2f} · image {r.image_score:.2f}")
        cells.append(Cell(id=r.id, image=_thumb(r.image_path), title=r.title, lines=(r.category, *scores),
                          why=products.explain(service, r)))

    def under(cell: Cell) -> None:
        st.button("More like this", key=f"{KEY}_more_{cell.id}", on_click=_set_like, args=(cell.id,))
        _item_buttons(service, cell.id, feedback, cell.id in saved, f"{KEY}_fb")

    result_grid.show(cells, under=under, columns=COLUMNS, empty="No products match (try removing the category filter).")


def _build_button(name: str) -> None:
    """No usable index: offer to build the shipped one in the background (never in this page's thread)."""
    if st.button("Build the Tux Paint index now (a few minutes, in the background)", key=f"{KEY}_build"):
        try:
            products.queue_build(name, permission=profiles.heavy_permission(), owner=profiles.identity().key or None)
        except (CatalogError, JobError) as exc:
            st.error(md_text(str(exc)))
            return
    show(lambda: products.build_jobs(), f"{KEY}_build_jobs",
         lambda r: f"{r.get('items', 0):,} products indexed in {r.get('seconds', 0):.0f} s", title="Index build")


def _pick_catalog() -> Optional[str]:
    """The built index to search (the service's sources), or None when there is none or an own catalog was
    chosen (drawn here by the shared catalog view)."""
    sources = products.sources()
    names = [s.name for s in sources if s.kind == "index"]
    own = [s.name for s in sources if s.kind in ("own catalog", "shipped catalog")]
    shipped = {s.name for s in sources if s.kind == "shipped catalog"}
    if not sources:
        st.warning("No product index yet. Build it with `python -m multimodal index` (what `make run` does), "
                   "or add your own catalog on the Data tab.")
        _build_button("tuxpaint")
        return None
    name = names[0] if len(sources) == 1 and not own else st.selectbox(
        "Catalog", names + own, key=f"{KEY}_catalog", persist_state=PERSIST,
        format_func=lambda n: f"{n} (shipped)" if n in shipped else f"{n} (your catalog)" if n in own else n)
    if name not in names:
        _own_catalog(name)
        return None
    if name in products.own_catalog_names() and st.radio(
            "Search with", ["the tuned product index", "the catalog search (words seen in every picture)"],
            key=f"{KEY}_head_{name}", horizontal=True, persist_state=PERSIST) != "the tuned product index":
        _own_catalog(name)  # the shipped catalog itself, as any catalog is searched: words, thumbnails, duplicates
        return None
    return name


def render() -> None:
    """The "Product search" tab."""
    st.subheader("Multimodal product search")
    st.caption("Search by words, by a photo, or both. Each result offers “more like this”.")
    name = _pick_catalog()
    if name is None:
        return
    try:
        version = products.index_version(name)
        service = _service(name)
    except (ArtifactError, OSError, RuntimeError) as exc:
        show_error(exc, "The product index cannot be used")
        _build_button(name)
        return
    _explain(name, service)
    model_card.show(products.card, name, key=f"{KEY}_card")

    left, right = st.columns([3, 2])
    with left:
        text = st.text_input("Search words", key=f"{KEY}_text",
                             persist_state=PERSIST, placeholder="e.g. red fruit, winter hat, fire engine",
                             max_chars=300, on_change=_set_like, args=(None,))  # new words end "more like this"
        image = image_upload("…or a photo of a product", key=f"{KEY}_image")
    with right:
        alpha = st.slider("Weight of words vs. photo (used when you give both)", 0.0, 1.0, float(service.alpha), 0.05,
                          key=f"{KEY}_alpha", persist_state=PERSIST, help="1 = words only, 0 = photo only")
        categories = st.multiselect("Categories", service.categories, key=f"{KEY}_cats", persist_state=PERSIST,
                                    placeholder="All categories")
        top = st.slider("Results", 5, 30, 10, 5, key=f"{KEY}_top", persist_state=PERSIST)
        use_pictures = st.checkbox("Words also match pictures (learned projection)", value=False,
                                   key=f"{KEY}_pictures", persist_state=PERSIST,
                                   disabled=service.index.projection is None,
                                   help="Mixes in how well each product's *image* matches your words, through "
                                        "the image→text projection (useful when product text is poor).")

    profiles.show_write_error()
    feedback, saved = _feedback(service), _saved(service)
    like = st.session_state.get(f"{KEY}_like")
    note = ""
    try:
        if like:
            if like not in service.index.ids:
                _set_like(None)
                st.rerun()
            item = service.item(like)
            info, clear = st.columns([5, 1])
            info.markdown(f"**More like:** {md_text(item['title'])} · _{md_text(item['category'])}_ (itself excluded)")
            clear.button("Back to search", key=f"{KEY}_clear", on_click=_set_like, args=(None,))
            results = _more_like_this(name, version, like, alpha, top, tuple(categories) or None, feedback,
                                      profiles.current())
        elif text.strip() or image is not None:
            mode = "words and photo" if text.strip() and image is not None else "words" if text.strip() else "photo"
            weight = f" (weight {alpha:.2f} on words)" if mode == "words and photo" else ""
            st.caption(f"Searching by {mode}{weight}")
            with heavy_slot():
                results, note = _search(name, version, text.strip() or None, image_digest(image), alpha, top,
                                        tuple(categories) or None, PICTURE_WEIGHT if use_pictures else 0.0,
                                        feedback, image, profiles.current())
        else:
            st.info("Type a few words or upload a photo to search the catalog.")
            _saved_panel(service, saved, feedback)
            return
    except Busy as exc:
        st.info(str(exc))
        return
    except (ValueError, KeyError, ImageError) as exc:
        st.error(f"Cannot search: {exc.args[0] if exc.args else exc}")
        return
    profiles.reranked_note(note, "product")
    _grid(results, service, feedback, tuple(saved))
    _saved_panel(service, saved, feedback)
