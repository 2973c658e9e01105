"""Picks for a profile from its likes and dislikes in the feedback store: what the tab and ``recommend --profile`` call.

Why here and not in the UI: the policy (fold the likes in, never show a dislike again, explain each pick by
the liked item it is nearest to, fall back to genre picks without likes) is product logic that the CLI and
the tab must share. Feedback is stored under the music tab with item keys ``<dataset>:<item>``, so a like
given on Last.fm-2K never leaks into another catalog whose item ids happen to collide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from core.feedback.store import FeedbackError, FeedbackStore
from music.history.match import HistoryMatch, Matcher
from music.mf.foldin import FoldInModel, load_constants
from music.mf.service import genres as bundle_genres
from music.mf.train import Bundle
from music.recommender import Recommendation, top_n

log = logging.getLogger(__name__)

TAB = "music"
#: Genres used for a profile with no likes and no chosen genres: the catalog's most common ones.
DEFAULT_GENRES = 5
#: How imported play counts enter the fold-in (``history_confidence``): "listener" (the like confidence plus
#: α·log of the artist's plays relative to the listener's median), "damped" (the like confidence times the
#: square root of that ratio) or "raw" (the model's own rule on the raw counts); chosen on validation
#: listeners by ``bench/history_picks.py``.
HISTORY_SCALE = "damped"
SCALES = ("listener", "damped", "raw")


def item_key(dataset: str, item: str) -> str:
    """The feedback store's key of one catalog item."""
    return f"{dataset}:{item}"


def _items_of(keys: Sequence[str], dataset: str) -> list[str]:
    prefix = f"{dataset}:"
    return [k[len(prefix):] for k in keys if k.startswith(prefix)]


@dataclass
class ProfilePicks:
    """What the tab shows: the picks, where they came from, and the feedback they were made from."""

    profile: str
    dataset: str
    source: str  # "history" (imported plays, with any likes), "fold_in" (likes only) or "genre" (neither yet)
    picks: list[Recommendation]
    likes: list[str] = field(default_factory=list)
    dislikes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # liked ids not in this catalog (e.g. a retrained one)
    history: dict[str, Any] | None = None  # the imported history's match report in this dataset

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "dataset": self.dataset, "source": self.source,
                "likes": self.likes, "dislikes": self.dislikes, "ignored": self.ignored,
                "history": self.history, "picks": [p.to_dict() for p in self.picks]}


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


def _matcher(bundle: Bundle) -> Matcher:
    """One name index per loaded bundle (built on first use; a second build by a racing session is harmless)."""
    cached = getattr(bundle, "_matcher", None)
    if cached is None:
        c = bundle.mf.catalog
        counts = getattr(bundle.popularity, "counts", None)
        cached = Matcher(c.titles, c.artists, counts)
        bundle._matcher = cached  # type: ignore[attr-defined]
    return cached


def has_real_names(bundle: Bundle) -> bool:
    """False for the simulated default, whose artists are invented: no real history can match it."""
    return bundle.dataset != "simulated"


def history_match(store: FeedbackStore, bundle: Bundle, profile: str) -> HistoryMatch | None:
    """The profile's imported plays matched to this dataset (an empty match without any); None for a dataset
    whose artists are invented, which no real history can match."""
    return match_counts(bundle, store.play_counts(profile)) if has_real_names(bundle) else None


def match_counts(bundle: Bundle, counts: Sequence[Any]) -> HistoryMatch:
    """Plays per (artist, track) (the store's ``play_counts``) matched to this dataset."""
    return _matcher(bundle).match(counts)


def history_confidence(f: FoldInModel, plays: np.ndarray, scale: str = "") -> np.ndarray | None:
    """Play counts as fold-in confidences around the like confidence chosen on validation listeners: the
    listener's median artist counts as much as one like, more played ones more (``HISTORY_SCALE``). Why relative
    to the listener: an export covers months and the training log years, so raw counts would make every personal
    history look faint. ``None`` means "the model's own rule on raw counts" ("raw"). ``scale`` defaults to the
    chosen ``HISTORY_SCALE``."""
    scale = scale or HISTORY_SCALE
    if scale not in SCALES:
        raise ValueError(f"The play-count scale is one of {', '.join(SCALES)}, not {scale!r}.")
    if scale == "raw" or len(plays) == 0:
        return None
    relative = plays / max(float(np.median(plays)), 1.0)
    if scale == "damped":
        return f.confidence * np.sqrt(relative)
    return f.confidence + f.alpha * np.log(relative)  # "listener": the iALS log curve, shifted to the like's


