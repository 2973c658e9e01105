"""One table shape for every music source, and id maps that survive gaps and string ids.

Why: ids in real data have gaps and are often strings, and a title shown beside a prediction must
belong to the predicted id. Every source is turned into the same ``MusicDataset`` (string ids
everywhere), and models only ever see contiguous indices produced by an ``IdMap`` that travels with
the model, so an index always maps back to the right external id and title.

Loaders for the individual formats live in ``music.data.sources`` and ``music.data.simulate``; this
module owns the shape and the cleaning rules (malformed rows counted and skipped, duplicates merged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from core.artifacts import checksum_arrays
from core.datasets import DataUnavailable  # noqa: F401 - one exception for every missing dataset, re-exported
from core.training import BadTrainingData

log = logging.getLogger(__name__)

#: Dataset names ``load_dataset`` understands.
DATASETS = ("simulated", "lastfm-2k", "movielens-100k", "lastfm-1k", "30music", "listenbrainz", "csv")
#: Human labels; the simulated log must say it is simulated wherever it is shown.
LABELS = {
    "simulated": "Simulated listening log (simulated, not real listeners)",
    "lastfm-2k": "Last.fm HetRec-2K (real artist play counts)",
    "movielens-100k": "MovieLens-100K (real movie ratings)",
    "lastfm-1k": "Last.fm-1K (real listening events)",
    "30music": "30Music (real listening sessions)",
    "listenbrainz": "ListenBrainz listens dump (real listens)",
    "csv": "Your CSV",
}


# ----------------------------------------------------------------------------------------------
# id maps


class IdMap:
    """External string id <-> contiguous int index, in first-seen (or given) order.

    Why a class: ids in real data have gaps (Last.fm-2K users start at 2), are strings
    (MusicBrainz ids) or mix both; a model needs 0..n-1. The map is saved with the model so that
    predictions are translated back with the very map they were trained with.
    """

    def __init__(self, ids: Iterable[Any] = ()) -> None:
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        for i in ids:
            self.add(i)

    def add(self, external: Any) -> int:
        """Index of ``external``, adding it at the end if new."""
        key = str(external)
        idx = self._index.get(key)
        if idx is None:
            idx = len(self._ids)
            self._ids.append(key)
            self._index[key] = idx
        return idx

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external: Any) -> bool:
        return str(external) in self._index

    def index(self, external: Any) -> int:
        """Index of a known id; ``KeyError`` naming the id otherwise."""
        try:
            return self._index[str(external)]
        except KeyError:
            raise KeyError(f"unknown id {external!r}") from None

    def get(self, external: Any, default: int = -1) -> int:
        return self._index.get(str(external), default)

    def indices(self, externals: Iterable[Any]) -> np.ndarray:
        """Vectorised lookup; unknown ids map to -1 (callers decide whether that is an error)."""
        return np.fromiter((self._index.get(str(e), -1) for e in externals), dtype=np.int64)

    def external(self, index: int) -> str:
        return self._ids[int(index)]

    def externals(self, indices: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in indices]

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def to_list(self) -> list[str]:
        """JSON-ready form (the order is the mapping)."""
        return list(self._ids)

    @classmethod
    def from_list(cls, ids: Sequence[str]) -> "IdMap":
        m = cls(ids)
        if len(m) != len(ids):
            raise ValueError("duplicate ids in a saved id map")
        return m


# ----------------------------------------------------------------------------------------------
# the dataset


@dataclass
class MusicDataset:
    """Interactions, item metadata and (optionally) time-stamped events, in one shape for every source.

    ``interactions``: user (str), item (str), weight (float32; play count or rating), optional
    timestamp (int64 unix seconds). ``items``: item, title, artist, genres (list[str]), one row per
    item. ``events``: user, item, timestamp, sorted by user then timestamp (for sequence models).
    ``report``: what cleaning did (malformed rows skipped, duplicates merged, ...). ``tags``: dated tag
    events (user, item, tag, timestamp; tag = its name) where the source has them (Last.fm-2K), the
    evidence item genres are read from, so an evaluation can re-derive genres from training-time
    tags only (``genres_before``).
    """

    name: str
    kind: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    events: pd.DataFrame | None = None
    report: dict = field(default_factory=dict)
    tags: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("implicit", "explicit"):
            raise ValueError(f"kind must be 'implicit' or 'explicit', not {self.kind!r}")
        self._user_map: IdMap | None = None
        self._item_map: IdMap | None = None

    # -- id maps (LightFM's Dataset idea: the dataset owns the maps) --
    @property
    def user_map(self) -> IdMap:
        if self._user_map is None:
            self._user_map = IdMap(pd.unique(self.interactions["user"]))
        return self._user_map

    @property
    def item_map(self) -> IdMap:
        """Items in catalog order; items without interactions still get an index."""
        if self._item_map is None:
            self._item_map = IdMap(pd.unique(pd.concat([self.items["item"], self.interactions["item"]])))
        return self._item_map

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def codes(self, frame: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user index, item index, weight) arrays for ``frame`` (default: all interactions)."""
        frame = self.interactions if frame is None else frame
        u = self.user_map.indices(frame["user"])
        i = self.item_map.indices(frame["item"])
        return u, i, frame["weight"].to_numpy(np.float32)

    def matrix(self, frame: pd.DataFrame | None = None) -> sparse.csr_matrix:
        """users × items CSR matrix of weights (duplicates already merged by the loader)."""
        u, i, w = self.codes(frame)
        return sparse.csr_matrix((w, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)

    def checksum(self) -> str:
        """Identity of the interaction data, recorded in every model manifest (stale detection)."""
        f = self.interactions
        return checksum_arrays(
            f["user"].to_numpy(dtype="U"), f["item"].to_numpy(dtype="U"), f["weight"].to_numpy(np.float32)
        )

    def item_info(self) -> pd.DataFrame:
        """Item metadata indexed by item id (for titles, artists and genres in results)."""
        return self.items.set_index("item")

    def genres(self) -> list[str]:
        """All genres, most common first."""
        counts = self.items["genres"].explode().dropna().value_counts()
        return [str(g) for g in counts.index]

    def genres_before(self, cutoff: int | Mapping[str, int], n_genres: int = 3) -> "MusicDataset":
        """A copy whose item genres come only from tag events dated before ``cutoff``.

        ``cutoff`` is one unix time for everyone, or a map user id → unix time (users not in the map
        keep all their tag events: everything they did is training data). Why: genres feed the genre
        recommender and the text that starts Caser's item table; a tag given during the test period
        would tell a model about the future. Datasets without dated tags are returned unchanged.
        """
        if self.tags is None:
            return self
        t = self.tags
        if isinstance(cutoff, Mapping):
            limit = t["user"].map(cutoff).fillna(np.iinfo(np.int64).max).to_numpy(np.float64)
            kept = t[t["timestamp"].to_numpy(np.float64) < limit]
        else:
            kept = t[t["timestamp"] < int(cutoff)]
        genres = top_tags(kept, n_genres)
        items = self.items.copy()
        items["genres"] = [genres.get(i, []) for i in items["item"]]
        out = MusicDataset(self.name, self.kind, self.interactions, items, self.events,
                           dict(self.report, genre_tag_events=int(len(kept))), self.tags)
        out._user_map, out._item_map = self._user_map, self._item_map
        return out

    def history(self, user: str) -> pd.DataFrame:
        """A user's interactions, heaviest first, with item metadata."""
        h = self.interactions[self.interactions["user"] == str(user)].sort_values("weight", ascending=False)
        return h.merge(self.items, on="item", how="left")

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "users": int(self.interactions["user"].nunique()),
            "items": int(len(self.items)),
            "interactions": int(len(self.interactions)),
            "events": 0 if self.events is None else int(len(self.events)),
        }


