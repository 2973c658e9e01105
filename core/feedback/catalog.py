"""Likes and dislikes of catalog items, the way the search tabs keep them in the store.

Why shared: fashion and product search both key an item as ``<catalog>/<id>`` (so the same id in two
catalogs never mixes), refuse items their index does not have, and read back only the items of the index
on screen; one implementation keeps the two tabs from drifting apart.
"""

from __future__ import annotations

from typing import Callable

from core.feedback.store import FeedbackError, FeedbackStore


def catalog_key(catalog: str, item_id: str) -> str:
    """The store's key for a catalog item: ``<catalog>/<id>``."""
    return f"{catalog}/{item_id}"


def record_item_feedback(store: FeedbackStore, profile: str, tab: str, catalog: str, item_id: str, signal: str,
                         *, exists: Callable[[str], bool], model_version: str) -> int:
    """Store a like or dislike of ``item_id``; an item ``exists`` says the index lacks is refused."""
    if signal not in ("like", "dislike"):
        raise FeedbackError(f"Item feedback is 'like' or 'dislike', not {str(signal)[:20]!r}.")
    if not exists(str(item_id)):
        raise FeedbackError(f"{str(item_id)[:40]!r} is not an item of the {catalog} catalog.")
    return store.record(profile, tab, catalog_key(catalog, item_id), signal, model_version=model_version)


def catalog_feedback(store: FeedbackStore, profile: str, tab: str, catalog: str,
                     exists: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(liked ids, disliked ids), most recent first, of the items of ``catalog`` that still exist."""
    prefix = f"{catalog}/"

    def mine(keys: list[str]) -> list[str]:
        return [i for i in (k[len(prefix):] for k in keys if k.startswith(prefix)) if exists(i)]

    return mine(store.likes(profile, tab)), mine(store.dislikes(profile, tab))
