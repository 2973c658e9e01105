"""One result grid for a person's own catalog, shared by Fashion (search by photo) and Product search (words,
photo or both).

The catalog comes from the tab's service (``service.own_catalog(name)``); this module only draws. Results are
cached on their inputs (catalog version, words, photo hash, weights, likes and dislikes), so a rerun with the
same query is free, and a 👍 / 👎 reruns only the tab's fragment and re-ranks the next results at once. Catalog text (titles, categories, attributes) is shown through
widgets that render plain text, never Markdown: a title can contain anything.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import streamlit as st


from core.feedback.catalog import catalog_feedback, catalog_key, record_item_feedback
from core.images import ImageError
from ui import profile as profiles
from ui import result_grid
from ui.common import PERSIST, RESULT_ENTRIES, RESULT_TTL, image_digest, image_upload, md_text
from ui.result_grid import Cell



@st.cache_data(show_spinner="Searching…", max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _search(name: str, version: float, text: str, digest: Optional[str], alpha: float, k: int,
            categories: tuple[str, ...], liked: tuple[str, ...], disliked: tuple[str, ...], _catalog: Any,
            _image: Any) -> list:
    return _catalog.search(text=text or None, image=_image, k=k, alpha=alpha, categories=categories,
                           liked=liked, disliked=disliked)


@st.cache_data(show_spinner="Finding similar items…", max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _similar(name: str, version: float, item: str, k: int, categories: tuple[str, ...], liked: tuple[str, ...],
             disliked: tuple[str, ...], _catalog: Any) -> list:
    return _catalog.similar_items(item, k, categories, liked=liked, disliked=disliked)


def render(tab: str, catalog: Any, version: float, *, words: bool,
           warn: Optional[Callable[[Any], Optional[str]]] = None) -> None:
    """The search panel of catalog ``catalog`` in tab ``tab`` (``fashion`` or ``multimodal``); ``warn`` gives a
    sentence to show above the results of an uploaded photo (the Fashion tab's garment check), or None."""
    key = f"{tab}_own"
    m = catalog.manifest
    whose = "Shipped catalog" if getattr(catalog, "shipped", False) else "Your catalog"
    st.caption(f"{whose}: {len(catalog):,} images ({m.get('titled', 0):,} with titles), built "
               f"{m.get('created', '?')}. Photo search compares CNN image vectors; word search reads titles "
               "where there are any and, for every photo, the ImageNet concepts the CNN sees in it.")
    left, right = st.columns([3, 2])
    with left:
        text = st.text_input("Search words", key=f"{key}_text", max_chars=300, persist_state=PERSIST,
                             placeholder="e.g. dog, red shoe, mountain") if words else ""
        image = image_upload("Photo to match (JPEG, PNG, WebP)", key=f"{key}_image")
    with right:
        alpha = st.slider("Weight of words vs. photo (when you give both)", 0.0, 1.0, 0.5, 0.05,
                          key=f"{key}_alpha", persist_state=PERSIST) if words else 0.0
        categories = st.multiselect("Only these categories", catalog.categories, key=f"{key}_cats",
                                    persist_state=PERSIST) if catalog.categories else []
        top = st.slider("Results", 5, 30, 10, 5, key=f"{key}_top", persist_state=PERSIST)
    liked, disliked = _feedback(tab, catalog)
    saved = _saved(tab, catalog)
    _saved_panel(tab, catalog, saved, liked, disliked)
    more = st.session_state.get(f"{key}_more")
    if more and more in catalog.ids:
        info, back = st.columns([5, 1])
        info.write(f"More like {more} (itself excluded):")
        back.button("Back to search", key=f"{key}_back", on_click=st.session_state.pop, args=(f"{key}_more", None))
        hits = _similar(catalog.name, version, more, top, tuple(categories), tuple(liked), tuple(disliked), catalog)
    elif (text or "").strip() or image is not None:
        try:
            if image is not None and warn is not None and (warning := warn(image)):
                st.warning(warning)
            hits = _search(catalog.name, version, (text or "").strip(), image_digest(image), alpha if image is not None
                           else 1.0, top, tuple(categories), tuple(liked), tuple(disliked), catalog, image)
        except (ValueError, ImageError) as exc:
            st.error(f"Cannot search: {md_text(str(exc))}")
            return
    else:
        st.info("Type a few words or upload a photo to search your catalog." if words
                else "Upload a photo to find the most similar items of your catalog.")
        return
    _grid(tab, catalog, hits, liked, disliked, saved)


def _feedback(tab: str, catalog: Any) -> tuple[list[str], list[str]]:
    profile = profiles.known()
    if profile is None:
        return [], []
    return catalog_feedback(profiles.store(), profile, tab, catalog.name, _has(catalog))


def _has(catalog: Any) -> Callable[[str], bool]:
    """Whether an id is one of the catalog's items (its own id map, no set of every id per rerun)."""
    return lambda item: catalog.row_of(item) is not None


def _saved(tab: str, catalog: Any) -> list[str]:
    """The ids on the profile's saved list that belong to this catalog and still exist, oldest first."""
    profile = profiles.known()
    if profile is None:
        return []
    prefix, has = f"{catalog.name}/", _has(catalog)
    return [k[len(prefix):] for k in profiles.store().saved(profile, tab) if k.startswith(prefix)
            and has(k[len(prefix):])]


def _saved_panel(tab: str, catalog: Any, saved: list[str], liked: list[str], disliked: list[str]) -> None:
    with st.expander(f"Your saved list ({len(saved)})"):
        if not saved:
            st.caption("Nothing saved yet: :material/bookmark_add: under a result keeps it here (under your profile).")
            return
        rows = [catalog.row_of(item) for item in saved]
        cells = [Cell(id=item, image=str(catalog.thumbnail(r)), image_caption=catalog.items[r].get("title") or item,
                      lines=(catalog.items[r].get("category", ""),)) for item, r in zip(saved, rows)]
        result_grid.show(cells, under=lambda c: _buttons(tab, catalog, c.id, liked, disliked, saved, "saved"))


def _grid(tab: str, catalog: Any, hits: list, liked: list[str], disliked: list[str], saved: list[str]) -> None:
    cells = [Cell(id=hit.id, image=str(hit.thumbnail), image_caption=hit.title or hit.id,
                  lines=(hit.category, f"score {hit.score:.3f}", hit.reason or ", ".join(hit.words[:3])))
             for hit in hits]
    result_grid.show(cells, under=lambda c: _buttons(tab, catalog, c.id, liked, disliked, saved, "r"))


def _buttons(tab: str, catalog: Any, item: str, liked: list[str], disliked: list[str], saved: list[str],
             section: str) -> None:
    """More like this, then 👍 / 👎 / save through the profile's shared buttons (a click reruns this tab only)."""
    key = f"{tab}_own_{section}_{item}"
    st.button("More like this", key=f"{key}_more", on_click=st.session_state.__setitem__, args=(f"{tab}_own_more", item))
    stored = catalog_key(catalog.name, item)
    verdict = "like" if item in liked else "dislike" if item in disliked else None
    version = f"catalog:{catalog.name}:{catalog.manifest.get('created', '')}"
    profiles.item_buttons(
        key, verdict,
        record=lambda db, p, sig: record_item_feedback(db, p, tab, catalog.name, item, sig,
                                                       exists=_has(catalog), model_version=version),
        undo=lambda db, p: db.undo(p, tab, stored), tab=tab, stored=stored, is_saved=item in saved)
