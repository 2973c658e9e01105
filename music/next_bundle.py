"""The trained "up next" artifact the app and the CLI use: a Caser model plus the sequences it reads.

Why a bundle: the app must answer "what comes next for this listener?" from ``models/`` alone (no
dataset folder, no retraining per click). One bundle per dataset holds

* ``next_<dataset>.keras`` + ``.json`` — the network and its manifest (config, item ids, titles,
  artists, user ids, dataset checksum, validation score);
* ``next_<dataset>_seq.npz`` + ``.json`` — every user's baskets (for "their latest items" and for the
  session-kNN shown beside the CNN), saved with ``core.artifacts.save_arrays`` (no pickle).

``train_bundle`` builds it; ``NextBundle.load`` reads it back; ``recommend`` answers for a known user or
for a hand-built sequence, with a reason per item.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.artifacts import ArtifactError, load_arrays, save_arrays
from core.threads import torch_threads
from music.sequence import PAD, SequenceData, from_dataset, last_items, leave_last_out

log = logging.getLogger(__name__)

HINT = "python -m music train-next --dataset {dataset}"


def bundle_stem(dataset: str) -> Path:
    """``models/music/next_<dataset>`` (read at call time so tests can point MODELS_DIR elsewhere)."""
    from core import artifacts

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
# sequences <-> arrays


def _seq_arrays(seqs: SequenceData) -> dict[str, np.ndarray]:
    lens = [len(b) for bs in seqs.baskets for b in bs]
    return {
        "items": np.concatenate([b for bs in seqs.baskets for b in bs]).astype(np.int32) if lens else np.zeros(0, np.int32),
        "basket_len": np.asarray(lens, np.int32),
        "user_baskets": np.asarray([len(bs) for bs in seqs.baskets], np.int32),
        "basket_session": np.concatenate(seqs.sessions).astype(np.int64) if seqs.sessions else np.zeros(0, np.int64),
    }


def _seq_from_arrays(a: dict[str, np.ndarray], m: dict[str, Any]) -> SequenceData:
    ends = np.cumsum(a["basket_len"])
    all_baskets = np.split(a["items"], ends[:-1]) if len(ends) else []
    bounds = np.r_[0, np.cumsum(a["user_baskets"])]
    baskets = [[np.asarray(b, np.int32) for b in all_baskets[s:e]] for s, e in zip(bounds[:-1], bounds[1:])]
    sessions = [a["basket_session"][s:e] for s, e in zip(bounds[:-1], bounds[1:])]
    return SequenceData(m["dataset"], list(m["item_ids"]), list(m["user_ids"]), baskets, sessions, dict(m["seq_config"]))


# ----------------------------------------------------------------------------------------------
# training


def train_bundle(
    dataset: str,
    path: str | None = None,
    *,
    init: str = "onehot",
    repeat: bool = True,
    force: bool = False,
    epochs: int = 5,
    progress: Callable[[float, str], None] | None = None,
    **load_kwargs: Any,
) -> dict[str, Any]:
    """Train the default app model for ``dataset``; skip (and say so) when a fresh bundle exists.

    Fresh = same dataset checksum and same configuration. The model is fitted on the training baskets
    of the leave-last-out split with early stopping on the validation baskets (the evaluation's
    protocol), and its validation HR@10 is recorded so the app can show how good it is.
    ``load_kwargs`` go to ``load_dataset`` (e.g. a smaller simulated log in tests).
    """
    from core.artifacts import read_json
    from music import caser, next_caser
    from music.data import load_dataset
    from music.evaluate_next import Evaluator, repeats_in_data

    ds = load_dataset(dataset, path, **load_kwargs)
    checksum = ds.checksum()
    stem = bundle_stem(dataset)
    # a higher learning rate and patience 1 keep `make run` under a minute on the simulated log
    cfg = caser.CaserConfig(init=init, repeat=repeat, epochs=epochs, lr=3e-3, patience=1)
    if not force and stem.with_suffix(".json").is_file() and stem.with_suffix(".keras").is_file():
        try:
            old = read_json(stem.with_suffix(".json"))
            if old.get("dataset_checksum") == checksum and old.get("config", {}).get("init") == init \
                    and old.get("config", {}).get("repeat") == repeat:
                log.info("fresh 'up next' model at %s; skipping (use --force to retrain)", stem)
                return {"skipped": True, "path": str(stem.with_suffix(".keras")), **{k: old.get(k) for k in ("val_hr@10",)}}
        except ArtifactError:
            pass
    seqs = from_dataset(ds)
    split = leave_last_out(seqs)
    exclude_seen = repeats_in_data(seqs, split) < 0.01
    ev = Evaluator(seqs, split, exclude_seen=exclude_seen, max_val_users=1000)
    texts = next_caser.item_texts(ds.items, seqs.item_ids) if init == "text" else None
    model = next_caser.CaserNext(cfg, texts=texts)
    with torch_threads():
        model.fit(seqs, split.train_upto, validate=lambda m: ev.evaluate(m, "val")["hr@10"], progress=progress)
    info = ds.item_info().reindex(seqs.item_ids)
    manifest = {
        "dataset": dataset,
        "dataset_label": getattr(ds, "label", dataset),
        "dataset_checksum": checksum,
        "item_ids": seqs.item_ids,
        "titles": [str(t) if isinstance(t, str) and t else i for t, i in zip(info["title"], seqs.item_ids)],
        "artists": [str(a) if isinstance(a, str) else "" for a in info["artist"]],
        "user_ids": seqs.user_ids,
        "exclude_seen": bool(exclude_seen),
        "seq_config": seqs.config,
        "val_hr@10": model.info.get("best_val"),
        "train": {k: v for k, v in model.info.items() if k != "history"},
    }
    save_arrays(stem.with_name(stem.name + "_seq"), _seq_arrays(seqs), {"kind": "music-next-sequences", **manifest})
    caser.save(model.model, cfg, stem, manifest)
    return {"skipped": False, "path": str(stem.with_suffix(".keras")), "val_hr@10": model.info.get("best_val"),
            "epochs": model.info.get("epochs_run"), "seconds": model.info.get("seconds")}


# ----------------------------------------------------------------------------------------------
# using it


class UnknownListener(KeyError):
    """The user id is not in the bundle."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown user"


