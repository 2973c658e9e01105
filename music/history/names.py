"""Matching the artist and track names people's exports carry to the names a trained dataset knows.

Why a matching key and not string equality: the same artist is spelt differently by every service and every
decade of tagging ("Sigur Rós" / "Sigur Ros", "The Beatles" / "Beatles, The", "Simon & Garfunkel" /
"Simon and Garfunkel", "Jay-Z feat. Alicia Keys"). A listener whose Björk plays do not count because one side
lost the accent gets worse picks for no reason, so names meet on a key that forgets what does not tell artists
apart (case, accents, a leading "The", "&" vs "and", punctuation) and keeps what does (every letter and digit,
in any script, so "東京事変" and "!!!" still match themselves).

Known limits, on purpose: letters swapped for symbols ("P!nk" vs "Pink") stay unmatched, because guessing
that "!" is an "i" would also merge names that are really different; and "&" inside a featured-guest list is
not split, because it is also how duos are named ("Simon & Garfunkel").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

#: Letters that Unicode does not decompose into a base letter plus an accent but that people type without it.
_FOLD = str.maketrans({"ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ł": "l", "Ł": "l",
                       "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "þ": "th", "Þ": "th", "ı": "i"})
#: Apostrophes and their look-alikes join the letters around them ("Guns N' Roses" → "guns n roses").
_APOSTROPHES = str.maketrans("", "", "'’‘ʼ`´")
#: A featured-artist marker: " feat. ", " ft. ", " featuring ", " with ", or one opening a bracket.
_FEAT = re.compile(r"\s*[(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s+|\s+(?:feat\.?|ft\.?|featuring|with)\s+",
                   re.IGNORECASE)
#: Title suffixes that name a release of a recording, not another song: " - Remastered 2009", "(Live at …)".
_VERSION_WORDS = (r"remaster(?:ed)?|live|mono|stereo|radio edit|single version|album version|"
                  r"deluxe(?: edition)?|bonus track|explicit|feat\.?|ft\.?|featuring|with")
_TITLE_SUFFIX = re.compile(
    rf"(?:\s+-\s+(?:[^-]*\b(?:{_VERSION_WORDS})\b[^-]*)|\s*[(\[][^()\[\]]*\b(?:{_VERSION_WORDS})\b[^()\[\]]*[)\]])\s*$",
    re.IGNORECASE)


def _is_stripped_mark(base: str, ch: str) -> bool:
    """True for an accent on a Latin, Greek or Cyrillic letter; marks of other scripts carry meaning and stay."""
    return unicodedata.combining(ch) > 0 and base != "" and ord(base) < 0x0530


def _strip_accents(text: str) -> str:
    """NFKD, drop accents on European letters, recompose the rest (so kana keep their dakuten)."""
    out: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            if _is_stripped_mark(base, ch):
                continue
        else:
            base = ch
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


@lru_cache(maxsize=200_000)
def normalize(name: str) -> str:
    """The matching key of an artist or track name: ``"Sigur Rós"`` → ``"sigur ros"``, ``"Beatles, The"`` → ``"beatles"``.

    Steps: accents stripped (NFKD), case folded, "&" and "+" read as "and", apostrophes joined, every other
    punctuation mark or symbol a space, a leading "the " and a trailing ", the" dropped, whitespace collapsed.
    A name made only of punctuation keeps its characters ("!!!"), so a non-empty name never has an empty key.
    """
    text = _strip_accents(name.translate(_FOLD)).casefold().strip()
    text = re.sub(r"\s*,\s*the$", "", text)  # "Beatles, The" — before commas become spaces
    text = text.replace("&", " and ").replace("+", " and ").translate(_APOSTROPHES)
    kept = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text)
    key = " ".join(kept.split())
    if key.startswith("the ") and key != "the the":  # The The is a band, not "the" twice
        key = key[4:]
    if not key:  # only punctuation and symbols ("!!!", "+/-"): those characters are the name
        key = " ".join(name.casefold().split())
    return key


def _compact(key: str) -> str:
    """The key without spaces: "ac dc" (from "AC/DC") meets "acdc", "jay z" (from "Jay-Z") meets "jayz"."""
    return key.replace(" ", "")


def credits(name: str) -> list[str]:
    """The main artist first, then the featured ones: ``"Jay-Z feat. Alicia Keys"`` → ``["Jay-Z", "Alicia Keys"]``.

    Splits only on featuring markers (" feat. ", " ft. ", " featuring ", " with ", "(feat. …)"), never on "&",
    "and" or commas, which are as often part of one band's name ("Simon & Garfunkel", "Earth, Wind & Fire").
    """
    parts = [p.strip(" )]") for p in _FEAT.split(name)]
    return [p for p in parts if p] or [name.strip()]


def normalize_title(title: str) -> str:
    """A track title's key: ``normalize`` after dropping release suffixes (" - Remastered 2009", "(Live…)", "(feat. X)")."""
    previous = None
    while previous != title:  # "Song (feat. X) - Remastered 2011": peel one suffix at a time
        previous = title
        stripped = _TITLE_SUFFIX.sub("", title)
        title = stripped if stripped.strip() else title
    return normalize(title)


class NameIndex:
    """A catalog's artist names (and optionally one track title per item), looked up by matching key.

    ``match`` tries, in order: the exact key; the key without spaces ("AC/DC" = "ACDC"); then the same two for
    the main credit of a featuring credit. Two catalog entries with the same key: the first one wins, so the
    result never depends on hash order.
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._keys: dict[str, int] = {}
        self._compact: dict[str, int] = {}
        self._tracks: dict[tuple[str, str], int] = {}
        for i, name in enumerate(self.names):
            key = normalize(str(name))
            self._keys.setdefault(key, i)
            self._compact.setdefault(_compact(key), i)

    @classmethod
    def for_tracks(cls, artists: Sequence[str], titles: Sequence[str]) -> "NameIndex":
        """An index over items that each have an artist and a title (``match`` still finds an artist's first item)."""
        if len(artists) != len(titles):
            raise ValueError(f"{len(artists)} artists but {len(titles)} titles; give one of each per item.")
        index = cls(artists)
        for i, (artist, title) in enumerate(zip(artists, titles)):
            index._tracks.setdefault((_compact(normalize(str(artist))), _compact(normalize_title(str(title)))), i)
        return index

    def _artist_keys(self, name: str) -> list[str]:
        """The keys to try for a name, best first: the whole name, then its main credit."""
        keys = [normalize(name)]
        main = credits(name)[0]
        if main != name.strip():
            keys.append(normalize(main))
        return keys

    def match(self, name: str) -> int | None:
        """The position in ``names`` of the catalog artist this name means, or None when it has none."""
        if not name or not name.strip():
            return None
        for key in self._artist_keys(name):
            for table, k in ((self._keys, key), (self._compact, _compact(key))):
                if k in table:
                    return table[k]
        return None

    def match_track(self, artist: str, track: str) -> int | None:
        """The position of the item with this artist and title (release suffixes ignored), or None."""
        if not self._tracks or not artist or not track:
            return None
        title = _compact(normalize_title(track))
        for key in self._artist_keys(artist):
            hit = self._tracks.get((_compact(key), title))
            if hit is not None:
                return hit
        return None
