"""Baselines for "up next", behind the one interface every music model honours.

Why these four: a sequence CNN is only worth its training time if it beats what is cheap.
*Most popular* is the floor. *Repeat/recency* is strong in music, where people re-listen.
*Session-kNN* (sessions similar to the current one vote) matches neural models surprisingly often on
session data (Ludewig & Jannach, 2018). *MF* is the music tab's own matrix factorisation: long-term
taste with no notion of order.

The interface (``music.recommender.Recommender``, specialised by ``NextRecommender``):
``fit(seqs, upto)`` learns from baskets ``[0, upto[u])`` of each user only; ``score(users, histories)``
returns a ``(N, n_items + 1)`` matrix (column 0 is padding) for users with the given item histories
(everything before the basket to predict); ``recommend`` ranks, ``explain(user, item, history)``
explains one recommended item in words. *Most popular* is ``music.mf.baselines.Popularity`` (one
popularity for the whole music package), fitted on the same sequences.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from music.data import make_dataset
from music.mf.baselines import NEG, Popularity
from music.next.data import PAD, SequenceData
from music.recommender import Recommender

log = logging.getLogger(__name__)

__all__ = ["NEG", "MFAdapter", "NextRecommender", "Popularity", "RepeatRecency", "SessionKNN"]


class NextRecommender(Recommender):
    """A ``Recommender`` over basket sequences: subclasses set ``name`` and implement ``fit`` and ``score``.

    ``fit(seqs, upto)`` keeps ``seqs`` (for names in reasons); ``recommend`` returns
    ``(item index, score, reason)`` triples, best first, never the padding item.
    """

    name = "base"
    seqs: SequenceData | None = None

    def fit(self, data: SequenceData, train: np.ndarray | None = None, **kwargs: Any) -> "NextRecommender":
        raise NotImplementedError

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, user: Any, n: int = 10, exclude_seen: bool = False, *, history: np.ndarray | None = None,
                  name: Callable[[int], str] | None = None) -> list[tuple[int, float, str]]:
        """The ``n`` best next items for user index ``user`` (-1: a listener the model does not know) after ``history``."""
        hist = np.zeros(0, np.int32) if history is None else np.asarray(history)
        exclude = np.r_[PAD, hist] if exclude_seen else np.array([PAD])
        return [(i, s, self.explain(int(user), i, hist, name=name))
                for i, s in self.top_items(int(user), n, hist, exclude)]

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        return self.name

    def _namer(self, name: Callable[[int], str] | None) -> Callable[[int], str]:
        return name or (self.seqs.item_id if self.seqs is not None else str)


class RepeatRecency(NextRecommender):
    """Re-listen what you played, most recent and most frequent first; then popular items.

    Score = Σ over the user's past plays of the item of ``decay ** age`` (age 0 = the latest play),
    plus a popularity term scaled far below one play, so the full ranking stays meaningful after the
    user's own history runs out.
    """

    name = "repeat_recency"

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay

    def fit(self, data: SequenceData, train: np.ndarray | None = None, **kwargs: Any) -> "RepeatRecency":
        self.seqs = data
        counts = data.item_counts(train)
        self.pop = (np.log1p(counts) / max(np.log1p(counts).max(), 1.0) * 1e-3).astype(np.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        out = np.tile(self.pop, (len(users), 1))
        for r, hist in enumerate(histories):
            if len(hist):
                w = self.decay ** np.arange(len(hist) - 1, -1, -1, dtype=np.float64)
                np.add.at(out[r], hist, w.astype(np.float32))
        out[:, PAD] = NEG
        return out

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        history = np.zeros(0, np.int32) if history is None else np.asarray(history)
        hits = np.flatnonzero(history == item)
        if len(hits):
            ago = len(history) - 1 - int(hits[-1])
            return f"you played it {len(hits)} time(s), last {ago} item(s) ago"
        return "popular (not in your history)"


class SessionKNN(NextRecommender):
    """Vector session-kNN: the current window of recent items is compared with every training session.

    Training sessions are the gap-cut sessions of ``SequenceData`` chunked to ``max_len`` items (a
    week-long MovieLens rating binge is many sessions, not one). The current session is the last
    ``window`` items, more recent ones weighted higher (V-SKNN's linear decay). The ``k`` most similar
    sessions (cosine on item sets) vote for their items with their similarity.
    """

    name = "session_knn"

    def __init__(self, k: int = 100, window: int = 5, max_len: int = 10) -> None:
        self.k, self.window, self.max_len = k, window, max_len

    def fit(self, data: SequenceData, train: np.ndarray | None = None, **kwargs: Any) -> "SessionKNN":
        seqs, upto = data, train
        self.seqs = seqs
        rows, cols, self.owner, self.session_items = [], [], [], []
        n = 0
        for u in range(seqs.n_users):
            b_upto = int(upto[u])
            if b_upto == 0:
                continue
            baskets, sess = seqs.baskets[u][:b_upto], seqs.sessions[u][:b_upto]
            cuts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1], True])
            for a, b in zip(cuts[:-1], cuts[1:]):
                items = np.concatenate(baskets[a:b])
                for start in range(0, len(items), self.max_len):
                    chunk = np.unique(items[start : start + self.max_len])
                    rows.append(np.full(len(chunk), n))
                    cols.append(chunk)
                    self.owner.append(u)
                    self.session_items.append(items[start : start + self.max_len])
                    n += 1
        self.n_items = seqs.n_items
        if n == 0:
            self.memory = sparse.csr_matrix((0, seqs.n_items + 1), dtype=np.float32)
        else:
            r, c = np.concatenate(rows), np.concatenate(cols)
            self.memory = sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, seqs.n_items + 1))
        self.norms = np.sqrt(np.asarray(self.memory.sum(axis=1)).ravel()).astype(np.float32) + 1e-9
        self.pop = seqs.item_counts(upto)
        self.pop = (np.log1p(self.pop) / max(np.log1p(self.pop).max(), 1.0) * 1e-4).astype(np.float32)
        log.info("session-kNN memory: %d sessions", n)
        return self

    def _query(self, histories: Sequence[np.ndarray]) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, hist in enumerate(histories):
            recent = hist[-self.window :]
            w = np.arange(1, len(recent) + 1, dtype=np.float32) / max(len(recent), 1)
            rows.append(np.full(len(recent), r))
            cols.append(recent)
            vals.append(w)
        if not rows:
            return sparse.csr_matrix((0, self.n_items + 1), dtype=np.float32)
        q = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(histories), self.n_items + 1),
        )
        q.sum_duplicates()
        return q

    def neighbours(self, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Indices (N, k) and similarities (N, k) of the most similar training sessions."""
        q = self._query(histories)
        sims = (q @ self.memory.T).toarray() / self.norms[None, :]
        qn = np.sqrt(np.asarray(q.multiply(q).sum(axis=1))).ravel() + 1e-9
        sims = sims / qn[:, None]
        k = min(self.k, sims.shape[1])
        if k == 0:
            return np.zeros((len(histories), 0), np.int64), np.zeros((len(histories), 0), np.float32)
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        histories = histories or []
        out = np.tile(self.pop, (len(histories), 1))
        for start in range(0, len(histories), 256):
            part = histories[start : start + 256]
            idx, sims = self.neighbours(part)
            for r in range(len(part)):
                votes = sparse.csr_matrix(sims[r][None, :]) @ self.memory[idx[r]]
                out[start + r] += votes.toarray().ravel()
        out[:, PAD] = NEG
        return out

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        seqs = self.seqs
        idx, sims = self.neighbours([np.zeros(0, np.int32) if history is None else np.asarray(history)])
        best, best_sim = None, 0.0
        for j, s in zip(idx[0], sims[0]):
            if s > best_sim and self.memory[j, item] > 0:
                best, best_sim = int(j), float(s)
        if best is None:
            return "popular (no similar session contains it)"
        items = self.session_items[best]
        name = self._namer(name)
        names = ", ".join(name(int(i)) for i in items[:5])
        who = seqs.user_ids[self.owner[best]] if seqs is not None else str(self.owner[best])
        return f"nearest session (similarity {best_sim:.2f}, listener {who}): {names}"


class MFAdapter(NextRecommender):
    """The music tab's matrix factorisation (``music.mf``) as an order-blind next-item baseline.

    It is fitted on the same training baskets (play counts per user and item) and scores every item
    for a known user; it ignores the order of the history, which is exactly what it is here to show.
    ``model_factory`` builds an unfitted ``music.mf.model.KerasMF``; the adapter uses its public interface
    (``fit(data, val=...)``, ``score(user indices)``, ``catalog`` id maps).
    """

    name = "mf"

    def __init__(self, model_factory: Any, kind: str = "implicit") -> None:
        self.model_factory = model_factory
        self.kind = kind

    def fit(self, data: SequenceData, train: np.ndarray | None = None, val_at: np.ndarray | None = None,
            **kwargs: Any) -> "MFAdapter":
        """Fit on baskets ``[0, train[u])``; ``val_at[u]`` (the split's validation basket, -1: none) drives early stopping.

        Without ``val_at`` the basket right after training is the validation target (leave-last-out).
        """
        seqs, upto = data, train
        rows = []
        for u in range(seqs.n_users):
            flat = seqs.flat(u, int(upto[u]))
            if len(flat):
                items, counts = np.unique(flat, return_counts=True)
                rows.append(pd.DataFrame({"user": seqs.user_ids[u], "item": [seqs.item_id(i) for i in items],
                                          "weight": counts.astype(np.float32)}))
        frame = pd.concat(rows, ignore_index=True)
        items = pd.DataFrame({"item": seqs.item_ids, "title": seqs.item_ids})
        self.dataset = make_dataset(f"{seqs.name}-next-train", "implicit", frame, items)
        if val_at is None:
            val_at = np.array([int(upto[u]) if int(upto[u]) < len(seqs.baskets[u]) else -1 for u in range(seqs.n_users)])
        # the validation basket drives MF's early stopping, as it does the CNN's
        val = [pd.DataFrame({"user": seqs.user_ids[u], "item": [seqs.item_id(i) for i in seqs.baskets[u][int(val_at[u])]],
                             "weight": 1.0}) for u in range(seqs.n_users) if int(val_at[u]) >= 0]
        val_frame = pd.concat(val, ignore_index=True) if val else None
        if val_frame is not None:
            val_frame = val_frame[val_frame["user"].isin(set(frame["user"]))].astype({"weight": np.float32})
        self.model = self.model_factory()
        self.model.fit(self.dataset, val=val_frame)
        self.seqs = seqs
        cat = self.model.catalog  # their id maps: translate once to our 1-based indices
        self.to_ours = np.array([seqs.item_index(i) for i in cat.items.ids], dtype=np.int64)
        self.their_user = np.array([cat.users.get(uid) for uid in seqs.user_ids], dtype=np.int64)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        out = np.full((len(users), self.seqs.n_items + 1), NEG / 2, np.float32)
        theirs = self.their_user[np.asarray(users, np.int64)]
        known = theirs >= 0
        if known.any():
            out[np.ix_(np.flatnonzero(known), self.to_ours)] = self.model.score(theirs[known])
        out[:, PAD] = NEG
        return out
