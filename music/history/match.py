"""A person's imported plays, matched to one trained dataset's items: which items, how often, and what did not match.

Why at view time and not at import: the store keeps plays as the export wrote them, so the same history can be
matched to any dataset trained now or later (artists in Last.fm-2K, tracks in a service's log). Matching 100,000
plays is a dictionary look-up per distinct (artist, track), a few milliseconds.

How a play becomes an item:
- an **artist catalog** (each item is an artist, as in Last.fm-2K): the play's artist name;
- a **track catalog** (items are songs with an artist): the (artist, title) pair when the dataset has that song,
  else the artist's most listened song in the dataset stands in for the artist's other songs, so that
  listening to an artist still counts as taste for it.
Skips (plays under 30 s) never count as taste; an item only ever skipped is not picked either (it was heard,
and passed over). Counts are per artist in the report, because that is what a person
recognises ("Björk: 120 plays").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from music.history.names import NameIndex, normalize

#: Names of artists not in the dataset that the report lists (most played first).
UNMATCHED_SHOWN = 20


class PlayRow(Protocol):
    """One (artist, track) of an imported history with its counted plays and skips (the store's ``PlayCount``)."""

    artist: str
    track: str
    plays: int
    skips: int


@dataclass
class HistoryMatch:
    """The matched side of a history: catalog items with their play counts, and the honest report."""

    items: np.ndarray  # catalog indices, each once
    plays: np.ndarray  # counted plays per item (float, for the fold-in's confidence)
    report: dict[str, Any]
    played_by: dict[int, tuple[str, int]] = field(default_factory=dict)  # item → (artist as written, artist plays)
    # every item heard: played, only ever skipped, or another listing of a played artist's name (never picked)
    heard: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def empty(self) -> bool:
        return len(self.items) == 0


def is_artist_catalog(titles: Sequence[str], artists: Sequence[str]) -> bool:
    """True when every item is an artist (its title is its artist's name, or it has none), as in Last.fm-2K."""
    return all(not t or t == a for t, a in zip(titles, artists))


def _artist_totals(rows: Sequence[PlayRow]) -> dict[str, tuple[str, int]]:
    """normalized artist → (its most played spelling, counted plays over all its tracks)."""
    spellings: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.plays > 0:
            by = spellings.setdefault(normalize(r.artist), {})
            by[r.artist] = by.get(r.artist, 0) + r.plays
    return {k: (max(v, key=lambda s: (v[s], s)), sum(v.values())) for k, v in spellings.items()}


class Matcher:
    """Name look-ups for one catalog, built once per loaded model (a few milliseconds for 20,000 items)."""

    def __init__(self, titles: Sequence[str], artists: Sequence[str], popularity: Sequence[float] | None = None):
        self.by_artist = is_artist_catalog(titles, artists)
        self._aliases: dict[str, list[int]] = {}
        if self.by_artist:
            self.index = NameIndex(list(artists))
            self._stand_in = np.arange(len(artists))
            # a dataset may list one artist twice ("The Killers" and "Killers"): both count as heard
            for i, a in enumerate(artists):
                self._aliases.setdefault(normalize(a), []).append(i)
        else:
            self.index = NameIndex.for_tracks(list(artists), list(titles))
            pop = np.asarray(popularity if popularity is not None else np.zeros(len(titles)), np.float64)
            self._stand_in = self._most_listened(artists, pop)

    def _most_listened(self, artists: Sequence[str], pop: np.ndarray) -> np.ndarray:
        """For each item: the most listened item of the same artist (an artist's stand-in song)."""
        best: dict[str, int] = {}
        for i, a in enumerate(artists):
            key = normalize(a)
            if key not in best or pop[i] > pop[best[key]]:
                best[key] = i
        return np.array([best[normalize(a)] for a in artists], np.int64)

    def item_of(self, artist: str, track: str) -> int | None:
        """The catalog item one (artist, track) play means, or None."""
        if not self.by_artist:
            hit = self.index.match_track(artist, track)
            if hit is not None:
                return hit
        hit = self.index.match(artist)
        return None if hit is None else int(self._stand_in[hit])

    def match(self, rows: Iterable[PlayRow]) -> HistoryMatch:
        """Match a history's (artist, track) counts; see the module docstring for the rules."""
        rows = list(rows)
        totals = _artist_totals(rows)
        plays: dict[int, float] = {}
        played_by: dict[int, tuple[str, int]] = {}
        matched: set[str] = set()
        skipped: set[int] = set()
        for r in rows:
            item = self.item_of(r.artist, r.track)
            if item is None:
                continue
            if r.plays <= 0:
                skipped.add(item)
                continue
            key = normalize(r.artist)
            matched.add(key)
            plays[item] = plays.get(item, 0.0) + r.plays
            played_by.setdefault(item, totals[key])
        unmatched = sorted((v for k, v in totals.items() if k not in matched), key=lambda v: (-v[1], v[0]))
        counted = sum(r.plays for r in rows)
        report = {
            "plays": int(counted + sum(r.skips for r in rows)), "skipped_short": int(sum(r.skips for r in rows)),
            "artists": len(totals), "matched": len(matched),
            "unmatched": [name for name, _ in unmatched[:UNMATCHED_SHOWN]],
            "unmatched_artists": len(unmatched),
            "matched_plays": int(sum(totals[k][1] for k in matched)), "counted_plays": int(counted),
            "items": len(plays), "catalog": "artists" if self.by_artist else "tracks",
        }
        items = np.array(sorted(plays), np.int64)
        heard = set(plays) | skipped
        for i in list(heard):
            heard.update(self._aliases.get(normalize(self.index.names[i]), ()) if self.by_artist else ())
        return HistoryMatch(items, np.array([plays[i] for i in items], np.float64), report, played_by,
                            np.array(sorted(heard), np.int64))


__all__ = ["HistoryMatch", "Matcher", "PlayRow", "UNMATCHED_SHOWN", "is_artist_catalog"]
