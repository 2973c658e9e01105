"""The order a person writes hashtags in: the subject first, then its family, then the rest; no near-duplicates.

A person posting a photo of a cow writes ``#cow #cattle #farm``, not ``#animal #cow #cows #holsteincow``. The
taggers' raw scores do not know that: a broad word such as #animal collects the mass of every animal class, so
it often outscores the specific word; plural and compound forms of one word (#tabby, #tabbycat; #horse,
#horses; #clock, #wallclock) take two of the five places the user sees; and the clip-art decoder's corpus
words (#cartoon, #household, #seasonal) describe Tux Paint, not photographs.

``order_tags`` applies four rules, in this order, to a ranked ``(tag, score, source)`` list:

1. **off photos**: on a picture the photo gate calls a real photo, the decoder's corpus-only words
   (``TUXPAINT_ONLY``) are dropped;
2. **collapse near-duplicates**: a tag whose key (``variant_key``: singular, American spelling) equals an
   earlier tag's, or that is an earlier tag inside a compound or the other way round (``#tabby`` and
   ``#tabbycat``), is dropped; the earlier, higher-ranked form stays;
3. **general words last**: ``GENERAL_WORDS`` (#animal, #object, #organism, #artifact …) move behind the specific
   tags shown with them (``general_out``: behind every candidate, out of the shown list);
4. **family second**: when the subject's family word (a broader word of the same concept, ``family(subject,
   word)``: #cattle for #cow, #tool for #hammer) is in the list, it moves right behind the subject.

The rules were chosen on the real-photo dev set's main subjects (``bench/checksets/realphotos_dev_subjects.csv``,
``python -m hashtag tune-order``); docs/hashtag.md has the numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from core.concepts import zipf

Fused = list[tuple[str, float, str]]

#: Words that name a whole kingdom or "a thing": true of nearly everything, so a person writes them last if at all.
GENERAL_WORDS = frozenset({
    "animal", "animals", "object", "objects", "organism", "artifact", "artefact", "thing", "things", "item",
    "entity", "creature", "being", "living", "mammal", "vertebrate", "invertebrate", "plant", "stuff",
    "product", "goods", "equipment", "device", "structure", "instrument", "article", "commodity", "material",
})

#: Words the default decoder learned from Tux Paint's folders and captions that describe the clip-art corpus
#: (its drawing style and its category folders), never a photograph's content.
TUXPAINT_ONLY = frozenset({"cartoon", "clipart", "household", "seasonal", "monument", "town"})

#: Shortest word that counts as "inside a compound" (shorter ones, such as #ox in #box, match by accident).
MIN_PART = 3
#: How common the rest of a compound must be to count as a word (Zipf 2.5: #tabby at 2.8 counts, "iness" does not).
PART_FLOOR = 2.5

_SPELLING = ((re.compile(r"our$"), "or"), (re.compile(r"([^aeiou])re$"), r"\1er"), (re.compile(r"ise$"), "ize"),
             (re.compile(r"yse$"), "yze"), (re.compile(r"grey"), "gray"))


def singular(word: str) -> str:
    """A plain English singular for comparison only (``horses`` → ``horse``, ``berries`` → ``berry``)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and re.search(r"(ch|sh|x|ss|zz)es$", word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def variant_key(tag: str) -> str:
    """What two spellings of one hashtag share: lower case, singular, American spelling (#colours → color)."""
    key = singular(tag.lower().replace("_", "").replace("-", ""))
    for pattern, repl in _SPELLING:
        key = pattern.sub(repl, key)
    return key


def near_duplicate(a: str, b: str, *, head: bool = True) -> bool:
    """Two tags that take one idea's place twice: the same ``variant_key``, or one is a part of the other's compound
    (``tabby``/``tabbycat``, ``wall``/``wallclock``): the rest of the compound must itself be an everyday word
    (wordfreq Zipf ≥ ``PART_FLOOR``, at least ``MIN_PART`` letters), so #bus and #business stay apart. ``head``:
    also when the shorter word is the compound's last part (``cat``/``tabbycat``, ``clock``/``wallclock``)."""
    ka, kb = variant_key(a), variant_key(b)
    if ka == kb:
        return True
    short, long_ = sorted((ka, kb), key=len)
    if len(short) < MIN_PART or len(long_) - len(short) < MIN_PART:
        return False
    if long_.startswith(short):
        return zipf(long_[len(short):]) >= PART_FLOOR
    if head and long_.endswith(short):
        return zipf(long_[:-len(short)]) >= PART_FLOOR
    return False


@dataclass(frozen=True)
class OrderRule:
    """Which of ``order_tags``'s rules apply (each can be switched off to measure it)."""

    collapse: bool = True
    #: Collapse a word with a compound that ends in it too (#cat with #tabbycat), not only one that starts with it.
    collapse_head: bool = True
    general_last: bool = True
    #: With ``general_last``: push general words behind every candidate, out of the shown top k (True), or only
    #: behind the specific words among the top k the ranking already shows (False: they stay when they earned a place).
    general_out: bool = False
    family_second: bool = True
    photo_words_only: bool = True
    #: Reorder only pictures the photo gate calls photos; on clip art the decoder's corpus order (category words
    #: first, #animal #bird) is what its own test split rewards.
    photos_only: bool = True

    def to_json(self) -> dict[str, bool]:
        return dict(self.__dict__)


#: Chosen with ``python -m hashtag tune-order`` on dev photos only (docs/hashtag.md): every rule except collapsing a
#: word into a compound that ends in it (#cat with #tabbycat, #clock with #wallclock), which cost dev F1@5
#: (0.124 → 0.105, below the concept tagger's 0.124, together with pushing general words out of the list).
ORDER = OrderRule(collapse_head=False)
#: The previous behaviour (the ranked list as the taggers left it), for comparisons.
NO_ORDER = OrderRule(False, False, False, False, False, False, False)


def order_tags(items: Sequence[tuple[str, float, str]], *, rule: OrderRule = ORDER, is_photo: bool = True,
               family: Optional[Callable[[str, str], bool]] = None, k: Optional[int] = None) -> Fused:
    """``items`` (best first) in the order a person writes them (module docstring); scores and sources kept.

    ``is_photo``: the photo gate's verdict (the decoder's corpus words are dropped only on photos);
    ``family(subject, word)``: whether ``word`` is a broader word for ``subject`` (``ConceptTagger.is_family``);
    ``k``: how many tags will be shown (general words stay among them unless ``rule.general_out``).
    """
    out = [tuple(x) for x in items]
    if rule.photos_only and not is_photo:  # clip art: the decoder learned its corpus's own order (#animal #bird)
        return [(str(t), float(s), str(src)) for t, s, src in out]
    if rule.photo_words_only and is_photo:
        out = [x for x in out if not (x[0] in TUXPAINT_ONLY and x[2] in ("learned", "baseline"))]
    if rule.collapse:
        kept: list = []
        for x in out:
            if not any(near_duplicate(x[0], k[0], head=rule.collapse_head) for k in kept):
                kept.append(x)
        out = kept
    if rule.general_last:
        cut = len(out) if rule.general_out or k is None else k
        head, tail = out[:cut], out[cut:]
        out = [x for x in head if x[0] not in GENERAL_WORDS] + [x for x in head if x[0] in GENERAL_WORDS] + tail
    if rule.family_second and family is not None and len(out) > 2:
        subject = out[0][0]
        fam = next((x for x in out[2:] if x[0] not in GENERAL_WORDS and family(subject, x[0])), None)
        if fam is not None and not family(subject, out[1][0]):
            out.remove(fam)
            out.insert(1, fam)
    return [(str(t), float(s), str(src)) for t, s, src in out]
