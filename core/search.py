"""Vector search layer: exact cosine top-k over L2-normalised vectors, with metadata filters.

One module serves fashion and multimodal search. Exact search, because at catalog sizes of up to
~10^5 items a blocked matrix product + ``argpartition`` answers in milliseconds on 2 cores and never
misses a neighbour (bench/search.py measures it beside scikit-learn's brute-force NearestNeighbors).

The query's own item is excluded only when the query *is* a catalog item (``exclude_ids``); an
uploaded photo keeps its best match, unlike the seed, which always dropped the first hit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Hit:
    """One search result: the item's id, its row in the index, its cosine score and its metadata."""

    id: str
    index: int
    score: float
    meta: dict[str, Any]


class VectorIndex:
    """Exact cosine search over ``vectors`` (N, D), rows aligned with ``ids`` and ``metadata`` columns.

    ``metadata`` maps a column name to a length-N sequence (category, title, ...); filters select on it.
    Vectors are normalised on the way in, so callers may pass raw features.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        ids: Sequence[str],
        metadata: Optional[Mapping[str, Sequence[Any]]] = None,
        *,
        normalize: bool = True,
    ) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        self.vectors = vectors
        self.ids = np.asarray([str(i) for i in ids])
        self._pos = {item: i for i, item in enumerate(self.ids)}
        if len(self._pos) != len(self.ids):
            raise ValueError("ids must be unique")
        self.metadata: dict[str, np.ndarray] = {}
        for key, column in (metadata or {}).items():
            column = np.asarray(column)
            if len(column) != len(ids):
                raise ValueError(f"metadata column {key!r} has {len(column)} rows for {len(ids)} vectors")
            self.metadata[key] = column

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def position(self, item_id: str) -> int:
        """Row of ``item_id``; ``KeyError`` with a readable message if absent."""
        try:
            return self._pos[str(item_id)]
        except KeyError:
            raise KeyError(f"{item_id!r} is not in the index") from None

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors[self.position(item_id)]

    def mask(self, filters: Optional[Mapping[str, Any]]) -> Optional[np.ndarray]:
        """Boolean row mask for ``{column: value or list of values}``; None when there is no filter."""
        if not filters:
            return None
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in filters.items():
            if key not in self.metadata:
                raise KeyError(f"no metadata column {key!r}; have {sorted(self.metadata)}")
            if wanted is None or (isinstance(wanted, (list, tuple, set)) and not wanted):
                continue
            values = list(wanted) if isinstance(wanted, (list, tuple, set, np.ndarray)) else [wanted]
            keep &= np.isin(self.metadata[key], np.asarray(values, dtype=self.metadata[key].dtype))
        return keep

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filters: Optional[Mapping[str, Any]] = None,
        exclude_ids: Optional[Iterable[Optional[str]]] = None,
        block: int = 1024,
    ) -> "tuple[np.ndarray, np.ndarray]":
        """Top-``k`` (rows, scores) per query, best first; rows are -1 / scores -inf where fewer match.

        ``exclude_ids`` gives, per query, a catalog id to leave out (the query item itself) or None.
        Queries are processed in blocks so memory stays at block × N floats.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise ValueError(f"query dimension {q.shape[1]} does not match the index's {self.dim}")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        keep = self.mask(filters)
        excluded = list(exclude_ids) if exclude_ids is not None else [None] * len(q)
        if len(excluded) != len(q):
            raise ValueError("exclude_ids needs one entry (id or None) per query")
        n = len(self)
        k_eff = max(0, min(k, n))
        rows_out = np.full((len(q), k), -1, dtype=np.int64)
        scores_out = np.full((len(q), k), -np.inf, dtype=np.float32)
        if k_eff == 0:
            return rows_out, scores_out
        for start in range(0, len(q), block):
            sims = q[start : start + block] @ self.vectors.T  # (b, N)
            if keep is not None:
                sims[:, ~keep] = -np.inf
            for j, item in enumerate(excluded[start : start + block]):
                if item is not None and str(item) in self._pos:
                    sims[j, self._pos[str(item)]] = -np.inf
            if k_eff < n:
                part = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
            else:
                part = np.tile(np.arange(n), (len(sims), 1))
            part_scores = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            rows = np.take_along_axis(part, order, axis=1)
            scores = np.take_along_axis(part_scores, order, axis=1)
            valid = np.isfinite(scores)
            rows_out[start : start + len(sims), :k_eff] = np.where(valid, rows, -1)
            scores_out[start : start + len(sims), :k_eff] = scores
        return rows_out, scores_out

    def query(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        filters: Optional[Mapping[str, Any]] = None,
        exclude_id: Optional[str] = None,
    ) -> list[Hit]:
        """One query → a list of ``Hit`` with metadata, for UIs and CLIs."""
        rows, scores = self.search(vector[None, :], k, filters=filters, exclude_ids=[exclude_id])
        hits: list[Hit] = []
        for row, score in zip(rows[0], scores[0]):
            if row < 0:
                break
            meta = {key: _plain(col[row]) for key, col in self.metadata.items()}
            hits.append(Hit(id=str(self.ids[row]), index=int(row), score=float(score), meta=meta))
        return hits


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so hits serialise to JSON as they are."""
    return value.item() if isinstance(value, np.generic) else value
