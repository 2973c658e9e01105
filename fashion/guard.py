"""The Fashion tab's garment guard: does an upload look like clothing, shoes, a bag or an accessory?

Every registered backbone ends in a 1,000-way ImageNet head, and WordNet places each ImageNet class under
its hypernyms (``core.concepts``). The classes under the clothing, footwear, bag and accessory branches are
"garments"; the share of a photo's class probability on them is its garment mass, and below
``GARMENT_THRESHOLD`` the tab warns that the photo does not look like a garment (the results stay: they are
still the catalog items that look most alike).

Why a cache keyed on the image's content: the check is a second CNN pass over the upload, and the tab asks for
it on every rerun of the page (each like, each change of a filter) with the same photo. The answer depends only
on the pixels, so one pass per distinct photo is enough.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.concepts import class_facts
from core.datasets import DataUnavailable
from core.encoders import get_image_encoder, imagenet_categories
from core.images import ImageSource, load_image

log = logging.getLogger(__name__)

#: WordNet branches that make a photo "a garment" (clothing, shoes, bags, accessories). Each has a one-word
#: name, so it appears among the named hypernyms ``core.concepts.class_facts`` records for every class.
GARMENT_ROOTS = ("clothing.n.01", "footwear.n.01", "footwear.n.02", "bag.n.04", "bag.n.01", "purse.n.01",
                 "accessory.n.01", "headdress.n.01", "jewelry.n.01", "mask.n.04", "glove.n.02", "spectacles.n.01",
                 "sunglasses.n.01")

#: Below this garment mass an upload "does not look like a garment": the best balanced accuracy on the 48 Tux
#: Paint clothes stamps against the 902 other stamps (``python bench/garment_threshold.py``; 75 % of clothes
#: pass, 86 % of the rest are flagged; docs/hashtag.md).
GARMENT_THRESHOLD = 0.08

#: Distinct photos whose answer is kept (a few per person at a time; an answer is a few hundred bytes).
CACHE_SIZE = 256


@functools.lru_cache(maxsize=1)
def garment_classes() -> np.ndarray:
    """(1000,) 0/1: ImageNet classes that are, or sit under, one of ``GARMENT_ROOTS`` in WordNet."""
    roots = set(GARMENT_ROOTS)
    return np.array([float(c["synset"] in roots or any(a[3] in roots for a in c["ancestors"]))
                     for c in class_facts()["classes"]], np.float32)


def garment_mass(probabilities: np.ndarray) -> np.ndarray:
    """(N, 1000) ImageNet probabilities → (N,) share of the mass on clothing/footwear/bag/accessory classes."""
    return np.asarray(probabilities, np.float32) @ garment_classes()


@dataclass(frozen=True)
class GarmentCheck:
    """Whether an upload looks like a garment: its garment mass and the ImageNet classes it resembles most."""

    is_garment: bool
    mass: float
    top_classes: tuple[str, ...] = ()
    note: str = ""

    @property
    def warning(self) -> str:
        """The sentence the Fashion tab shows above its results when the upload is not a garment."""
        seen = ", ".join(self.top_classes[:3])
        return (f"This does not look like a garment (only {self.mass:.0%} of the classifier's confidence is on "
                f"clothing, shoes, bags or accessories; it sees: {seen}). The results below are the catalog "
                f"items that look most alike anyway.")


def classify(image: ImageSource, threshold: float = GARMENT_THRESHOLD,
             backbone: str = "efficientnet_lite0") -> GarmentCheck:
    """Classify one image with the shipped ImageNet encoder and compare its garment mass to ``threshold``.

    Never raises for a missing WordNet: the tab still works, just without the guard (``note`` says why).
    """
    encoder = get_image_encoder(backbone)
    probs = encoder.grid_probabilities(encoder.grid([image]))[0]
    try:
        mass = float(garment_mass(probs[None])[0])
    except DataUnavailable as exc:
        log.warning("garment check skipped: %s", exc)
        return GarmentCheck(True, float("nan"), note=str(exc))
    labels = imagenet_categories()
    top = tuple(labels[i] for i in np.argsort(-probs)[:3])
    return GarmentCheck(mass >= threshold, mass, top)


def content_key(image: ImageSource) -> str:
    """A SHA-1 of the decoded pixels (with mode and size): equal for the same photo however it was passed."""
    pixels = image if isinstance(image, Image.Image) else load_image(image)
    return hashlib.sha1(pixels.tobytes() + repr((pixels.mode, pixels.size)).encode()).hexdigest()


_answers: OrderedDict[tuple[str, float, str], GarmentCheck] = OrderedDict()
_answers_lock = threading.Lock()


def garment_check(image: ImageSource, threshold: float = GARMENT_THRESHOLD,
                  backbone: str = "efficientnet_lite0") -> GarmentCheck:
    """``classify``, run once per distinct photo (keyed on its content, shared by every session).

    A bad image raises ``core.images.ImageError`` as the search of the same upload does.
    """
    key = (content_key(image), float(threshold), backbone)
    with _answers_lock:
        if key in _answers:
            _answers.move_to_end(key)
            return _answers[key]
    answer = classify(image, threshold, backbone)
    if not answer.note:  # a missing WordNet may be installed later: do not remember the skipped check
        with _answers_lock:
            _answers[key] = answer
            while len(_answers) > CACHE_SIZE:
                _answers.popitem(last=False)
    return answer
