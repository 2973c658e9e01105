"""The trained "up next" artifact as the app and the CLI use it: a Caser model plus the sequences it reads.

Why a bundle: the app must answer "what comes next for this listener?" from ``models/`` alone (no
dataset folder, no retraining per click). One bundle per dataset holds

* ``next_<dataset>.keras`` + ``.json`` — the network and its manifest (config, item ids, titles,
  artists, user ids, dataset checksum, validation score);
* ``next_<dataset>_seq.npz`` + ``.json`` — every user's baskets (for "their latest items" and for the
  session-kNN shown beside the CNN), saved with ``core.artifacts.save_arrays`` (no pickle).

``music.next.train.train_bundle`` builds it; ``NextBundle`` reads it back; ``recommend`` answers for a
known user or for a hand-built sequence, with a reason per item. The session-kNN shown beside the CNN
is built on first use, once, under a lock (the app serves several sessions from one cached bundle).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core import artifacts
from core.artifacts import ArtifactError, load_arrays
from music.next import caser, model
from music.next.baselines import SessionKNN
from music.next.data import PAD, last_items, sequences_from_arrays

log = logging.getLogger(__name__)

HINT = "python -m music train-next --dataset {dataset}"


def bundle_stem(dataset: str) -> Path:
    """``models/music/next_<dataset>`` (read at call time so tests can point MODELS_DIR elsewhere)."""
    return Path(artifacts.MODELS_DIR) / "music" / f"next_{dataset}"


@dataclass
class NextPick:
    """One predicted next item, as the CLI prints it and the app shows it."""

    item: str
    title: str
    artist: str
    score: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "title": self.title, "artist": self.artist, "score": round(self.score, 4),
                "reason": self.reason}


# ----------------------------------------------------------------------------------------------
# using it


class UnknownListener(KeyError):
    """The user id is not in the bundle."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown user"


class NextBundle:
    """A loaded "up next" model with its sequences; answers for users or hand-built sequences."""

    def __init__(self, dataset: str) -> None:
        stem = bundle_stem(dataset)
        hint = HINT.format(dataset=dataset)
        self.model, self.cfg, self.manifest = model.load(stem, hint=hint)
        arrays, seq_manifest = load_arrays(stem.with_name(stem.name + "_seq"), kind="music-next-sequences", hint=hint)
        if seq_manifest.get("dataset_checksum") != self.manifest.get("dataset_checksum"):
            raise ArtifactError(f"the 'up next' model and its sequences for {dataset} disagree; rebuild with `{hint} --force`")
        self.seqs = sequences_from_arrays(arrays, seq_manifest)
        self.dataset = dataset
        self.titles: list[str] = list(self.manifest["titles"])
        self.artists: list[str] = list(self.manifest["artists"])
        self.cnn = caser.CaserNext(self.cfg)
        self.cnn.model = self.model
        self.cnn.seqs = self.seqs
        self._knn: SessionKNN | None = None
        self._knn_lock = threading.Lock()

    @property
    def knn(self) -> SessionKNN:
        """Session-kNN over all of the bundle's sessions, built once on first use (a second or two).

        Why the lock: the app shares one loaded bundle between its sessions; two first clicks at
        once must not both build it, nor either read a half-fitted one.
        """
        if self._knn is None:
            with self._knn_lock:
                if self._knn is None:
                    upto = np.array([len(b) for b in self.seqs.baskets])
                    self._knn = SessionKNN(k=100, window=self.cfg.L).fit(self.seqs, upto)
        return self._knn

    def label(self, item: int) -> str:
        i = int(item) - 1
        artist = self.artists[i]
        return f"{self.titles[i]} — {artist}" if artist else self.titles[i]

    def search_items(self) -> list[str]:
        """Item ids, most played first (for the hand-built sequence picker)."""
        counts = np.bincount(np.concatenate([self.seqs.flat(u) for u in range(self.seqs.n_users)] or [np.zeros(0, np.int64)]),
                             minlength=self.seqs.n_items + 1)
        order = np.argsort(-counts[1:], kind="stable") + 1
        return [self.seqs.item_id(i) for i in order]

    def history(self, user: str) -> np.ndarray:
        u = self.seqs.user_index(user)
        if u < 0:
            raise UnknownListener(f"user {user!r} is not in the {self.dataset} 'up next' model")
        return self.seqs.flat(u)

    def recommend(self, *, user: str | None = None, items: Sequence[str] | None = None, top: int = 10,
                  method: str = "cnn") -> list[NextPick]:
        """Top next items for ``user`` (from their latest items) or for a hand-built ``items`` sequence.

        ``method`` is ``cnn`` (the bundle's Caser; reason = the input position and filter group that
        drove the score) or ``session_knn`` (reason = the nearest training session).
        """
        if items is not None:
            hist = np.array([self.seqs.item_index(i) for i in items], np.int32)
            unknown = [i for i, h in zip(items, hist) if h == PAD]
            if unknown:
                raise ValueError(f"unknown item id(s): {', '.join(map(str, unknown[:5]))}")
            u = -1
        elif user is not None:
            hist = self.history(user)
            u = self.seqs.user_index(user)
        else:
            raise ValueError("give a user or a sequence of items")
        if len(hist) == 0:
            raise ValueError("the sequence is empty: pick at least one item")
        rec = self.cnn if method == "cnn" else self.knn
        # a hand-built sequence wants what comes after it, not its own items back
        exclude = bool(self.manifest.get("exclude_seen")) or items is not None
        picks = rec.recommend(u, top, exclude, history=hist, name=self.label)
        return [NextPick(self.seqs.item_id(i), self.titles[i - 1], self.artists[i - 1], s, reason)
                for i, s, reason in picks]

    def explain(self, *, user: str | None = None, items: Sequence[str] | None = None, item: str) -> dict[str, Any]:
        """The CNN's attribution for one item: score drop per input position and per filter group."""
        hist = self.history(user) if user is not None else np.array([self.seqs.item_index(i) for i in items or []], np.int32)
        u = self.seqs.user_index(user) if user is not None else -1
        u = u if u >= 0 else self.cnn.n_users_fallback()
        seq = last_items(hist, self.cfg.L)
        ex = caser.attribution(self.model, u, seq, self.seqs.item_index(item), hist)
        ex["inputs"] = [self.label(i) if i != PAD else "(empty)" for i in seq]
        return ex