class NextBundle:
    """A loaded "up next" model with its sequences; answers for users or hand-built sequences."""

    def __init__(self, dataset: str) -> None:
        from music import caser, next_caser

        stem = bundle_stem(dataset)
        hint = HINT.format(dataset=dataset)
        self.model, self.cfg, self.manifest = caser.load(stem, hint=hint)
        arrays, seq_manifest = load_arrays(stem.with_name(stem.name + "_seq"), kind="music-next-sequences", hint=hint)
        if seq_manifest.get("dataset_checksum") != self.manifest.get("dataset_checksum"):
            raise ArtifactError(f"the 'up next' model and its sequences for {dataset} disagree; rebuild with `{hint} --force`")
        self.seqs = _seq_from_arrays(arrays, seq_manifest)
        self.dataset = dataset
        self.titles: list[str] = list(self.manifest["titles"])
        self.artists: list[str] = list(self.manifest["artists"])
        self.cnn = next_caser.CaserNext(self.cfg)
        self.cnn.model = self.model
        self._knn = None

    @property
    def knn(self) -> Any:
        """Session-kNN over all of the bundle's sessions, built on first use (a second or two)."""
        if self._knn is None:
            from music.next_baselines import SessionKNN

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
        scores = np.asarray(rec.score(np.array([u]), [hist]), np.float64)[0]
        scores[PAD] = -np.inf
        if self.manifest.get("exclude_seen") or items is not None:
            scores[hist] = -np.inf  # a hand-built sequence wants what comes after it, not its own items back
        k = min(top, int(np.isfinite(scores).sum()))
        best = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, np.int64)
        best = best[np.argsort(-scores[best], kind="stable")]
        out = []
        for i in best:
            reason = rec.reason(u, hist, int(i), self.seqs, name=self.label)
            out.append(NextPick(self.seqs.item_id(int(i)), self.titles[int(i) - 1], self.artists[int(i) - 1],
                                float(scores[i]), reason))
        return out

    def explain(self, *, user: str | None = None, items: Sequence[str] | None = None, item: str) -> dict[str, Any]:
        """The CNN's attribution for one item: score drop per input position and per filter group."""
        from music import next_caser

        hist = self.history(user) if user is not None else np.array([self.seqs.item_index(i) for i in items or []], np.int32)
        u = self.seqs.user_index(user) if user is not None else -1
        u = u if u >= 0 else self.cnn.n_users_fallback()
        seq = last_items(hist, self.cfg.L)
        ex = next_caser.explain(self.model, u, seq, self.seqs.item_index(item), hist)
        ex["inputs"] = [self.label(i) if i != PAD else "(empty)" for i in seq]
        return ex
