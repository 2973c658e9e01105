"""Picks for a profile from its likes and dislikes in the feedback store: what the tab and ``recommend --profile`` call.

Why here and not in the UI: the policy (fold the likes in, never show a dislike again, explain each pick by
the liked item it is nearest to, fall back to genre picks without likes) is product logic that the CLI and
the tab must share. Feedback is stored under the music tab with item keys ``<dataset>:<item>``, so a like
given on Last.fm-2K never leaks into another catalogue whose item ids happen to collide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from core.feedback.store import FeedbackError, FeedbackStore
from music.mf.foldin import FoldInModel, load_constants
from music.mf.service import genres as bundle_genres
from music.mf.train import Bundle
from music.recommender import Recommendation

log = logging.getLogger(__name__)

TAB = "music"
#: Genres used for a profile with no likes and no chosen genres: the catalogue's most common ones.
DEFAULT_GENRES = 5


def item_key(dataset: str, item: str) -> str:
    """The feedback store's key of one catalogue item."""
    return f"{dataset}:{item}"


def _items_of(keys: Sequence[str], dataset: str) -> list[str]:
    prefix = f"{dataset}:"
    return [k[len(prefix):] for k in keys if k.startswith(prefix)]


@dataclass
class ProfilePicks:
    """What the tab shows: the picks, where they came from, and the feedback they were made from."""

    profile: str
    dataset: str
    source: str  # "fold_in" (likes folded into MF) or "genre" (no likes yet)
    picks: list[Recommendation]
    likes: list[str] = field(default_factory=list)
    dislikes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # liked ids not in this catalogue (e.g. a retrained one)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "dataset": self.dataset, "source": self.source,
                "likes": self.likes, "dislikes": self.dislikes, "ignored": self.ignored,
                "picks": [p.to_dict() for p in self.picks]}


def _foldin(bundle: Bundle) -> FoldInModel:
    """One ``FoldInModel`` per loaded bundle (its Gram matrix is computed once), with the constants chosen on
    validation listeners for this dataset (``foldin-<dataset>.json`` beside the models; the model's own
    values when none were chosen)."""
    cached = getattr(bundle, "_foldin", None)
    if cached is None or cached.mf is not bundle.mf:
        mf = bundle.mf
        constants = load_constants(bundle.dataset, str(mf.mode), str(getattr(mf, "engine", "keras")))  # type: ignore[attr-defined]
        cached = FoldInModel(mf, constants)  # type: ignore[arg-type]
        bundle._foldin = cached  # type: ignore[attr-defined]
    return cached


def record(store: FeedbackStore, bundle: Bundle, profile: str, item: str, signal: str) -> int:
    """Store a like or dislike of a catalogue item (the profile is created if new); unknown items are refused."""
    if signal not in ("like", "dislike"):
        raise FeedbackError(f"A music pick takes 'like' or 'dislike', not {signal!r}.")
    if item not in bundle.mf.catalogue.items:
        raise FeedbackError(f"Unknown item {item!r} in the {bundle.label} catalogue.")
    store.create_profile(profile)
    version = f"{bundle.dataset}:{getattr(bundle.mf, 'engine', 'keras')}:{bundle.manifest.get('dataset_checksum', '')[:12]}"
    return store.record(profile, TAB, item_key(bundle.dataset, item), signal, model_version=version)


def picks_for_likes(bundle: Bundle, likes: Sequence[str], dislikes: Sequence[str] = (), n: int = 10,
                    genres: Sequence[str] | None = None, profile: str = "") -> ProfilePicks:
    """Fold ``likes`` (item ids) into the bundle's MF; ``dislikes`` and liked items never appear.

    Without a usable like: genre picks for ``genres`` (default: the catalogue's most common genres),
    dislikes removed.
    """
    c = bundle.mf.catalogue
    known = [i for i in likes if i in c.items]
    ignored = [i for i in likes if i not in c.items]
    banned = np.array([c.items.index(i) for i in dislikes if i in c.items], np.int64)
    if known:
        f = _foldin(bundle)
        liked = c.items.indices(known).astype(np.int64)
        picks = [bundle.mf._rec(i, s, f.reason(liked, i)) for i, s in f.top(liked, n, exclude=banned)]
        source = "fold_in"
    else:
        wanted = list(genres) if genres else bundle_genres(bundle)[:DEFAULT_GENRES]
        ranked = bundle.genre.recommend_for_genres(wanted, n + len(banned))
        gone = set(c.items.externals(banned)) if len(banned) else set()
        picks = [r for r in ranked if r.item not in gone][:n]
        source = "genre"
    return ProfilePicks(profile, bundle.dataset, source, picks, list(known), list(dislikes), ignored)


def search_items(bundle: Bundle, query: str, n: int = 20) -> list[Recommendation]:
    """Catalogue items whose title or artist contains ``query`` (case-insensitive), most listened first:
    the search box where a new listener finds songs to like."""
    q = (query or "").strip().lower()
    if not q:
        return []
    c = bundle.mf.catalogue
    hits = np.array([i for i in range(c.n_items) if q in c.titles[i].lower() or q in c.artists[i].lower()], np.int64)
    if len(hits) == 0:
        return []
    listeners = np.asarray(bundle.popularity.counts, np.float64)  # type: ignore[attr-defined]
    order = hits[np.argsort(-listeners[hits], kind="stable")][:n]
    return [bundle.mf._rec(int(i), listeners[i], f"{int(listeners[i])} listeners") for i in order]


def profile_picks(store: FeedbackStore, bundle: Bundle, profile: str, n: int = 10,
                  genres: Sequence[str] | None = None) -> ProfilePicks:
    """Picks for a stored profile: its current likes folded in, its dislikes filtered (see ``picks_for_likes``)."""
    likes = _items_of(store.likes(profile, TAB), bundle.dataset)
    dislikes = _items_of(store.dislikes(profile, TAB), bundle.dataset)
    return picks_for_likes(bundle, likes, dislikes, n, genres, profile)


__all__ = ["TAB", "ProfilePicks", "item_key", "record", "picks_for_likes", "profile_picks", "search_items"]