# ----------------------------------------------------------------------------------------------
# cleaning shared by every loader


def clean_interactions(
    raw: pd.DataFrame, *, kind: str, report: dict[str, Any], source: str = ""
) -> pd.DataFrame:
    """Coerce ``raw`` (user, item, weight[, timestamp]) to the canonical dtypes.

    Rows with a missing id, a non-numeric or non-finite weight (or a non-positive play count) are
    counted in ``report['malformed_rows']`` and skipped. Duplicate (user, item) pairs are merged:
    play counts add up (two log lines of plays are more plays); ratings keep the latest (a user who
    re-rates changed their mind). The count goes to ``report['duplicates_merged']``.
    """
    df = raw.copy()
    n0 = len(df)
    df["user"] = df["user"].astype("string").str.strip()
    df["item"] = df["item"].astype("string").str.strip()
    df["weight"] = pd.to_numeric(df["weight"], errors="coerce")
    bad = df["user"].isna() | (df["user"] == "") | df["item"].isna() | (df["item"] == "")
    bad |= ~np.isfinite(df["weight"].to_numpy(dtype=float, na_value=np.nan))
    if kind == "implicit":
        bad |= df["weight"].fillna(0) <= 0
    has_ts = "timestamp" in df.columns
    if has_ts:
        df["timestamp"] = pd.to_numeric(df["timestamp"], errors="coerce")
        bad |= df["timestamp"].isna()
    n_bad = int(bad.sum())
    if n_bad:
        log.warning("%s: skipped %d malformed interaction rows of %d", source or "data", n_bad, n0)
    df = df[~bad]
    df = df.astype({"user": str, "item": str})
    df["weight"] = df["weight"].astype(np.float32)
    if has_ts:
        df["timestamp"] = df["timestamp"].astype(np.int64)
    before = len(df)
    if kind == "implicit":
        agg: dict[str, Any] = {"weight": "sum"}
        if has_ts:
            agg["timestamp"] = "max"
        df = df.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
    else:
        if has_ts:
            df = df.sort_values("timestamp", kind="stable")
        df = df.drop_duplicates(["user", "item"], keep="last")
    merged = before - len(df)
    report["malformed_rows"] = report.get("malformed_rows", 0) + n_bad
    report["duplicates_merged"] = report.get("duplicates_merged", 0) + merged
    report["rows_read"] = report.get("rows_read", 0) + n0
    cols = ["user", "item", "weight"] + (["timestamp"] if has_ts else [])
    df = df[cols].reset_index(drop=True)
    df["weight"] = df["weight"].astype(np.float32)
    return df


