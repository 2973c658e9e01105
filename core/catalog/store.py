"""Built catalogs: list, open, search, remove. What Fashion, Product search, the Data page and the CLI share.

    for info in list_catalogs(): ...
    catalog = open_catalog("my-shop")            # cached per build; safe to share between sessions
    catalog.search(text="red dress", k=10)        # words: titles and, for untitled photos, concept words
    catalog.search(image=upload, k=10)            # photo: nearest image vectors
    catalog.search(text="dog", image=upload)      # both, fused

How word search works without titles: each image carries the WordNet concept words its ImageNet classes
support, with their probability mass (``core.catalog.build``). A query is embedded with MiniLM, compared
with every concept word's embedding, and an image scores the mass of its best-matching word times how well
that word matches (exact words match fully). Titles, where a catalog has them, add their own MiniLM cosine.

Likes and dislikes change the next results at once (``liked=`` / ``disliked=`` catalog ids): a photo query,
"more like this" and the photo half of a combined query move in the image space by Rocchio toward the liked
items' stored image vectors and away from the disliked ones; a word query gains an image component, the Rocchio
direction of the feedback alone, weighted by ``FeedbackWeights.word_image``. Disliked items are never shown.
A hit that ranks higher than it would without the feedback says so in its reason ("like what you liked").
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, read_json
from core.catalog.build import catalogs_dir, read_manifest
from core.catalog.sources import CatalogError, check_name
from core.encoders import get_image_encoder
from core.feedback.rocchio import RocchioWeights, rocchio
from core.images import ImageSource, load_image
from core.search import VectorIndex
from core.text import get_text_encoder

log = logging.getLogger(__name__)

#: A concept word counts for a query when their MiniLM cosine is at least this (below: no match at all). This and
#: the two weights below are chosen on the dev photos by ``bench/catalog_quality.py`` (its JSON has the grids).
WORD_MATCH_MIN = 0.45
#: Weight of the concept-word score beside the title score in a titled catalog.
CONCEPT_WEIGHT = 0.5
#: Weight of an exact word match in a title (query words found as words of the item's text) in a titled catalog.
LEXICAL_WEIGHT = 0.25
#: How a query word matches a word of a title: ``plain`` (lower case, a plural's final ``s`` dropped),
#: ``lemmas`` (also WordNet's noun lemmas, the same on both sides: men → man, churches → church) or ``kinds``
#: (lemmas, and a title word also stands for its synonyms and the words it is a kind of, by its first
#: common-noun sense in WordNet: heron → bird, cathedral → church, woman → person). Chosen on dev.
TITLE_WORDS = "kinds"
TITLE_WORD_MODES = ("plain", "lemmas", "kinds")
#: Whether a query word found in many titles counts less (inverse document frequency). Chosen on dev.
TITLE_IDF = False
#: Text weight when a query has both words and a photo.
DEFAULT_ALPHA = 0.5
_TOKEN = re.compile(r"[a-z0-9]+")
#: What a hit lifted by the person's likes says about itself.
LIFTED = "like what you liked"


@dataclass(frozen=True)
class FeedbackWeights:
    """How likes and dislikes move a query: Rocchio's α, β, γ in the image space, and the weight of the
    feedback's image direction added to a word query's score. Chosen on the dev photos by a simulated user
    (``bench/catalog_feedback.py``; its JSON has the grid)."""

    rocchio: RocchioWeights = RocchioWeights(1.0, 1.5, 1.0)
    word_image: float = 2.0


#: The weights own-catalog searches use (``bench/catalog_feedback.py`` chose them on dev).
FEEDBACK = FeedbackWeights()


@dataclass(frozen=True)
class CatalogHit:
    """One result: the catalog's own id, a score, what to show and why it was found."""

    id: str
    row: int
    score: float
    title: str
    category: str
    thumbnail: Path
    words: tuple[str, ...] = ()
    reason: str = ""
    attributes: dict = field(default_factory=dict, compare=False, hash=False)

    def as_json(self) -> dict[str, Any]:
        out = {"id": self.id, "score": round(self.score, 4), "words": list(self.words), "reason": self.reason}
        if self.title:
            out["title"] = self.title
        if self.category:
            out["category"] = self.category
        return out


