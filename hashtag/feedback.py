"""Hashtag feedback: keep a user's final tag list with their image, and train on those pairs.

Why: a tag a user removes was wrong and a tag they add was missing; both are exactly the labels the model
lacks. ``record_tag_edits`` stores the picture (content-addressed, size-capped, under ``data/feedback/``)
with the final list and logs each accepted / removed / added tag as an event. A stored edit waits in the
review list until an administrator accepts or rejects it (``review_edit``: one person's labels must not
steer everyone's model unchecked); ``python -m hashtag train --with-feedback`` then adds every *accepted*
(image, final tags) pair to training as its own split ("user"),
adds tags users introduced to the vocabulary, and records in the model's manifest how many pairs came
from users. Validation and test stay the dataset's own, so scores remain comparable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
from PIL import ImageOps

from core.artifacts import checksum_strings
from core.feedback import FeedbackError, FeedbackStore, TaggedImageRecord, normalize_tags
from core.identity import Identity
from core.images import ImageSource, load_image
from hashtag.data import HashtagDataset, Vocab

log = logging.getLogger(__name__)

TAB = "hashtag"
SPLIT = "user"


def record_tag_edits(store: FeedbackStore, profile: str, image: ImageSource, suggested: Iterable[str],
                     final: Iterable[str], model_version: Optional[str] = None) -> TaggedImageRecord:
    """Store the image with the user's ``final`` tags and log what they did to the ``suggested`` ones.

    Every suggested tag the user kept is ``tag_accepted``, every one they dropped ``tag_removed``, every new
    one ``tag_added``; the events are keyed by the stored image's sha256.
    """
    suggested_tags, final_tags = normalize_tags(suggested), normalize_tags(final)
    record = store.store_tagged_image(profile, image, final_tags, model_version=model_version)
    for tag in suggested_tags:
        signal = "tag_accepted" if tag in final_tags else "tag_removed"
        store.record(profile, TAB, record.sha256, signal, value=tag, model_version=model_version)
    for tag in final_tags:
        if tag not in suggested_tags:
            store.record(profile, TAB, record.sha256, "tag_added", value=tag, model_version=model_version)
    return record


def pending_edits(store: FeedbackStore) -> list[TaggedImageRecord]:
    """Stored tag edits nobody has reviewed yet, oldest first (the review list)."""
    return store.tagged_images(review="pending")


def review_edit(store: FeedbackStore, image_id: int, decision: str, reviewer: Identity,
                permission: tuple[bool, str]) -> str:
    """Accept or reject one stored tag edit; ``permission`` is ``core.identity.may_run_heavy`` for the reviewer,
    taken at the moment of the decision, and a refusal writes nothing."""
    allowed, why = permission
    if not allowed:
        raise FeedbackError(why or "Only administrators may review tag edits.")
    return store.review_tag_edit(image_id, decision, reviewer.key or "this-machine")


@dataclass
class FeedbackPairs:
    """Users' (image, final tags) pairs to train on; ``key`` identifies them in the model's run key."""

    records: list[TaggedImageRecord]
    database: str
    new_tags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "/user:" + checksum_strings(f"{r.sha256}|{' '.join(r.tags)}" for r in self.records)

    def summary(self) -> dict[str, Any]:
        return {"split": SPLIT, "user_pairs": len(self.records), "profiles": len({r.profile for r in self.records}),
                "imports": sorted({r.batch for r in self.records if r.batch is not None}),
                "edits": sum(r.batch is None for r in self.records), "checksum": self.key.split(":", 1)[1],
                "new_tags": self.new_tags,
                "database": self.database}

    def extend(self, ds: HashtagDataset, encoder, grids: np.ndarray, flips: Optional[np.ndarray],
               samples: list[int], tokens: dict[int, list[int]], max_tags: int
               ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Append the pairs' encoder grids after the dataset's rows, and their rows to ``samples`` / ``tokens``."""
        if not self.records:
            return grids, flips
        images = [load_image(r.path) for r in self.records]
        user = encoder.grid(images).astype(grids.dtype)
        grids = np.concatenate([grids, user])
        if flips is not None:
            flips = np.concatenate([flips, encoder.grid([ImageOps.mirror(im) for im in images]).astype(flips.dtype)])
        first = len(ds.examples)
        for j, record in enumerate(self.records):
            samples.append(first + j)
            tokens[first + j] = ds.vocab.encode(record.tags, max_tags)
        log.info("training on %d user pairs (split %r) beside %d dataset images", len(self.records), SPLIT, first)
        return grids, flips


def load_feedback_pairs(ds: HashtagDataset, store: Optional[FeedbackStore] = None) -> FeedbackPairs:
    """Every accepted stored tagged image with at least one tag; tags users introduced join ``ds.vocab``
    (in memory). Pending and rejected edits are never trained on."""
    store = store or FeedbackStore.open()
    records = []
    for record in store.tagged_images(review="accepted"):
        try:
            store.image_path(record.sha256)
        except FeedbackError:
            continue
        if record.tags:
            records.append(record)
    known = set(ds.vocab.tags)
    new_tags: list[str] = []
    for record in records:
        new_tags += [t for t in record.tags if t not in known and t not in new_tags]
    if new_tags:
        ds.vocab = Vocab(ds.vocab.tags + new_tags, dict(ds.vocab.counts))
    return FeedbackPairs(records, store.url, new_tags)