def clean_items(items: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per item with title/artist/genres; items seen only in interactions get placeholders."""
    items = items.copy()
    items["item"] = items["item"].astype(str)
    items = items.drop_duplicates("item", keep="first")
    missing = pd.Index(pd.unique(interactions["item"])).difference(pd.Index(items["item"]))
    if len(missing):
        items = pd.concat([items, pd.DataFrame({"item": list(missing)})], ignore_index=True)
    items["title"] = items.get("title", pd.Series(index=items.index, dtype=object))
    items["title"] = items["title"].where(items["title"].notna() & (items["title"].astype(str) != ""), items["item"])
    items["artist"] = items.get("artist", pd.Series(index=items.index, dtype=object)).fillna("").astype(str)
    if "genres" not in items.columns:
        items["genres"] = [[] for _ in range(len(items))]
    items["genres"] = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in items["genres"]]
    items["title"] = items["title"].astype(str)
    return items[["item", "title", "artist", "genres"]].reset_index(drop=True)


def clean_events(events: pd.DataFrame | None) -> pd.DataFrame | None:
    """Events as (user, item, timestamp) sorted by user then time; None stays None."""
    if events is None or len(events) == 0:
        return None
    ev = events[["user", "item", "timestamp"]].dropna().copy()
    ev = ev.astype({"user": str, "item": str})
    ev["timestamp"] = ev["timestamp"].astype(np.int64)
    return ev.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)


def top_tags(tags: pd.DataFrame, n: int = 3) -> dict[str, list[str]]:
    """Each item's ``n`` most used tags (ties: tag name order), from tag events (user, item, tag, timestamp)."""
    if tags is None or len(tags) == 0:
        return {}
    counts = tags.groupby(["item", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    return {str(item): [str(t) for t in grp["tag"].head(n)] for item, grp in counts.groupby("item", sort=False)}


def make_dataset(
    name: str,
    kind: str,
    raw_interactions: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame | None = None,
    report: dict[str, Any] | None = None,
    tags: pd.DataFrame | None = None,
) -> MusicDataset:
    """The one constructor every loader ends with, so every source is cleaned the same way."""
    report = dict(report or {})
    inter = clean_interactions(raw_interactions, kind=kind, report=report, source=name)
    items = clean_items(items, inter)
    ds = MusicDataset(name=name, kind=kind, interactions=inter, items=items, events=clean_events(events), report=report,
                      tags=tags)
    report.update({k: v for k, v in ds.summary().items() if k not in ("name", "kind")})
    log.info("%s: %s", name, report)
    return ds


# ----------------------------------------------------------------------------------------------
# what training needs

#: The least a dataset needs before factors mean anything: two listeners, two items, a few interactions.
MIN_USERS, MIN_ITEMS, MIN_INTERACTIONS = 2, 2, 3


def check_trainable(data: MusicDataset, dataset: str) -> None:
    """``BadTrainingData`` (one sentence) when ``data`` cannot train factors: too small, or explicit and constant.

    Checked before any training, evaluation or writing, by every music trainer: a one-row file used to train
    NaN factors, exit 0, and then recommend nothing. Value ranges are the loaders' business
    (``music.data.sources.load_csv``).
    """
    summary = data.summary()
    users, items, rows = summary["users"], data.interactions["item"].nunique(), summary["interactions"]
    if users < MIN_USERS or items < MIN_ITEMS or rows < MIN_INTERACTIONS:
        raise BadTrainingData(
            f"dataset {dataset!r} is too small to train on: {rows} usable interaction(s) from {users} listener(s) "
            f"and {items} item(s); it needs at least {MIN_INTERACTIONS} interactions, {MIN_USERS} listeners and "
            f"{MIN_ITEMS} items" + (f" ({data.report['malformed_rows']} malformed rows were skipped)"
                                    if data.report.get("malformed_rows") else ""))
    if data.kind == "explicit":
        weights = data.interactions["weight"]
        if float(weights.max()) == float(weights.min()):
            raise BadTrainingData(f"every rating in dataset {dataset!r} is {float(weights.min()):g}: "
                                  "constant ratings carry no preference to learn")