def _history_top(bundle: Bundle, history: HistoryMatch, liked: np.ndarray, banned: np.ndarray,
                 n: int, scale: str = "") -> list[Recommendation]:
    """Fold the played items (play counts as confidence) and liked items in; nothing played is picked."""
    f = _foldin(bundle)
    extra = np.setdiff1d(liked, history.items)
    items = np.concatenate([history.items, extra]).astype(np.int64)
    confidence = history_confidence(f, history.plays, scale)
    if confidence is None:
        user = f.solve(items, np.concatenate([history.plays, np.full(len(extra), f.like_value)]))
    else:
        user = f.solve(items, confidence=np.concatenate([confidence, np.full(len(extra), f.confidence)]))
    scores = f.scores(user)
    scores[items] = -np.inf
    scores[banned] = -np.inf
    Qn = bundle.mf.Qn
    c = bundle.mf.catalog
    picks = []
    for i in top_n(scores, n):
        j = int(items[np.argmax(Qn[items] @ Qn[i])])
        if j in history.played_by:
            name, count = history.played_by[j]
            reason = f"because you played {name} {count} time{'s' if count != 1 else ''}"
        else:
            reason = f"because you liked {c.titles[j]}" + (f" by {c.artists[j]}" if c.artists[j] != c.titles[j] else "")
        picks.append(bundle.mf._rec(int(i), float(scores[i]), reason))
    return picks


def record(store: FeedbackStore, bundle: Bundle, profile: str, item: str, signal: str) -> int:
    """Store a like or dislike of a catalog item (the profile is created if new); unknown items are refused."""
    if signal not in ("like", "dislike"):
        raise FeedbackError(f"A music pick takes 'like' or 'dislike', not {signal!r}.")
    if item not in bundle.mf.catalog.items:
        raise FeedbackError(f"Unknown item {item!r} in the {bundle.label} catalog.")
    store.create_profile(profile)
    version = f"{bundle.dataset}:{getattr(bundle.mf, 'engine', 'keras')}:{bundle.manifest.get('dataset_checksum', '')[:12]}"
    return store.record(profile, TAB, item_key(bundle.dataset, item), signal, model_version=version)


def picks_for_likes(bundle: Bundle, likes: Sequence[str], dislikes: Sequence[str] = (), n: int = 10,
                    genres: Sequence[str] | None = None, profile: str = "",
                    history: HistoryMatch | None = None, scale: str = "") -> ProfilePicks:
    """Fold ``likes`` (item ids) and the matched ``history`` into the bundle's MF; ``dislikes``, liked and
    played items never appear.

    ``scale``: how play counts become confidence (``history_confidence``; default the chosen one).
    Without a usable like or play: genre picks for ``genres`` (default: the catalog's most common genres),
    dislikes removed.
    """
    c = bundle.mf.catalog
    known = [i for i in likes if i in c.items]
    ignored = [i for i in likes if i not in c.items]
    banned = np.array([c.items.index(i) for i in dislikes if i in c.items], np.int64)
    report = history.report if history is not None else None
    if history is not None and not history.empty:
        keep = ~np.isin(history.items, banned)  # a disliked artist is not folded in, however often played
        banned = np.union1d(banned, history.heard).astype(np.int64)
        history = HistoryMatch(history.items[keep], history.plays[keep], history.report, history.played_by)
        liked = c.items.indices(known).astype(np.int64) if known else np.empty(0, np.int64)
        picks = _history_top(bundle, history, liked, banned, n, scale)
        return ProfilePicks(profile, bundle.dataset, "history", picks, list(known), list(dislikes), ignored, report)
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
    return ProfilePicks(profile, bundle.dataset, source, picks, list(known), list(dislikes), ignored, report)


def search_items(bundle: Bundle, query: str, n: int = 20) -> list[Recommendation]:
    """Catalog items whose title or artist contains ``query`` (case-insensitive), most listened first:
    the search box where a new listener finds songs to like."""
    q = (query or "").strip().lower()
    if not q:
        return []
    c = bundle.mf.catalog
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
    return picks_for_likes(bundle, likes, dislikes, n, genres, profile, history_match(store, bundle, profile))


__all__ = ["TAB", "ProfilePicks", "has_real_names", "history_match", "item_key", "match_counts", "record",
           "picks_for_likes", "profile_picks", "search_items"]
