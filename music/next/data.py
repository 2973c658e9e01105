"""Listening sequences for "up next": sessions, baskets, the two temporal splits, training samples.

Why this module exists: a next-item model is only as honest as its split. Everything that decides
what a model may see lives here, in one place, so the CNN, the baselines and the evaluation all use
the same cut:

* **sessions** — a user's time-ordered events, cut wherever the gap between two events exceeds
  ``session_gap`` seconds (30 minutes by default, the usual listening-session rule);
* **baskets** — items that share a session, a calendar month (Last.fm-2K's tag assignments carry
  only a month), or nothing at all (``"event"``: every event is its own basket, MovieLens ratings);
* **order** — events are ordered by user, then timestamp, then item id (as text): events of one user in
  the same second (MovieLens ratings often share a second) get an explicit, reproducible order instead
  of the order of the source file;
* **splits** — *leave-last-out*: per user, the last basket is the test target, the one before it the
  validation target, everything earlier is training (users with fewer than three baskets only train).
  *global-time*: two cut-off times ``T_val < T_test`` shared by every user; only baskets that start
  before ``T_val`` train, a user's first basket in ``[T_val, T_test)`` is their validation target and
  their first basket from ``T_test`` on their test target, so no model learns from any event that
  happens after a target;
* **samples** — Caser's sliding window: the last ``L`` items (left-padded with 0) → the next ``T`` items,
  built from training baskets only, so no validation or test item can leak into a sample.

Item index 0 is the padding index; real items are ``1..n_items`` in the dataset's catalog order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from music.data import Split, period_starts

log = logging.getLogger(__name__)

PAD = 0
BASKET_MODES = ("event", "session", "day", "month")
#: Per-dataset defaults: how a basket is formed. Last.fm-2K tag assignments are dated by month only;
#: MovieLens ratings are single events; listening logs group plays into sessions.
DEFAULT_BASKET = {"lastfm-2k": "month", "movielens-100k": "event", "ml-100k": "event"}


@dataclass
class SequenceData:
    """Every user's baskets in time order, over one item catalog.

    ``baskets[u]`` is a list of int32 arrays of item indices (1-based; 0 is padding), oldest first;
    ``sessions[u]`` gives, for each basket, the id of the gap-cut session it starts in (used by
    session-kNN as its memory of sessions); ``times[u]`` the unix time of each basket's first event
    (used by the global-time split; empty when loaded from an artifact that did not keep it).
    """

    name: str
    item_ids: list[str]
    user_ids: list[str]
    baskets: list[list[np.ndarray]]
    sessions: list[np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)
    times: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._item_index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        self._user_index = {user: u for u, user in enumerate(self.user_ids)}

    @property
    def n_items(self) -> int:
        """Real items; score vectors have ``n_items + 1`` entries because index 0 is padding."""
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def item_index(self, item: str) -> int:
        """1-based index of an external item id; 0 (padding) when unknown."""
        return self._item_index.get(str(item), PAD)

    def user_index(self, user: str) -> int:
        """Index of an external user id; -1 when unknown."""
        return self._user_index.get(str(user), -1)

    def item_id(self, index: int) -> str:
        return self.item_ids[int(index) - 1]

    def flat(self, u: int, upto: int | None = None) -> np.ndarray:
        """User ``u``'s items in time order, from baskets ``[0, upto)`` (all when ``upto`` is None)."""
        chosen = self.baskets[u][:upto] if upto is not None else self.baskets[u]
        return np.concatenate(chosen).astype(np.int32) if chosen else np.zeros(0, np.int32)

    def item_counts(self, upto: np.ndarray) -> np.ndarray:
        """Plays per item in each user's baskets ``[0, upto[u])``; entry 0 (padding) is 0."""
        counts = np.zeros(self.n_items + 1, np.float64)
        for u in range(self.n_users):
            np.add.at(counts, self.flat(u, int(upto[u])), 1.0)
        counts[PAD] = 0.0
        return counts


# ----------------------------------------------------------------------------------------------
# sessions and baskets


def cut_sessions(events: pd.DataFrame, gap_seconds: int = 1800) -> pd.Series:
    """Session number per event: a new session starts at a user's first event or after a gap > ``gap_seconds``.

    ``events`` must be sorted by user then timestamp (the data layer's contract). Session numbers are
    global (unique across users) so they can index a session memory directly.
    """
    if len(events) == 0:
        return pd.Series(np.zeros(0, np.int64), index=events.index)
    user = events["user"].to_numpy()
    ts = events["timestamp"].to_numpy(np.int64)
    new_user = np.r_[True, user[1:] != user[:-1]]
    gap = np.r_[True, np.diff(ts) > gap_seconds]
    if np.any(np.diff(ts)[~new_user[1:]] < 0):
        raise ValueError("events are not sorted by user then timestamp")
    return pd.Series(np.cumsum(new_user | gap) - 1, index=events.index, name="session")