class BuiltCatalog:
    """A built catalog loaded for searching: image index, text and concept-word arrays, items and thumbnails."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.name = str(self.manifest["name"])
        self.items: list[dict] = _read_json_list(folder / "items.json")
        self.vocabulary: list[str] = _read_json_list(folder / "words.json")
        try:
            with np.load(folder / "arrays.npz", allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"The catalog {self.name} is damaged ({exc}); rebuild it.") from exc
        self.text_vectors = arrays["text"]
        self.word_ids, self.word_mass = arrays["word_ids"], arrays["word_mass"]
        self.vocabulary_vectors = arrays["vocabulary"]
        if len(self.items) != len(arrays["image"]) or len(self.vocabulary) != len(self.vocabulary_vectors):
            raise ArtifactError(f"The catalog {self.name} is inconsistent (items and arrays differ); rebuild it.")
        self.ids = [str(item["id"]) for item in self.items]
        self.index = VectorIndex(arrays["image"], self.ids, {"category": [i["category"] for i in self.items]},
                                 normalize=False)
        self.index.load_faiss(folder / "image.faiss", self.manifest["search"], hint=f"python -m core catalog add {self.name} ...")
        self.titled = bool(int(self.manifest.get("titled", 0)))
        self._texts = [" ".join((i.get("title", ""), i.get("category", ""), i.get("description", ""))) for i in self.items]
        self._title_words: dict[str, list[frozenset[str]]] = {}
        self._word_index = {w: i for i, w in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def categories(self) -> list[str]:
        return list(self.manifest.get("categories", []))

    @property
    def shipped(self) -> bool:
        """True for a catalog that ships with the app (built from ``shipped:NAME``)."""
        return bool(self.manifest.get("shipped", False))

    def row_of(self, item_id: str) -> Optional[int]:
        """The row of catalog id ``item_id``, or None when this catalog (maybe since a rebuild) lacks it."""
        return self.index.find(item_id)

    def thumbnail(self, row: int) -> Path:
        return self.folder / "thumbs" / f"{row:06d}.jpg"

    def words_of(self, row: int, top: int = 5, floor: float = 0.05) -> tuple[str, ...]:
        """The strongest concept words of an image (what the catalog 'sees' in it)."""
        pairs = zip(self.word_ids[row], self.word_mass[row])
        return tuple(self.vocabulary[int(j)] for j, m in pairs if m >= floor)[:top]

    # -- queries --------------------------------------------------------------------------------------
    def search(self, *, text: Optional[str] = None, image: Optional[ImageSource] = None, k: int = 10,
               alpha: float = DEFAULT_ALPHA, categories: Optional[Sequence[str]] = None,
               exclude: Sequence[str] = (), liked: Sequence[str] = (), disliked: Sequence[str] = (),
               feedback: FeedbackWeights = FEEDBACK) -> list[CatalogHit]:
        """Words, a photo, or both (text weight ``alpha``), re-ranked by the ``liked`` / ``disliked`` ids of
        this catalog (ids it lacks are ignored; disliked ones are hidden); a bad photo raises ``ImageError``."""
        text = (text or "").strip()
        if not text and image is None:
            raise ValueError("Type some words, upload a photo, or both.")
        if len(text) > 1000:
            raise ValueError("The search text is longer than 1,000 characters; shorten it.")
        keep = self._keep(categories, tuple(exclude) + tuple(disliked))
        liked_rows, disliked_rows = self._rows(liked), self._rows(disliked)
        query = self.image_vector(image) if image is not None else None
        text_scores, reasons = self.word_scores(text) if text else (None, {})
        scores = self.query_scores(text_scores, query, alpha=alpha)
        default = "looks alike" if image is not None and not text else ""
        if not len(liked_rows) and not len(disliked_rows):
            return self._top(scores, keep, k, reasons, default)
        moved = self.query_scores(text_scores, query, alpha=alpha, liked_rows=liked_rows,
                                  disliked_rows=disliked_rows, feedback=feedback)
        return self._lifted(self._top(moved, keep, k, reasons, default), scores, keep, bool(len(liked_rows)))

    def query_scores(self, text_scores: Optional[np.ndarray], query: Optional[np.ndarray], *,
                     alpha: float = DEFAULT_ALPHA, liked_rows: Sequence[int] = (), disliked_rows: Sequence[int] = (),
                     feedback: FeedbackWeights = FEEDBACK) -> np.ndarray:
        """(N,) scores of a query given as word scores and/or an image vector, moved by the feedback rows.

        Public so that an evaluation can score many feedback weights without encoding the query again."""
        liked_vecs = self.index.vectors[np.asarray(liked_rows, np.int64)] if len(liked_rows) else None
        disliked_vecs = self.index.vectors[np.asarray(disliked_rows, np.int64)] if len(disliked_rows) else None
        has_feedback = liked_vecs is not None or disliked_vecs is not None
        scores = np.zeros(len(self), np.float32)
        if text_scores is not None:
            scores += (alpha if query is not None else 1.0) * text_scores
        if query is not None:
            moved = _moved(query, liked_vecs, disliked_vecs, feedback.rocchio) if has_feedback else query
            scores += (1.0 - alpha if text_scores is not None else 1.0) * (self.index.vectors @ moved)
        elif has_feedback and feedback.word_image > 0:
            direction = _feedback_direction(liked_vecs, disliked_vecs, feedback.rocchio)
            if direction is not None:
                scores += feedback.word_image * (self.index.vectors @ direction)
        return scores

    def similar_items(self, item_id: str, k: int = 10, categories: Optional[Sequence[str]] = None, *,
                      liked: Sequence[str] = (), disliked: Sequence[str] = (),
                      feedback: FeedbackWeights = FEEDBACK) -> list[CatalogHit]:
        """Items that look most like catalog item ``item_id`` (itself and disliked ones excluded), moved toward
        the ``liked`` ids by Rocchio; ``KeyError`` if ``item_id`` is unknown."""
        row = self.index.position(item_id)
        liked_rows, disliked_rows = self._rows(liked), self._rows(disliked)
        if not len(liked_rows) and not len(disliked_rows):
            hits = self.index.query(self.index.vectors[row], k, filters={"category": list(categories or [])} or None,
                                    exclude_id=item_id)
            return [self._hit(h.index, h.score, "looks alike") for h in hits]
        keep = self._keep(categories, (item_id, *disliked))
        query = self.index.vectors[row]
        moved = self.query_scores(None, query, liked_rows=liked_rows, disliked_rows=disliked_rows, feedback=feedback)
        hits = self._top(moved, keep, k, {}, "looks alike")
        return self._lifted(hits, self.index.vectors @ query, keep, bool(len(liked_rows)))

    def _rows(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of the ids this catalog has (feedback on items of another catalog or a rebuilt one is ignored)."""
        return np.array(sorted({r for r in map(self.index.find, ids) if r is not None}), np.int64)

    def _lifted(self, hits: list[CatalogHit], plain: np.ndarray, keep: np.ndarray, any_like: bool) -> list[CatalogHit]:
        """Hits that rank higher than they would without the feedback say so, when there are likes."""
        if not any_like:
            return hits
        plain = np.where(keep, plain, -np.inf)
        out = []
        for position, hit in enumerate(hits):
            plain_position = int((plain > plain[hit.row]).sum())
            if plain_position > position:
                hit = replace(hit, reason=f"{LIFTED} · {hit.reason}" if hit.reason else LIFTED)
            out.append(hit)
        return out

    def image_vector(self, image: ImageSource) -> np.ndarray:
        spec = self.manifest["image_encoder"]
        encoder = get_image_encoder(spec["backbone"], spec["pooling"], input_size=spec["input_size"])
        if encoder.spec.get("weights") != spec.get("weights"):
            raise ArtifactError(f"The catalog {self.name} was built with other image weights; rebuild it.")
        return encoder.encode([load_image(image)])[0]

    def image_scores(self, image: ImageSource) -> np.ndarray:
        return self.index.vectors @ self.image_vector(image)

    def word_scores(self, text: str, *, match_min: float = WORD_MATCH_MIN, concept_weight: float = CONCEPT_WEIGHT,
                    lexical_weight: float = LEXICAL_WEIGHT, title_words: str = TITLE_WORDS,
                    idf: bool = TITLE_IDF) -> tuple[np.ndarray, dict[int, str]]:
        """(per-item score, per-item reason) for a word query: titles where present, concept words always.

        A titled item scores its title's MiniLM cosine, plus ``lexical_weight`` × the share of the query's words
        found among the words of its text (what a shopper expects of "tower" in "Clock tower at dusk"; how words
        match is ``title_words``, see ``TITLE_WORDS``; with ``idf`` a word found in many titles counts less), plus
        ``concept_weight`` × its concept score. The defaults are the values chosen on the dev catalog
        (``bench/catalog_quality.py``), which passes others while it searches for them.
        """
        query = _text_vector(text)
        match = self._word_match(text, query, match_min)
        per_slot = match[self.word_ids] * self.word_mass  # (N, words per image)
        best = per_slot.argmax(axis=1)
        concept = per_slot[np.arange(len(self)), best]
        reasons = {int(i): f"sees {self.vocabulary[int(self.word_ids[i, best[i]])]} ({concept[i]:.2f})"
                   for i in np.flatnonzero(concept > 0)}
        if not self.titled:
            return concept.astype(np.float32), reasons
        title = self.text_vectors @ query + lexical_weight * self._lexical(text, title_words, idf)
        for i in np.flatnonzero(title > concept_weight * concept):
            reasons[int(i)] = "title matches"
        return (title + concept_weight * concept).astype(np.float32), reasons

    def _lexical(self, text: str, title_words: str = TITLE_WORDS, idf: bool = TITLE_IDF) -> np.ndarray:
        """(N,) share of the query's words found among the words of each item's title, category or description
        (weighted by the words' inverse document frequency in this catalog when ``idf``)."""
        if title_words not in TITLE_WORD_MODES:
            raise ValueError(f"title_words is one of {', '.join(TITLE_WORD_MODES)}, not {title_words!r}")
        wanted = [_query_forms(w, title_words) for w in dict.fromkeys(_TOKEN.findall(text.lower()))]
        if not wanted:
            return np.zeros(len(self), np.float32)
        items = self._item_words(title_words)
        n = len(self)
        weight = [(math.log((n + 1) / (1 + sum(1 for words in items if forms & words))) / math.log(n + 1)) if idf
                  else 1.0 for forms in wanted]
        total = len(wanted)
        return np.array([sum(w for forms, w in zip(wanted, weight) if forms & words) / total for words in items],
                        np.float32)

    def _item_words(self, title_words: str) -> list[frozenset[str]]:
        """Each item's words as ``title_words`` reads them (computed once per catalog and mode)."""
        if title_words not in self._title_words:
            self._title_words[title_words] = [_item_forms(text, title_words) for text in self._texts]
        return self._title_words[title_words]

    def _word_match(self, text: str, query: np.ndarray, match_min: float) -> np.ndarray:
        """(vocabulary,) how well each concept word matches the query: 1 for a word typed, else scaled cosine."""
        cos = self.vocabulary_vectors @ query
        match = np.clip((cos - match_min) / (1.0 - match_min), 0.0, 1.0)
        for word in {f for t in _TOKEN.findall(text.lower()) for f in _query_forms(t, TITLE_WORDS)}:
            if word in self._word_index:
                match[self._word_index[word]] = 1.0
        return match.astype(np.float32)

    def _keep(self, categories: Optional[Sequence[str]], exclude: Sequence[str]) -> np.ndarray:
        unknown = sorted(set(categories or ()) - set(self.categories))
        if unknown:
            raise ValueError(f"Unknown category {', '.join(unknown)}; see the catalog's categories.")
        keep = self.index.mask({"category": list(categories)}) if categories else None
        keep = np.ones(len(self), bool) if keep is None else keep.copy()
        for row in map(self.index.find, exclude):
            if row is not None:
                keep[row] = False
        return keep

    def _top(self, scores: np.ndarray, keep: np.ndarray, k: int, reasons: dict[int, str], default: str) -> list[CatalogHit]:
        scores = np.where(keep, scores, -np.inf)
        k = min(k, int(keep.sum()))
        if k <= 0:
            return []
        rows = np.argpartition(-scores, k - 1)[:k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        return [self._hit(int(r), float(scores[r]), reasons.get(int(r), default)) for r in rows]

    def _hit(self, row: int, score: float, reason: str) -> CatalogHit:
        item = self.items[row]
        return CatalogHit(id=self.ids[row], row=row, score=score, title=item.get("title", ""),
                          category=item.get("category", ""), thumbnail=self.thumbnail(row), words=self.words_of(row),
                          reason=reason, attributes=dict(item.get("attributes", {})))

    def duplicate_groups(self) -> list[list[str]]:
        """Groups of near-identical images found at build time, as catalog ids."""
        return [[self.ids[r] for r in group] for group in self.manifest.get("duplicates", {}).get("groups", [])]


def _feedback_direction(liked: Optional[np.ndarray], disliked: Optional[np.ndarray],
                        weights: RocchioWeights) -> Optional[np.ndarray]:
    """The image-space direction of the feedback alone (toward the likes, away from the dislikes), or None."""
    try:
        return rocchio(None, liked, disliked, weights)
    except ValueError:  # nothing weighted on either side
        return None


def _moved(query: np.ndarray, liked: Optional[np.ndarray], disliked: Optional[np.ndarray],
           weights: RocchioWeights) -> np.ndarray:
    """The Rocchio query, or the query itself when the feedback cancels it out (a dislike of the photo searched)."""
    try:
        return rocchio(query, liked, disliked, weights)
    except ValueError:
        return query


@functools.lru_cache(maxsize=1024)
def _text_vector(text: str) -> np.ndarray:
    """A query's MiniLM vector, kept for the next searches with the same words (a like reruns the search)."""
    vector = get_text_encoder().encode([text])[0]
    vector.setflags(write=False)
    return vector


def _item_forms(text: str, mode: str) -> frozenset[str]:
    """The words of an item's text as a query word may match them (``TITLE_WORDS``)."""
    return frozenset(f for token in _TOKEN.findall(str(text).lower()) for f in _title_forms(token, mode))


@functools.lru_cache(maxsize=200_000)
def _query_forms(token: str, mode: str) -> frozenset[str]:
    """The forms of one query word: itself, its s-less plural and (unless ``plain``) its WordNet noun lemmas."""
    plain = frozenset(_words(token))
    if mode == "plain":
        return plain
    wn = _wordnet()
    return plain | frozenset(wn._morphy(token, "n")) if wn is not None else plain


@functools.lru_cache(maxsize=200_000)
def _title_forms(token: str, mode: str) -> frozenset[str]:
    """What one title word stands for: its forms and, in ``kinds`` mode, the single-word synonyms and
    hypernyms of its first common-noun sense (``_noun_sense``)."""
    forms = _query_forms(token, mode)
    sense = _noun_sense(token) if mode == "kinds" else None
    if sense is None:
        return forms
    out = set(forms)
    for synset in {sense, *sense.closure(lambda x: x.hypernyms())}:
        out.update(n for n in synset.lemma_names() if n.isalpha() and n.islower())
    return frozenset(out)


def _noun_sense(token: str):
    """The everyday noun sense of a title word, or None: WordNet's first sense (the most frequent) of its
    lemma, where the lemma is the irregular plural's base (men → man), else the word itself if WordNet has it
    (pliers, not plier: "one who plies"), else its regular lemma (churches → church). Proper-noun senses are
    skipped (Heron of Alexandria for "heron"): a catalog title's common word means the common thing."""
    wn = _wordnet()
    if wn is None:
        return None
    exceptions = wn._exception_map["n"].get(token)
    candidates = list(exceptions) if exceptions else [token, *wn._morphy(token, "n")]
    for lemma in candidates:
        sense = next((s for s in wn.synsets(lemma, "n") if lemma in s.lemma_names()), None)
        if sense is not None:
            return sense
    return None


@functools.lru_cache(maxsize=1)
def _wordnet():
    """WordNet (``core.concepts``), or None where it is not installed: words then match in ``plain`` mode."""
    # WordNet (nltk and its corpus) loads on the first word search, not when a catalog opens
    from core.concepts import wordnet
    from core.datasets import DataUnavailable

    try:
        return wordnet()
    except (DataUnavailable, OSError) as exc:
        log.warning("title words match without WordNet lemmas (%s)", exc)
        return None


def _words(text: str) -> list[str]:
    """Lower-case words of ``text``, a plural's final ``s`` dropped (``towers`` → ``tower``), for exact matching."""
    return [t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t
            for t in _TOKEN.findall(str(text).lower())]


def _read_json_list(path: Path) -> list:
    value = read_json(path)
    if not isinstance(value, list):
        raise ArtifactError(f"{path} is not a list; rebuild the catalog.")
    return value


# ----------------------------------------------------------------------------------------------
# the shelf of built catalogs


def folder_of(name: str) -> Path:
    """The folder of catalog ``name`` (a checked name, never raw user text)."""
    return catalogs_dir() / check_name(name)


def list_catalogs() -> list[dict]:
    """Every built catalog's manifest, newest first; damaged ones are listed with an ``error`` instead."""
    root = catalogs_dir()
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            out.append(read_manifest(folder))
        except ArtifactError as exc:
            out.append({"name": folder.name, "error": str(exc)})
    return sorted(out, key=lambda m: m.get("created", ""), reverse=True)


def catalog_names() -> list[str]:
    return [m["name"] for m in list_catalogs() if "error" not in m]


def version(name: str) -> Optional[float]:
    """The built catalog's manifest modification time (a cache key that changes on rebuild), or None."""
    path = folder_of(name) / "manifest.json"
    return path.stat().st_mtime if path.is_file() else None


_OPEN_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _open(name: str, built: float) -> BuiltCatalog:
    return BuiltCatalog(folder_of(name))


def open_catalog(name: str) -> BuiltCatalog:
    """A built catalog, loaded once per build (threads share it); ``CatalogError`` when there is none."""
    built = version(name)
    if built is None:
        raise CatalogError(f"There is no catalog named {name}; build one with `python -m core catalog add`.")
    with _OPEN_LOCK:
        return _open(name, built)


def remove_catalog(name: str) -> None:
    """Delete a built catalog's files: renamed away first, so no reader ever sees half a folder."""
    folder = folder_of(name)
    if not folder.is_dir():
        raise CatalogError(f"There is no catalog named {name}.")
    trash = folder.with_name(f".removing-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    with _OPEN_LOCK:
        _open.cache_clear()
