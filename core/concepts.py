"""ImageNet concepts climbed up WordNet: everyday words for what an ImageNet classifier sees.

Every registered backbone ends in a 1,000-way ImageNet head. Each output is a WordNet 3.0 noun synset
(timm ships the ids in output order: ``n02106662`` is German shepherd), and WordNet's hypernym chain
turns a breed into words people use: German shepherd → shepherd dog → dog → … → animal. This module
builds that table once per process and turns class probabilities into scored words; the Hashtags tab
makes hashtags of them, a built catalog names untitled photos with them, and the Fashion tab's garment
guard (``fashion.guard``) asks how much of a photo's mass sits under clothing.

Why each piece:

* **WordNet from Debian's ``wordnet-base``** (``/usr/share/wordnet``), read with nltk's
  ``WordNetCorpusReader``. Three things stand in the way and are handled in ``wordnet()``: nltk's path
  sandbox only opens folders on ``nltk.data.path`` (the files are copied into a private folder that is
  added there), the Debian package has no ``lexnames`` file (the standard 45 lines are written), and
  the reader's constructor maps WordNet versions through nltk's own corpus (``map_wn`` is disabled:
  we only ever use 3.0 offsets).
* **wordfreq** (its data ships in the wheel) separates everyday words (dog 5.1) from taxonomy jargon
  (placental 2.6, chordate 1.3): a floor on the Zipf frequency keeps what people would type.
* **Scores are probability mass**: a word's score is the summed probability of every class under it,
  so "dog" is confident when the classifier hesitates between five breeds.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from core.artifacts import ArtifactError, read_json, write_json
from core.datasets import DataUnavailable
from core.encoders import ENCODER_CACHE

log = logging.getLogger(__name__)

WORDNET_PACKAGE = "wordnet-base"
#: Where Debian's wordnet-base puts WordNet 3.0; RECS_WORDNET_DIR points elsewhere (another install, tests).
WORDNET_DIR = Path(os.environ.get("RECS_WORDNET_DIR", "/usr/share/wordnet"))
_WORDNET_FILES = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj", "data.adv",
                  "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")

#: WordNet's 45 lexicographer files, in their fixed numbering (Debian's package leaves this file out).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)

#: Nodes too abstract to be a hashtag even though their words are common ("object", "whole", "thing").
ABSTRACT = frozenset({
    "entity.n.01", "physical_entity.n.01", "abstraction.n.06", "object.n.01", "whole.n.02", "thing.n.12",
    "organism.n.01", "living_thing.n.01", "artifact.n.01", "instrumentality.n.03", "matter.n.03",
    "causal_agent.n.01", "part.n.02", "relation.n.01", "group.n.01", "unit.n.03", "psychological_feature.n.01",
    "attribute.n.02", "measure.n.02", "communication.n.02", "event.n.01", "act.n.02", "container.n.01",
    "device.n.01", "structure.n.01", "covering.n.02", "commodity.n.01", "implement.n.01", "equipment.n.01",
    "substance.n.07", "substance.n.01", "solid.n.01", "food.n.01", "natural_object.n.01", "creation.n.02",
    "product.n.02", "article.n.02", "system.n.01", "way.n.06", "location.n.01", "region.n.03",
    "geological_formation.n.01", "conveyance.n.03", "vessel.n.03", "instrument.n.01", "vertebrate.n.01",
    "chordate.n.01", "invertebrate.n.01", "placental.n.01", "carnivore.n.01", "ungulate.n.01",
    "even-toed_ungulate.n.01", "odd-toed_ungulate.n.01", "arthropod.n.01", "mollusk.n.01", "herb.n.01",
    "vascular_plant.n.01", "woody_plant.n.01", "self-propelled_vehicle.n.01", "wheeled_vehicle.n.01",
    "craft.n.02", "consumer_goods.n.01", "durables.n.01", "electronic_equipment.n.01", "mechanism.n.05",
    "protective_covering.n.01", "surface.n.01", "area.n.05", "room.n.01", "establishment.n.04",
    "facility.n.01", "obstruction.n.01", "support.n.10", "restraint.n.06", "fastener.n.02", "foodstuff.n.02",
    "produce.n.01", "edible_fruit.n.01", "vegetable.n.01", "reproductive_structure.n.01", "fruit.n.01",
    "clothing.n.01", "ware.n.01", "form.n.03", "material.n.01", "elevation.n.08", "depression.n.08",
    "stand.n.04", "framework.n.03", "machine.n.01", "liquid.n.01", "fluid.n.01", "sphere.n.05", "shelter.n.01",
    "cover.n.01", "barrier.n.01", "gear.n.04", "rig.n.01", "sheet.n.06", "screen.n.05", "line.n.18",
    "body_part.n.01", "plant_part.n.01", "game_equipment.n.01", "sports_equipment.n.01", "nutriment.n.01",
    "dish.n.02", "beverage.n.01", "drug.n.01", "worker.n.01", "adult.n.01", "person.n.01", "building.n.01",
    "toiletry.n.01", "decoration.n.01", "footwear.n.02", "headdress.n.01", "garment.n.01",
})

#: Words that WordNet reaches through senses nobody means in a photo caption ("elevation", "depression"
#: above a mountain and a valley; "form", "part", "material" above almost anything).
ABSTRACT_WORDS = frozenset({
    "elevation", "depression", "form", "part", "material", "stand", "instrument", "surface", "arm", "top", "bar",
    "fare", "institution", "housing", "residence", "wear", "ware", "cover", "shade", "fluid", "liquid", "framework",
    "support", "device", "structure", "container", "covering", "object", "whole", "thing", "unit", "matter",
    "substance", "solid", "artifact", "organism", "being", "system", "way", "line", "means", "rod", "implement",
    "mechanism", "equipment", "protection", "shelter", "barrier", "enclosure", "establishment", "facility",
    # senses reached through a rare meaning: "agent" (a drug), "piece" (a game piece), "rule" (a ruler),
    # "wind" (wind instruments), "spring" (a metal spring), "works" (a factory), "string", "post", "staff"...
    "agent", "piece", "round", "rule", "measure", "pick", "vertical", "defense", "string", "wind", "spring",
    "filter", "post", "staff", "works", "tool", "stick", "memorial", "ear", "kernel",
})

#: Frequency floor for hypernym words and for class names (Zipf scale: 3 ≈ once per million words). The
#: hypernym floor is chosen on the real-photo dev set (``python -m hashtag tune-fusion``): 3.5 drops the
#: taxonomy words people do not post (mammal 3.3, feline 3.1, canine 3.3, equine 3.1, primate 3.1) and keeps
#: cat, dog, horse, bird, animal, vehicle.
WORD_FLOOR = 3.5
NAME_FLOOR = 2.0


class WordNetUnavailable(DataUnavailable):
    """WordNet 3.0 is not on this machine; the message names the Debian package that provides it."""


def _missing_wordnet(source: Path) -> WordNetUnavailable:
    return WordNetUnavailable(
        f"WordNet 3.0 is not installed ({source / 'data.noun'} is missing). Concept hashtags need the Debian "
        f"package {WORDNET_PACKAGE}: `apt-get install -y --no-install-recommends {WORDNET_PACKAGE}` "
        f"(or run scripts/system-packages.sh); RECS_WORDNET_DIR may point at another WordNet 3.0 folder."
    )


def _private_copy(source: Path) -> Path:
    """The WordNet files plus ``lexnames`` in a folder of our own (nltk refuses folders it does not know)."""
    target = ENCODER_CACHE / "wordnet-3.0"  # beside the other caches derived from shipped files
    sizes = {name: (source / name).stat().st_size for name in _WORDNET_FILES}
    if (target / "lexnames").is_file() and all(
        (target / n).is_file() and (target / n).stat().st_size == s for n, s in sizes.items()
    ):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    for name in _WORDNET_FILES:
        shutil.copyfile(source / name, tmp / name)
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{_pos_id(name)}\n"
                                          for i, name in enumerate(LEXNAMES)))
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished its copy first: use that one
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pos_id(lexname: str) -> int:
    """The syntactic category number WordNet's ``lexnames`` gives each file (1 noun, 2 verb, 3 adj, 4 adv)."""
    return {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[lexname.split(".")[0]]


@functools.lru_cache(maxsize=2)
def wordnet(source: Optional[str] = None):
    """nltk's WordNet reader over Debian's WordNet 3.0 (loaded once per process, about two seconds)."""
    # nltk takes seconds to import; only the WordNet table needs it
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = Path(source) if source else WORDNET_DIR
    if not all((folder / name).is_file() for name in _WORDNET_FILES):
        raise _missing_wordnet(folder)
    copy = _private_copy(folder)
    if str(copy.parent) not in nltk.data.path:
        nltk.data.path.append(str(copy.parent))

    class _WordNet30(WordNetCorpusReader):
        def map_wn(self, version: str = "3.0"):  # only WordNet 3.0 offsets are used: no version map
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": we do not use them
        warnings.simplefilter("ignore")
        return _WordNet30(str(copy), None)


@functools.lru_cache(maxsize=1)
def imagenet_synset_ids() -> list[str]:
    """The 1,000 WordNet ids (``n02106662``…) of an ImageNet-1k head, in output order (shipped in timm)."""
    # timm (torch models) takes seconds to import; only the path of its shipped synset list is read
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt"
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(ids) != 1000:
        raise DataUnavailable(f"{path} lists {len(ids)} ImageNet classes, expected 1000 (reinstall timm).")
    return ids


def word_of(lemma: str) -> str:
    """A WordNet lemma as a hashtag word: ``German_shepherd`` → ``germanshepherd``."""
    return re.sub(r"[^0-9a-z]+", "", lemma.lower())


@functools.lru_cache(maxsize=50_000)
def zipf(phrase: str) -> float:
    """wordfreq's Zipf frequency of an English word or phrase (``_`` read as a space)."""
    # wordfreq takes about half a second to import; only this frequency lookup needs it
    from wordfreq import zipf_frequency

    return float(zipf_frequency(phrase.replace("_", " "), "en"))


@dataclass(frozen=True)
class ConceptTable:
    """Which words each ImageNet class supports.

    ``words[j]`` is a hashtag word; ``support`` is a (1000, W) 0/1 matrix (class i supports word j);
    ``depth[j]`` is how far the word sits above the classes it covers (0 = a class's own name), used to
    prefer specific words among equally likely ones; ``frequency[j]`` its Zipf frequency.
    """

    words: tuple[str, ...]
    support: np.ndarray
    depth: np.ndarray
    frequency: np.ndarray
    class_names: tuple[str, ...]

    @property
    def breadth(self) -> np.ndarray:
        """(W,) how many ImageNet classes each word covers (#animal ≈ 400, #cat a handful)."""
        return self.support.sum(axis=0)

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, 1000) class probabilities → (N, W) word scores (the mass of the classes under each word)."""
        return np.asarray(probabilities, np.float32) @ self.support


#: Bump when the cached class → word facts change shape or meaning.
_FACTS_VERSION = 3

#: A hypernym's word is used only when this node is among the word's ``MAX_SENSE`` most frequent noun senses
#: (WordNet numbers senses by frequency) or is the node's own first lemma: "coach" is bus only in its 5th sense,
#: "house" a theater in its 11th, "cycle" a bicycle in its 6th, "cat" a big cat in its 7th. Chosen on the
#: real-photo dev set (``python -m hashtag tune-fusion``).
MAX_SENSE = 2


def _naming_lemmas(wn, node) -> list[tuple[str, int]]:
    """The single-word lemmas of ``node`` that name it, each with its sense number (1 = the node is its own name).

    Left out: multi-word lemmas (their words come from other nodes), and a single word that is the modifier
    of a compound lemma listed before it ("toy" after toy_dog, "springer" after springer_spaniel): it is a
    clipping of the compound's name, and on its own it means something else (but "plant" of plant, flora,
    plant_life stays). The sense number
    is 1 when the lemma is the node's first (its name), else the node's position among the word's noun senses.
    """
    names = [lm.name() for lm in node.lemmas()]
    out = []
    for i, name in enumerate(names):
        # a modifier of a compound listed before it: the compound is the name, the word a clipping
        modifiers = {part.lower() for earlier in names[:i] for part in re.split(r"[_-]", earlier)[:-1]}
        if "_" in name or "-" in name or name.lower() in modifiers:
            continue
        senses = [s.name() for s in wn.synsets(name, "n")]
        sense = 1 if i == 0 else (senses.index(node.name()) + 1 if node.name() in senses else 99)
        out.append((name, sense))
    return out


def _facts_path() -> Path:
    """Next to the exported encoder graphs: like them, a pure function of shipped files, safe to share."""
    return ENCODER_CACHE / f"imagenet_wordnet-v{_FACTS_VERSION}.json"


@functools.lru_cache(maxsize=1)
def class_facts() -> dict:
    """What WordNet says about each ImageNet class, computed once per machine and cached as JSON.

    Walking 1,000 hypernym closures through nltk takes about a minute on a busy 2-core machine, so the
    result (per class: its lemmas, and every named ancestor's single words with their distance, frequency,
    synset and sense) is written next to the encoder cache (``models/encoders/``) and keyed by the WordNet files'
    sizes and the class list; frequency floors are applied later, so tuning them needs no WordNet.
    """
    ids = imagenet_synset_ids()
    key = {"version": _FACTS_VERSION, "classes": ids[0] + ids[-1] + str(len(ids)),
           "wordnet": {n: (WORDNET_DIR / n).stat().st_size for n in ("data.noun", "index.noun")
                       if (WORDNET_DIR / n).is_file()}}
    path = _facts_path()
    if path.is_file():
        try:
            cached = read_json(path)
            if cached.get("key") == key:
                return cached
        except (ArtifactError, ValueError, KeyError):
            log.warning("rebuilding the corrupt concept cache %s", path)
    wn = wordnet()
    classes = []
    for wnid in ids:
        synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
        ancestors = _ancestors(synset)
        lemmas = [lm.name() for lm in synset.lemmas()]
        words = []
        for distance, node in ancestors:
            for lemma, sense in _naming_lemmas(wn, node):
                words.append([word_of(lemma), distance, round(zipf(lemma), 2), node.name(), sense])
        classes.append({
            "synset": synset.name(),
            "lemmas": [[lm, round(zipf(lm), 2)] for lm in lemmas],
            "ancestors": words,
        })
    facts = {"key": key, "classes": classes}
    write_json(path, facts)
    return facts


@functools.lru_cache(maxsize=16)
def concept_table(word_floor: float = WORD_FLOOR, name_floor: float = NAME_FLOOR,
                  max_sense: int = MAX_SENSE) -> ConceptTable:
    """The class → word table for frequency floors and a sense limit (built from the cached WordNet facts).

    A hypernym gives its most frequent single-word lemma that names it (``_naming_lemmas``: sense number ≤
    ``max_sense``, or the synset's own first lemma) when that word's Zipf is ≥ ``word_floor``; nothing when
    its most frequent lemma of all is one of ``ABSTRACT_WORDS``.
    """
    word_index: dict[str, int] = {}
    freq: dict[str, float] = {}
    rows: list[list[tuple[int, int]]] = []
    names: list[str] = []
    for cls in class_facts()["classes"]:
        names.append(cls["lemmas"][0][0].replace("_", " "))
        entries: list[tuple[int, int]] = []
        own = next(((lm, z) for lm, z in cls["lemmas"] if z >= name_floor), None)
        if own:
            w = word_of(own[0])
            freq.setdefault(w, own[1])
            entries.append((word_index.setdefault(w, len(word_index)), 0))
        lemmas: dict[str, list[tuple[float, str, int, int]]] = {}
        for word, distance, z, node, sense in cls["ancestors"]:
            if node not in ABSTRACT:
                lemmas.setdefault(node, []).append((z, word, distance, sense))
        for candidates in lemmas.values():
            if max(candidates)[1] in ABSTRACT_WORDS:  # the node's usual word is a sense nobody means here
                continue
            named = [c for c in candidates if c[3] <= max_sense]  # words that mean this node
            if not named or max(named)[0] < word_floor:
                continue
            z, word, distance, _ = max(named)
            freq.setdefault(word, z)
            entries.append((word_index.setdefault(word, len(word_index)), distance))
        rows.append(entries)
    support = np.zeros((len(rows), len(word_index)), np.float32)
    depth = np.full(len(word_index), 99, np.int32)
    for i, entries in enumerate(rows):
        for j, d in entries:
            support[i, j] = 1.0
            depth[j] = min(depth[j], d)
    words = tuple(sorted(word_index, key=word_index.get))
    frequency = np.array([freq[w] for w in words], np.float32)
    return ConceptTable(words, support, depth, frequency, tuple(names))


#: How per-region class probabilities are pooled over the grid's cells (``class_probabilities``).
CELL_POOLS = ("max", "top3", "mean")


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def class_probabilities(encoder, grids: np.ndarray, *, local: float = 0.0, pool: str = "max") -> np.ndarray:
    """(N, C, h, w) grids → (N, 1000) ImageNet class weights that also see objects off the photo's centre.

    The classifier's own output is the linear head on the average-pooled grid: one dominant object wins
    and a bicycle beside a dog fades. The same head applied to each of the grid's cells (the numbers a
    class activation map draws) gives per-region probabilities; pooled over cells (``max``: the best cell,
    ``top3``: the mean of the three best, ``mean``) and mixed in with share ``local``, every object that fills
    a region contributes. It reuses the grid already computed: no second forward pass (49 cells × the head,
    about 60 M multiply-adds per photo).
    """
    if pool not in CELL_POOLS:
        raise ValueError(f"Unknown cell pooling {pool!r}; choose one of {', '.join(CELL_POOLS)}.")
    g = np.asarray(grids, np.float32)
    weight, bias = encoder._head
    overall = _softmax(g.mean(axis=(2, 3)) @ weight.T + bias, 1)
    if local <= 0.0 or g.shape[0] == 0:
        return overall.astype(np.float32)
    cells = _softmax(np.einsum("nchw,kc->nhwk", g, weight).reshape(g.shape[0], -1, weight.shape[0]) + bias, 2)
    if pool == "mean":
        pooled = cells.mean(axis=1)
    else:
        top = np.sort(cells, axis=1)[:, ::-1]
        pooled = top[:, 0] if pool == "max" else top[:, :3].mean(axis=1)
    return ((1.0 - local) * overall + local * pooled).astype(np.float32)


def _ancestors(synset) -> list[tuple[int, object]]:
    """Every hypernym (and instance hypernym) of ``synset`` with its shortest distance, nearest first."""
    seen: dict[str, tuple[int, object]] = {}
    frontier = [synset]
    distance = 0
    while frontier:
        distance += 1
        nxt = []
        for node in frontier:
            for parent in node.hypernyms() + node.instance_hypernyms():
                if parent.name() not in seen:
                    seen[parent.name()] = (distance, parent)
                    nxt.append(parent)
        frontier = nxt
    return sorted(seen.values(), key=lambda x: x[0])
