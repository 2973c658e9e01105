"""Caser behind the recommender interface the baselines share, and why it picked what it picked.

``CaserNext`` fits the network of ``music.next.model`` on training baskets (choosing the item-table
start: one-hot, word2vec or text), scores histories, and turns ``explain``'s attribution into a
sentence. ``attribution`` answers "which input positions and which filters drove this score" by occlusion
(blank one position) and ablation (switch off one filter group), the reason shown in the app.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from typing import Any, Callable, Sequence

import keras
import numpy as np

from music.next.baselines import NextRecommender
from music.next.data import PAD, last_items, make_samples, training_sequences
from music.next.model import (
    INITS,
    CaserConfig,
    predict_scores,
    repeat_features,
    text_vectors,
    train_caser,
    word2vec_vectors,
)


# ----------------------------------------------------------------------------------------------
# explanation: which input positions and which filter groups drove a score


def attribution(model: keras.Model, user: int, seq: np.ndarray, item: int, history: np.ndarray | None = None) -> dict[str, Any]:
    """Why ``item`` scores high for ``seq``: position occlusion and filter-group ablation.

    * positions: the score drop when each input position is replaced by padding (bigger = mattered more);
    * filters: the score drop when one filter group's pooled features are zeroed (horizontal height h,
      or the vertical filters), computed through the dense head in numpy (dropout is off at inference);
    * user_part / sequence_part / repeat_part: the additive pieces of the score.
    """
    L = len(seq)
    has_repeat = "hist" in model.input
    history = seq[seq != PAD] if history is None else history
    variants = np.repeat(seq[None, :], L + 1, axis=0).astype(np.int32)
    for j in range(L):
        variants[j + 1, j] = PAD
    scores = predict_scores(model, np.full(L + 1, user, np.int32), variants, [history] * (L + 1))[:, item]
    positions = [float(scores[0] - scores[j + 1]) if seq[j] != PAD else 0.0 for j in range(L)]

    feature_model = keras.Model([model.input["seq"], model.input["user"]], model.get_layer("features").output)
    f = np.asarray(feature_model.predict_on_batch([seq[None, :].astype(np.int32), np.array([user], np.int32)]))[0]
    w_z, b_z = model.get_layer("z").get_weights()
    w_s, b_s = model.get_layer("scores").get_weights()
    u_vec = model.get_layer("user_embedding").get_weights()[0][user]
    d = w_z.shape[1]
    rep = float(repeat_features([history], w_s.shape[1] - 1)[0, item]) if has_repeat else 0.0
    w_g, b_g = model.get_layer("repeat_gate").get_weights() if has_repeat else (np.zeros((2 * d, 1)), np.zeros(1))

    def head(feat: np.ndarray) -> tuple[float, float]:
        joint = np.r_[np.maximum(feat @ w_z + b_z, 0.0), u_vec]
        return float(joint @ w_s[:, item] + b_s[item]), float(joint @ w_g[:, 0] + b_g[0]) * rep

    if any(layer.name == "repeat_mixture" for layer in model.layers):
        # the mixture is not additive: report positions (occlusion through the real model) only
        return {"score": float(scores[0]), "positions": positions, "filters": {}, "user_part": 0.0,
                "sequence_part": float(scores[0]), "repeat_part": 0.0}
    n_h = model.get_layer("h_conv_1").filters
    groups: dict[str, slice] = {f"horizontal h={h}": slice((h - 1) * n_h, h * n_h) for h in range(1, L + 1)}
    groups["vertical"] = slice(L * n_h, f.shape[0])
    base, repeat_part = head(f)
    filters = {}
    for name, sl in groups.items():
        g = f.copy()
        g[sl] = 0.0
        filters[name] = base + repeat_part - sum(head(g))
    z = np.maximum(f @ w_z + b_z, 0.0)
    return {"score": base + repeat_part, "positions": positions, "filters": filters,
            "user_part": float(u_vec @ w_s[d:, item]), "sequence_part": float(z @ w_s[:d, item]),
            "repeat_part": repeat_part}


# ----------------------------------------------------------------------------------------------
# the CNN behind the next-item interface shared with the baselines


def item_texts(items: Any, item_ids: Sequence[str]) -> list[str]:
    """"title — artist — tag, tag" per item id (the text the MiniLM init embeds), in ``item_ids`` order."""
    info = items.set_index(items["item"].astype(str))
    out = []
    for item in item_ids:
        if item in info.index:
            row = info.loc[item]
            genres = row.get("genres", [])
            tags = ", ".join(genres[:5]) if isinstance(genres, (list, tuple, np.ndarray)) else ""
            parts = [str(row.get("title", item)), str(row.get("artist", "") or ""), tags]
            out.append(" — ".join(p for p in parts if p))
        else:
            out.append(str(item))
    return out


class CaserNext(NextRecommender):
    """Caser as a ``NextRecommender``: fit on training baskets, score histories, explain a pick.

    ``texts`` (one per catalog item) is needed for the ``text`` init only.
    """

    def __init__(self, cfg: CaserConfig, texts: Sequence[str] | None = None, encoder: Any = None) -> None:
        self.cfg = cfg
        self.texts = texts
        self.encoder = encoder
        self.name = cfg.variant
        self.model: keras.Model | None = None
        self.info: dict[str, Any] = {}

    def initial_table(self, seqs: Any, upto: np.ndarray) -> np.ndarray | None:
        """The item-embedding start for ``cfg.init``, from training data (word2vec) or item text only."""
        if self.cfg.init == "onehot":
            return None
        if self.cfg.init == "word2vec":
            return word2vec_vectors(training_sequences(seqs, upto), seqs.n_items, self.cfg.d,
                                    window=self.cfg.L, seed=self.cfg.seed)
        if self.cfg.init == "text":
            if self.texts is None:
                raise ValueError("the text init needs item texts")
            return text_vectors(self.texts, self.cfg.d, seed=self.cfg.seed, encoder=self.encoder)
        raise ValueError(f"init must be one of {INITS}, not {self.cfg.init!r}")

    def fit(self, data: Any, train: np.ndarray | None = None, validate: Callable[["CaserNext"], float] | None = None,
            progress: Callable[[float, str], None] | None = None, **kwargs: Any) -> "CaserNext":
        seqs, upto = data, train
        self.seqs = seqs
        samples = make_samples(seqs, upto, L=self.cfg.L, T=self.cfg.T)
        table = self.initial_table(seqs, upto)

        def val(model: keras.Model) -> float:
            self.model = model
            return validate(self)  # type: ignore[misc]

        flats = [seqs.flat(u, int(upto[u])) for u in range(seqs.n_users)] if self.cfg.repeat else None
        self.model, self.info = train_caser(self.cfg, samples, seqs.n_items, seqs.n_users, item_init=table,
                                            flats=flats, validate=val if validate is not None else None,
                                            progress=progress)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        histories = histories or []
        seqs_in = np.stack([last_items(h, self.cfg.L) for h in histories]) if len(histories) else np.zeros((0, self.cfg.L), np.int32)
        users = np.where(np.asarray(users) < 0, self.n_users_fallback(), np.asarray(users))
        return predict_scores(self.model, users.astype(np.int32), seqs_in, histories)

    def n_users_fallback(self) -> int:
        """Unknown listeners (a hand-built sequence) use the spare user row: sequence evidence only."""
        return int(self.model.get_layer("user_embedding").input_dim) - 1

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        history = np.zeros(0, np.int32) if history is None else np.asarray(history)
        seq = last_items(history, self.cfg.L)
        u = user if user >= 0 else self.n_users_fallback()
        ex = attribution(self.model, u, seq, item, history)
        pos = int(np.argmax(ex["positions"]))
        top_filter = max(ex["filters"], key=ex["filters"].get) if ex["filters"] else "convolution"
        ago = self.cfg.L - 1 - pos
        name = self._namer(name)
        when = "the latest item" if ago == 0 else f"{ago} item(s) before the latest"
        text = f"driven by {name(int(seq[pos]))} ({when}) through the {top_filter} filters"
        plays = int(np.sum(history == item))
        if plays and ex.get("repeat_part", 0.0) > 0:
            text = f"re-listen: you played it {plays} time(s) (repeat channel {ex['repeat_part']:.1f}); {text}"
        return text