def basket_keys(events: pd.DataFrame, mode: str, sessions: pd.Series) -> np.ndarray:
    """Key per event; consecutive events of one user with the same key form one basket."""
    if mode == "event":
        return np.arange(len(events), dtype=np.int64)
    if mode == "session":
        return sessions.to_numpy(np.int64)
    stamps = pd.to_datetime(events["timestamp"].to_numpy(np.int64), unit="s", utc=True)
    if mode == "day":
        return (events["timestamp"].to_numpy(np.int64) // 86400).astype(np.int64)
    if mode == "month":
        return (stamps.year * 12 + stamps.month - 1).to_numpy(np.int64)
    raise ValueError(f"basket mode must be one of {BASKET_MODES}, not {mode!r}")


def build_sequences(
    events: pd.DataFrame,
    item_ids: Sequence[str],
    *,
    name: str = "data",
    basket: str = "session",
    session_gap: int = 1800,
    dedupe_in_basket: bool = True,
) -> SequenceData:
    """Turn time-ordered events into per-user baskets over the catalog ``item_ids``.

    Events are ordered by user, timestamp and then item id (as text), so ties within one second have
    one documented order whatever the order of the file. Events on items outside the catalog are dropped (counted in ``config['unknown_item_events']``).
    Within a basket the first occurrence order is kept and repeats are merged when
    ``dedupe_in_basket`` (tagging one artist with five tags in a month is one artist that month).
    Re-listens across baskets are kept: repeat consumption is part of what music models must predict.
    """
    if basket not in BASKET_MODES:
        raise ValueError(f"basket mode must be one of {BASKET_MODES}, not {basket!r}")
    ev = events[["user", "item", "timestamp"]].copy()
    ev["user"] = ev["user"].astype(str)
    ev["item"] = ev["item"].astype(str)
    ev = ev.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    index = {item: i + 1 for i, item in enumerate(map(str, item_ids))}
    codes = ev["item"].map(index).fillna(PAD).to_numpy(np.int64)
    unknown = int((codes == PAD).sum())
    if unknown:
        log.warning("%s: %d events on items outside the catalog were dropped", name, unknown)
    sessions = cut_sessions(ev, session_gap)
    keys = basket_keys(ev, basket, sessions)
    keep = codes != PAD
    ev, codes, sessions, keys = ev[keep], codes[keep], sessions.to_numpy()[keep], keys[keep]

    users = ev["user"].to_numpy()
    stamps = ev["timestamp"].to_numpy(np.int64)
    user_ids: list[str] = []
    all_baskets: list[list[np.ndarray]] = []
    all_sessions: list[np.ndarray] = []
    all_times: list[np.ndarray] = []
    if len(ev):
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
        for start, stop in zip(bounds[:-1], bounds[1:]):
            k, c, s = keys[start:stop], codes[start:stop], sessions[start:stop]
            cuts = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
            baskets = []
            for a, b in zip(cuts[:-1], cuts[1:]):
                items = c[a:b]
                if dedupe_in_basket:
                    items = pd.unique(items)
                baskets.append(np.asarray(items, dtype=np.int32))
            user_ids.append(str(users[start]))
            all_baskets.append(baskets)
            all_sessions.append(s[cuts[:-1]].astype(np.int64))
            all_times.append(stamps[start:stop][cuts[:-1]].astype(np.int64))
    config = {
        "basket": basket,
        "session_gap": session_gap,
        "unknown_item_events": unknown,
        "events": int(len(ev)),
        "baskets": int(sum(len(b) for b in all_baskets)),
    }
    return SequenceData(name, [str(i) for i in item_ids], user_ids, all_baskets, all_sessions, config, all_times)


def from_dataset(dataset: Any, *, basket: str | None = None, session_gap: int = 1800) -> SequenceData:
    """Sequences from a ``music.data.MusicDataset`` (its ``events``; ``interactions`` with timestamps as a fallback).

    The catalog is the dataset's whole item table, so evaluation ranks every item it knows.
    """
    events = getattr(dataset, "events", None)
    if events is None or len(events) == 0:
        inter = dataset.interactions
        if "timestamp" not in inter.columns:
            raise ValueError(
                f"dataset {dataset.name!r} has no time-stamped events; 'up next' needs the order of listening"
            )
        events = inter[["user", "item", "timestamp"]]
    mode = basket or DEFAULT_BASKET.get(dataset.name, "session")
    item_ids = pd.unique(pd.concat([dataset.items["item"].astype(str), events["item"].astype(str)]))
    return build_sequences(events, list(item_ids), name=dataset.name, basket=mode, session_gap=session_gap)


# ----------------------------------------------------------------------------------------------
# split


def leave_last_out(seqs: SequenceData, min_baskets: int = 3) -> Split:
    """Per user: last basket → test, second-to-last → validation, the rest → training.

    ``train_upto[u]``: baskets ``[0, train_upto[u])`` are training data. Fitting on them and
    predicting the validation target sees only the user's past; predicting the test target may also
    read the validation basket as *input history* (never as a training target). Users with fewer than
    ``min_baskets`` baskets only contribute training data.
    """
    counts = np.array([len(b) for b in seqs.baskets], dtype=np.int64)
    evaluable = counts >= min_baskets
    train_upto = np.where(evaluable, counts - 2, counts)
    return Split(how="leave-last-out", train_upto=train_upto, val_at=np.where(evaluable, counts - 2, -1),
                 test_at=np.where(evaluable, counts - 1, -1))


def global_time(seqs: SequenceData, *, val_share: float = 0.1, test_share: float = 0.1) -> Split:
    """Two cut-off times shared by every user: train before ``T_val``, validate in ``[T_val, T_test)``, test after.

    ``T_test`` is the start time of the latest ``test_share`` of all baskets and ``T_val`` of the latest
    ``val_share + test_share``; with month (day) baskets both are moved back to the start of their
    calendar month (day), so no basket straddles a cut. Per user, baskets starting before ``T_val``
    train; the first basket in ``[T_val, T_test)`` is the validation target and the first basket from
    ``T_test`` on the test target, each only for users with at least one training basket (a history to
    read). Predicting a test target reads the user's validation-period baskets as input history, as
    leave-last-out does; no model is ever fitted on an event at or after ``T_val``.
    """
    if not seqs.times or len(seqs.times) != seqs.n_users:
        raise ValueError("the global-time split needs basket times (rebuild the sequences from the dataset)")
    starts = np.concatenate(seqs.times) if seqs.times else np.zeros(0, np.int64)
    if len(starts) == 0:
        raise ValueError("no baskets to split")
    basket = seqs.config.get("basket")
    t_val, t_test = period_starts(starts, val_share=val_share, test_share=test_share,
                                  snap=basket if basket in ("month", "day") else None)
    train_upto = np.zeros(seqs.n_users, np.int64)
    val_at = np.full(seqs.n_users, -1, np.int64)
    test_at = np.full(seqs.n_users, -1, np.int64)
    for u, t in enumerate(seqs.times):
        n_train = int(np.searchsorted(t, t_val, side="left"))
        train_upto[u] = n_train
        if n_train == 0:
            continue
        if n_train < len(t) and t[n_train] < t_test:
            val_at[u] = n_train
        first_test = int(np.searchsorted(t, t_test, side="left"))
        if first_test < len(t):
            test_at[u] = first_test
    return Split(how="global-time", train_upto=train_upto, val_at=val_at, test_at=test_at,
                 info={"T_val": t_val, "T_test": t_test,
                       "T_val_utc": str(pd.Timestamp(t_val, unit="s", tz="UTC")),
                       "T_test_utc": str(pd.Timestamp(t_test, unit="s", tz="UTC"))})


def training_cutoffs(seqs: SequenceData, split: Split) -> dict[str, int]:
    """Per user id: the start time of their first basket that is not training data (users without one: absent).

    An event of user ``u`` dated before ``cutoffs[u]`` (or any event of a user not in the map) lies in
    training data; side information derived from events (Last.fm-2K tag genres) must use only those.
    """
    out: dict[str, int] = {}
    for u in range(seqs.n_users):
        n = int(split.train_upto[u])
        if seqs.times and n < len(seqs.times[u]):
            out[seqs.user_ids[u]] = int(seqs.times[u][n])
    return out


def history_before(seqs: SequenceData, split: Split, u: int, stage: str) -> np.ndarray:
    """Everything user ``u`` did before the ``stage`` ("val" or "test") target basket, flattened."""
    return seqs.flat(u, int(split.at(stage)[u]))


def target_of(seqs: SequenceData, split: Split, u: int, stage: str) -> np.ndarray:
    """The ``stage`` target basket of user ``u``."""
    return seqs.baskets[u][int(split.at(stage)[u])]


def last_items(history: np.ndarray, L: int) -> np.ndarray:
    """The last ``L`` items of ``history``, left-padded with 0: the CNN's input "image" rows."""
    out = np.zeros(L, dtype=np.int32)
    tail = history[-L:]
    if len(tail):
        out[L - len(tail) :] = tail
    return out


# ----------------------------------------------------------------------------------------------
# sequences <-> arrays


def sequences_to_arrays(seqs: SequenceData) -> dict[str, np.ndarray]:
    """Flat arrays of every basket (for ``core.artifacts.save_arrays``: no pickle)."""
    lens = [len(b) for bs in seqs.baskets for b in bs]
    return {
        "items": np.concatenate([b for bs in seqs.baskets for b in bs]).astype(np.int32) if lens else np.zeros(0, np.int32),
        "basket_len": np.asarray(lens, np.int32),
        "user_baskets": np.asarray([len(bs) for bs in seqs.baskets], np.int32),
        "basket_session": np.concatenate(seqs.sessions).astype(np.int64) if seqs.sessions else np.zeros(0, np.int64),
        "basket_time": np.concatenate(seqs.times).astype(np.int64) if seqs.times else np.zeros(0, np.int64),
    }


def sequences_from_arrays(a: dict[str, np.ndarray], m: dict[str, Any]) -> SequenceData:
    """The inverse of ``sequences_to_arrays``, with ids and configuration from the manifest ``m``."""
    ends = np.cumsum(a["basket_len"])
    all_baskets = np.split(a["items"], ends[:-1]) if len(ends) else []
    bounds = np.r_[0, np.cumsum(a["user_baskets"])]
    baskets = [[np.asarray(b, np.int32) for b in all_baskets[s:e]] for s, e in zip(bounds[:-1], bounds[1:])]
    sessions = [a["basket_session"][s:e] for s, e in zip(bounds[:-1], bounds[1:])]
    bt = a.get("basket_time")
    times = [bt[s:e] for s, e in zip(bounds[:-1], bounds[1:])] if bt is not None and len(bt) == len(ends) else []
    return SequenceData(m["dataset"], list(m["item_ids"]), list(m["user_ids"]), baskets, sessions,
                        dict(m["seq_config"]), times)


# ----------------------------------------------------------------------------------------------
# training samples


@dataclass
class Samples:
    """Caser training samples: ``users[i]``, ``inputs[i]`` (L item indices) → ``targets[i]`` (T, 0-padded).

    ``positions[i]`` is where the basket holding the sample's first target starts: the long history a
    model may read is ``seqs.flat(users[i], upto)[:positions[i]]``, the earlier baskets only. Why: at
    prediction time the history never holds items of the target basket, and items are deduplicated
    within a basket, so letting same-basket items into the history would teach "what you just played
    never comes next" — the opposite of re-listening across baskets.
    """

    users: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def make_samples(
    seqs: SequenceData, upto: np.ndarray, *, L: int = 5, T: int = 3, min_history: int = 1
) -> Samples:
    """Sliding windows over each user's items in baskets ``[0, upto[u])`` only.

    Every position ``t`` with at least ``min_history`` earlier items gives one sample: the ``L`` items
    before ``t`` (left-padded) → items ``t..t+T-1`` (0-padded at the end of the training data). Because
    only the first ``upto[u]`` baskets are read, a validation or test item can never appear in a sample.
    """
    users, inputs, targets, positions = [], [], [], []
    for u in range(seqs.n_users):
        flat = seqs.flat(u, int(upto[u]))
        n = len(flat)
        if n <= min_history:
            continue
        padded = np.r_[np.zeros(L, np.int32), flat, np.zeros(T, np.int32)]
        pos = np.arange(min_history, n)
        win = pos[:, None] + np.arange(L)[None, :]  # padded index of flat[t-L+j] is t-L+j+L
        inputs.append(padded[win])
        targets.append(padded[pos[:, None] + L + np.arange(T)[None, :]])
        users.append(np.full(len(pos), u, np.int32))
        lens = np.array([len(b) for b in seqs.baskets[u][: int(upto[u])]], np.int64)
        starts = np.r_[0, np.cumsum(lens)[:-1]]
        positions.append(starts[np.searchsorted(np.cumsum(lens), pos, side="right")].astype(np.int32))
    if not users:
        return Samples(np.zeros(0, np.int32), np.zeros((0, L), np.int32), np.zeros((0, T), np.int32),
                       np.zeros(0, np.int32))
    return Samples(np.concatenate(users), np.concatenate(inputs).astype(np.int32),
                   np.concatenate(targets).astype(np.int32), np.concatenate(positions))


def training_sequences(seqs: SequenceData, upto: np.ndarray) -> list[list[str]]:
    """Training sequences as token lists (for word2vec): each user's training items in order."""
    out = []
    for u in range(seqs.n_users):
        flat = seqs.flat(u, int(upto[u]))
        if len(flat) > 1:
            out.append([str(i) for i in flat])
    return out
