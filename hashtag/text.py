"""Caption text → hashtags, with no nltk data: tokenise, drop stop words, fold inflections, singularise.

Why this way: nltk's corpora (punkt, WordNet) cannot be downloaded here, so the pieces are
``wordpunct_tokenize``, scikit-learn's English stop words, a Snowball-stemmer-backed lemma map built
from the corpus itself, and conservative plural rules for words whose singular never appears.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable, Optional

# Words that survive sklearn's stop list but say nothing about an image's content.
EXTRA_STOP = frozenset({"called", "known", "used", "shown", "type", "kind", "like", "make", "makes", "usually",
                        "don", "doesn", "isn", "aren", "won", "ll", "ve", "re"})
# Plural-looking words that are their own singular (the rules below would break them).
INVARIANT = frozenset({"clothes", "scissors", "pants", "jeans", "shorts", "trousers", "glasses", "news", "series",
                       "species", "mathematics", "physics", "binoculars", "pliers", "tongs", "overalls"})


def _stop_words() -> frozenset[str]:
    # sklearn (with scipy, about 1,400 modules) loads only when captions become tags (building a dataset)
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | EXTRA_STOP


_STOP: Optional[frozenset[str]] = None


def content_words(text: str) -> list[str]:
    """Lower-cased content words of ``text`` in order: alphanumeric, ≥ 2 characters, no stop words.

    Why wordpunct: it needs no nltk data and splits "candleholder—a" and "“Hospital”." cleanly.
    """
    global _STOP
    if _STOP is None:
        _STOP = _stop_words()
    # nltk (about 1,700 modules) loads only when captions become tags, not when the app imports the tab
    from nltk.tokenize import wordpunct_tokenize

    words = []
    for token in wordpunct_tokenize(text.lower()):
        if len(token) < 2 or not token.isalnum() or token.isdigit() or token in _STOP:
            continue
        words.append(token)
    return words


_KEEP_S = ("ss", "us", "is", "as", "os", "ys")


def singular(word: str) -> str:
    """Rule-based English singular for words whose singular never appears in the corpus.

    Conservative on purpose: "glass", "octopus", "tennis", "christmas" stay as they are.
    """
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_KEEP_S) or word in INVARIANT:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return word[:-2]
    return word[:-1]


def _inflections(word: str) -> set[str]:
    """Regular inflections of ``word`` (plural, -ing, -ed): the only forms the lemma map may fold onto it."""
    forms = {word + "s", word + "es", word + "ing", word + "ed", word + "d", word + word[-1:] + "ing"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("e"):
        forms.add(word[:-1] + "ing")
    return forms


def build_lemma_map(words: Iterable[str]) -> dict[str, str]:
    """Map inflected forms onto one canonical surface form, using the corpus itself as the dictionary.

    Words that share a Snowball stem are grouped; the group's most frequent form (ties: the shorter)
    becomes canonical, but a word is only mapped onto it when it is a regular inflection of it, so
    "birds" → "bird" and "berries" → "berry" while "university" never becomes "universe". Words whose
    singular is absent from the corpus fall back to ``singular``.
    """
    # nltk (about 1,700 modules) loads only when a dataset's tags are built, not when the app imports the tab
    from nltk.stem.snowball import SnowballStemmer

    stemmer = SnowballStemmer("english")
    counts = Counter(words)
    groups: dict[str, list[str]] = defaultdict(list)
    for w in counts:
        groups[stemmer.stem(w)].append(w)
    mapping: dict[str, str] = {}
    for forms in groups.values():
        canonical = sorted(forms, key=lambda w: (-counts[singular(w)] - counts[w], len(w), w))[0]
        canonical = singular(canonical) if singular(canonical) in counts else canonical
        for w in forms:
            if w != canonical and w not in INVARIANT and w in _inflections(canonical):
                mapping[w] = canonical
    for w in counts:
        if w not in mapping:
            s = singular(w)
            if s != w:
                mapping[w] = s
    return mapping


def normalize_tag(raw: str, lemma: Optional[dict[str, str]] = None) -> str:
    """A hashtag from a raw word or folder name: lower-case, letters/digits only, singular.

    ``body_parts`` → ``bodypart``; ``#Cats`` → ``cat``.
    """
    parts = [p for p in re.split(r"[^0-9a-z]+", raw.lower().lstrip("#")) if p and not p.isdigit()]
    if lemma is not None:
        parts = [lemma.get(p, singular(p)) for p in parts]
    else:
        parts = [singular(p) for p in parts]
    return "".join(parts)


def dedupe(tags: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each tag (the order is the teacher-forcing order)."""
    seen: set[str] = set()
    out = []
    for t in tags:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out
