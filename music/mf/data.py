"""What a catalog-based music model knows besides its parameters: id maps, titles, genres, history.

Why its own room: the ``Catalog`` is built from a ``MusicDataset`` and the training frame of a
split, saved beside every model (so the tab and the CLI work from ``models/`` alone, with no
dataset files), and read back by every model of this package the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from core import artifacts
from music.data import IdMap, MusicDataset


def music_dir() -> Path:
    """Root of the music artifacts (follows ``RECS_MODELS_DIR`` through core.artifacts, read at call time)."""
    return Path(artifacts.MODELS_DIR) / "music"


@dataclass
class Catalog:
    """What a model needs to know about items and users besides its parameters.

    Saved with every model so the UI and CLI work from ``models/`` alone (no dataset files).
    """

    users: IdMap
    items: IdMap
    titles: list[str]
    artists: list[str]
    genres: list[list[str]]
    history: sparse.csr_matrix  # users × items training weights
    kind: str = "implicit"
    dataset: str = ""
    checksum: str = ""

    @classmethod
    def from_dataset(cls, data: MusicDataset, train: pd.DataFrame | None = None) -> "Catalog":
        info = data.item_info().reindex(data.item_map.ids)
        return cls(
            users=data.user_map,
            items=data.item_map,
            titles=[str(t) for t in info["title"].fillna("")],
            artists=[str(a) for a in info["artist"].fillna("")],
            genres=[list(g) if isinstance(g, list) else [] for g in info["genres"]],
            history=data.matrix(train),
            kind=data.kind,
            dataset=data.name,
            checksum=data.checksum(),
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def seen(self, u: int) -> np.ndarray:
        row = self.history[u]
        return row.indices[row.data != 0] if row.nnz else np.empty(0, dtype=np.int32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        h = self.history.tocoo()
        return {"hist_user": h.row.astype(np.int32), "hist_item": h.col.astype(np.int32),
                "hist_weight": h.data.astype(np.float32)}

    def to_manifest(self) -> dict[str, Any]:
        return {"users": self.users.to_list(), "items": self.items.to_list(), "titles": self.titles,
                "artists": self.artists, "genres": self.genres, "data_kind": self.kind,
                "dataset": self.dataset, "dataset_checksum": self.checksum}

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], m: dict[str, Any]) -> "Catalog":
        users, items = IdMap.from_list(m["users"]), IdMap.from_list(m["items"])
        hist = sparse.csr_matrix((arrays["hist_weight"], (arrays["hist_user"], arrays["hist_item"])),
                                 shape=(len(users), len(items)), dtype=np.float32)
        return cls(users, items, m["titles"], m["artists"], m["genres"], hist, m.get("data_kind", "implicit"),
                   m.get("dataset", ""), m.get("dataset_checksum", ""))

