"""Vector search layer: cosine top-k over L2-normalised vectors, with metadata filters, exact or through FAISS.

One module serves fashion and multimodal search. Every index keeps its vectors in memory and answers
``search(queries, k, filters=..., exclude_ids=...)`` the same way whatever its kind:

- ``exact``: a blocked numpy matrix product + ``argpartition`` (never misses a neighbour);
- ``flat``: FAISS ``IndexFlatIP``, also exact, with FAISS's SIMD scan;
- ``hnsw``: FAISS ``IndexHNSWFlat`` (a navigable small-world graph over the full vectors);
- ``ivfpq``: FAISS ``IndexIVFPQ`` (coarse cells + product-quantised codes), whose candidates are
  re-scored with the exact vectors, so the scores shown are true cosines and an item queried against
  itself comes back first.

``choose_kind(n)`` picks exact below ``EXACT_BELOW`` items, where exact search still answers one query
within the 5 ms budget, and HNSW above it (measured by bench/scale_threshold.py; docs/scale.md).

Filters: FAISS searches only the rows a filter keeps (an ``IDSelectorBitmap``); when a filter keeps
fewer than ``EXACT_BELOW`` rows, the kept rows are scanned exactly instead (a graph or a coarse
quantiser is unreliable when most of it is filtered out, and a small scan is fast anyway), and any
query for which the approximate index returns fewer than ``k`` hits is answered exactly as well.

The query's own item is excluded only when the query *is* a catalog item (``exclude_ids``); an
uploaded photo keeps its best match.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, atomic_path, checksum_files
from core.metrics import bootstrap_ci
from core.threads import faiss_threads

log = logging.getLogger(__name__)

#: Index kinds, in order of exactness.
KINDS = ("exact", "flat", "hnsw", "ivfpq")
#: Below this many items (or rows kept by a filter) search is exact. Measured, not extrapolated:
#: ``python bench/scale_threshold.py`` times exact, FAISS flat and HNSW per 128-d query by catalog size; on a
#: quiet machine (bench/results/scale_threshold_quiet.json) 150,000 is the smallest size where exact search's
#: p50 exceeded the 5 ms budget (100,000 items: 3.2 ms) while HNSW at recall@10 ≥ 0.95 was faster. Under
#: load (bench/results/scale_threshold.json, 10,000 … 1,000,000 items) the same rule gave 100,000.
#: docs/scale.md has both tables.
EXACT_BELOW = 150_000
#: FAISS defaults chosen on validation queries of bench/scale.py at 1M items (recall@10 ≥ 0.95 at the
#: lowest latency); ``efSearch`` / ``nprobe`` grow with k and with how much of the index a filter removes.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {},
    "flat": {},
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 64},
    "ivfpq": {"nprobe": 8, "rerank": 10, "nbits": 8},
}
#: The parameters each kind accepts (build: M, efConstruction, nlist, m, nbits; search: the others).
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "exact": (), "flat": (), "hnsw": ("M", "efConstruction", "efSearch"),
    "ivfpq": ("nlist", "m", "nbits", "nprobe", "rerank"),
}
#: A FAISS file larger than this is not hashed on load (hashing 1 GB costs seconds); size + counts are checked.
HASH_LIMIT = 256 << 20


@dataclass
class Hit:
    """One search result: the item's id, its row in the index, its cosine score and its metadata."""

    id: str
    index: int
    score: float
    meta: dict[str, Any]


def choose_kind(n: int, requested: str = "auto") -> str:
    """The index kind for a catalog of ``n`` items: ``requested`` unless it is "auto", else exact below
    ``EXACT_BELOW`` and HNSW above (the measured crossing point; HNSW reached the recall bar at the lowest
    latency in bench/scale.py)."""
    if requested == "auto":
        return "exact" if n < EXACT_BELOW else "hnsw"
    if requested not in KINDS:
        raise ValueError(f"unknown index kind {requested!r}; choose one of auto, {', '.join(KINDS)}")
    return requested


def resolve_params(kind: str, n: int, dim: int, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Full build/search parameters for ``kind`` at ``n`` items of dimension ``dim`` (explicit ones win).

    IVF-PQ sizes itself as chosen at 1M items (bench/results/scale.json): ~√n coarse cells (1,024 there; at
    most n/39 so k-means has enough points per cell), sub-quantisers of 2 dimensions (4-dimensional ones lost
    too much: validation recall@10 ≤ 0.94 even re-ranking 2,000 candidates), 8-bit codes when there are
    ≥ 39·256 training points (else 4-bit).
    """
    unknown = set(params or {}) - set(PARAM_NAMES[kind])
    if unknown:
        raise ValueError(f"{kind} takes no parameter {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(PARAM_NAMES[kind]) or 'none'}")
    out = dict(DEFAULT_PARAMS[kind])
    if kind == "ivfpq":
        out["nlist"] = int(max(1, min(math.sqrt(n), n // 39)))
        m = dim // 2 if dim % 2 == 0 else dim
        while dim % m:
            m -= 1
        out["m"] = m
        out["nbits"] = 8 if n >= 39 * 256 else 4
    out.update({key: int(value) for key, value in (params or {}).items()})
    if any(value < 1 for value in out.values()):
        raise ValueError(f"{kind} parameters must be positive integers, got {out}")
    if kind == "ivfpq":
        if dim % out["m"] or out["nbits"] > 16:
            raise ValueError(f"ivfpq needs m dividing the dimension {dim} and nbits ≤ 16, got m={out['m']}, nbits={out['nbits']}")
        out["nprobe"] = int(min(out["nprobe"], out["nlist"]))
    return out


def factory_string(kind: str, params: Mapping[str, Any]) -> str:
    """The ``faiss.index_factory`` description of a kind (recorded in manifests: it is what FAISS calls it)."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{int(params['M'])}"
    if kind == "ivfpq":
        return f"IVF{int(params['nlist'])},PQ{int(params['m'])}x{int(params['nbits'])}"
    raise ValueError(f"{kind!r} is not a FAISS index kind")


def describe(info: Mapping[str, Any]) -> str:
    """One line for a tab's caption: the search structure, its parameters and its measured recall@10."""
    kind = info.get("kind", "exact")
    if kind == "exact":
        return "Search index: exact (every item scored; recall@10 = 1 by construction)."
    names = {"flat": "FAISS flat (exact)", "hnsw": "FAISS HNSW graph (approximate)",
             "ivfpq": "FAISS IVF-PQ with exact re-ranking (approximate)"}
    params = ", ".join(f"{k}={v}" for k, v in (info.get("params") or {}).items())
    line = f"Search index: {names.get(kind, kind)}" + (f" ({params})" if params else "")
    if "recall@10" in info:
        ci = info.get("recall@10_ci95")
        line += f"; recall@10 {info['recall@10']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        line += f" against exact search, measured at build time on {info.get('recall_queries', 'held-out queries')}"
    return line + "."


def ivf_train_sample(n: int, params: Mapping[str, Any]) -> int:
    """How many of ``n`` vectors train IVF-PQ's coarse k-means and PQ codebooks: 40 per cell, at least 100,000.

    Why a sample: training on every vector of a million-item catalog costs far more than it gains (FAISS's
    own guidance is 30–256 points per cell, and it warns below 39); 100,000 also gives each 8-bit PQ
    codebook ~400 points per centroid. At 1M items with 4,096 cells that is 163,840 vectors.
    """
    return int(min(n, max(40 * int(params["nlist"]), 100_000, 39 << int(params["nbits"]))))


def build_faiss(vectors: np.ndarray, kind: str, params: Mapping[str, Any], *, seed: int = 0) -> Any:
    """A FAISS index of ``kind`` over ``vectors`` (float32, rows = ids 0..n-1), inner-product metric."""
    import faiss  # optional heavy dependency: only approximate indexes need faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.index_factory(vectors.shape[1], factory_string(kind, params), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = int(params["efConstruction"])
    if kind == "ivfpq":
        sample = ivf_train_sample(len(vectors), params)
        rows = np.random.default_rng(seed).choice(len(vectors), sample, replace=False)
        index.cp.seed = seed
        # No polysemous training: it re-orders PQ codes for Hamming-distance pre-filtering, which this search
        # never uses, and it was most of a build's time (~200 of 240 s training on 20,000 vectors).
        index.do_polysemous_training = False
        # PQ codebooks: 100 points per centroid and 10 k-means iterations (the coarse quantiser's own count)
        # instead of FAISS's 256 and 25: sub-vectors of 2-4 dimensions are clustered without BLAS.
        index.pq.cp.max_points_per_centroid, index.pq.cp.niter, index.pq.cp.seed = 100, 10, seed
        index.train(vectors[np.sort(rows)])
    index.add(vectors)
    return index


class VectorIndex:
    """Cosine search over ``vectors`` (N, D), rows aligned with ``ids`` and ``metadata`` columns.

    ``metadata`` maps a column name to a length-N sequence (category, title, ...); filters select on it.
    Vectors are normalised on the way in, so callers may pass raw features. The index starts exact;
    ``build(kind)`` or ``load_faiss(path, info)`` attach a FAISS index answering the same calls.
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
        self._coded: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for key, column in (metadata or {}).items():
            column = np.asarray(column)
            if len(column) != len(ids):
                raise ValueError(f"metadata column {key!r} has {len(column)} rows for {len(ids)} vectors")
            self.metadata[key] = column
        self.faiss: Any = None
        #: filters keeping fewer rows than this are answered by an exact scan of the kept rows
        self.exact_below = EXACT_BELOW
        #: kind, parameters and measured recall@10 of the search structure (what a manifest records)
        self.info: dict[str, Any] = {"kind": "exact", "params": {}, "recall@10": 1.0}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    def position(self, item_id: str) -> int:
        """Row of ``item_id``; ``KeyError`` with a readable message if absent."""
        try:
            return self._pos[str(item_id)]
        except KeyError:
            raise KeyError(f"{item_id!r} is not in the index") from None

    def find(self, item_id: str) -> Optional[int]:
        """Row of ``item_id``, or None when the index lacks it (an id kept from before a rebuild, say)."""
        return self._pos.get(str(item_id))

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors[self.position(item_id)]

    def mask(self, filters: Optional[Mapping[str, Any]]) -> Optional[np.ndarray]:
        """Boolean row mask for ``{column: value or list of values}``; None when there is no filter."""
        if not filters:
            return None
        keep = np.ones(len(self), dtype=bool)
        active = False
        for key, wanted in filters.items():
            if key not in self.metadata:
                raise KeyError(f"no metadata column {key!r}; have {sorted(self.metadata)}")
            if wanted is None or (isinstance(wanted, (list, tuple, set)) and not wanted):
                continue
            values = list(wanted) if isinstance(wanted, (list, tuple, set, np.ndarray)) else [wanted]
            uniques, codes = self._codes(key)
            asked = np.asarray(values, dtype=str if uniques.dtype.kind == "U" else uniques.dtype)
            pos = np.searchsorted(uniques, asked)
            inside = pos < len(uniques)
            pos, asked = pos[inside], asked[inside]
            table = np.zeros(len(uniques), dtype=bool)
            table[pos[uniques[pos] == asked]] = True
            keep &= table[codes]
            active = True
        return keep if active else None

    def _codes(self, key: str) -> "tuple[np.ndarray, np.ndarray]":
        """A metadata column as (sorted distinct values, per-row code), computed once per column.

        Why: comparing a million strings per query (``np.isin``) cost tens of milliseconds, more than the
        search; a table lookup on integer codes costs about one.
        """
        column = self.metadata[key]
        if key not in self._coded or self._coded[key][0] is not column:  # the column was replaced
            self._coded[key] = (column, *np.unique(column, return_inverse=True))
        return self._coded[key][1], self._coded[key][2]

    # -- building and storing the FAISS structure --------------------------------------------------
    def build(
        self,
        kind: str = "auto",
        params: Optional[Mapping[str, Any]] = None,
        *,
        recall_queries: int = 1000,
        seed: int = 0,
    ) -> "VectorIndex":
        """Attach a search structure of ``kind`` ("auto" = by size) and measure its recall@10 against exact.

        Recall is measured on ``recall_queries`` catalog items sampled at random and used as "more like
        this" queries (each excluding itself, as the tabs do); the numbers are only recorded, never tuned on.
        """
        kind = choose_kind(len(self), kind)
        if kind == "exact":
            self.faiss = None
            self.info = {"kind": "exact", "params": {}, "recall@10": 1.0}
            return self
        full = resolve_params(kind, len(self), self.dim, params)
        with faiss_threads():
            self.faiss = build_faiss(self.vectors, kind, full, seed=seed)
        self.info = {"kind": kind, "params": full, "factory": factory_string(kind, full)}
        self.info.update(self.measure_recall(recall_queries, seed=seed))
        log.info("built %s index over %d items: recall@10 %.4f", kind, len(self), self.info["recall@10"])
        return self

    def measure_recall(self, queries: int = 1000, *, k: int = 10, seed: int = 0) -> dict[str, Any]:
        """Mean recall@10 of this index against exact search on sampled catalog items, with a 95 % interval."""
        rng = np.random.default_rng(seed + 1)
        rows = np.sort(rng.choice(len(self), min(queries, len(self)), replace=False))
        exclude = [str(self.ids[r]) for r in rows]
        got, _ = self.search(self.vectors[rows], k, exclude_ids=exclude)
        truth, _ = self.search(self.vectors[rows], k, exclude_ids=exclude, exact=True)
        per_query = np.array([
            len(set(g[g >= 0]) & set(t[t >= 0])) / max(1, int((t >= 0).sum())) for g, t in zip(got, truth)
        ])
        return {"recall@10": round(float(per_query.mean()), 4),
                "recall@10_ci95": [round(v, 4) for v in bootstrap_ci(per_query)],
                "recall_queries": f"{len(rows)} catalog items as 'more like this' queries, self excluded"}

    def save_faiss(self, path: Path) -> dict[str, Any]:
        """Write the FAISS structure to ``path`` atomically; returns ``info`` + file, size and checksum for a
        manifest. Exact indexes write nothing (their vectors are the caller's arrays)."""
        if self.faiss is None:
            return dict(self.info)
        import faiss  # optional heavy dependency: only approximate indexes need faiss

        path = Path(path)
        with atomic_path(path) as tmp:
            faiss.write_index(self.faiss, str(tmp))
        size = path.stat().st_size
        return {**self.info, "file": path.name, "bytes": size,
                "sha256": checksum_files([path]) if size <= HASH_LIMIT else None}

    def load_faiss(self, path: Path, info: Mapping[str, Any], *, hint: str = "") -> "VectorIndex":
        """Attach the structure saved by ``save_faiss``; a missing, corrupt or stale file raises ArtifactError.

        Stale = another build's file: a different checksum, size, item count or dimension than the manifest.
        """
        fix = f" Rebuild it with `{hint}`." if hint else " Rebuild it."
        kind = info.get("kind", "exact")
        if kind == "exact":
            self.faiss, self.info = None, dict(info)
            return self
        if kind not in KINDS:
            raise ArtifactError(f"unknown search index kind {kind!r} in the manifest.{fix}")
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing although the manifest names it.{fix}")
        size = path.stat().st_size
        if info.get("bytes") is not None and size != info["bytes"]:
            raise ArtifactError(f"{path} is stale or truncated ({size} bytes, the manifest says {info['bytes']}).{fix}")
        if info.get("sha256") and checksum_files([path]) != info["sha256"]:
            raise ArtifactError(f"{path} is stale: its checksum differs from the manifest's.{fix}")
        import faiss  # optional heavy dependency: only approximate indexes need faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ArtifactError(f"{path} is corrupt ({str(exc).strip().splitlines()[-1]}).{fix}") from exc
        if index.ntotal != len(self) or index.d != self.dim:
            raise ArtifactError(f"{path} is stale: it holds {index.ntotal} × {index.d} vectors, "
                                f"the catalog {len(self)} × {self.dim}.{fix}")
        self.faiss, self.info = index, dict(info)
        return self

    # -- searching ---------------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filters: Optional[Mapping[str, Any]] = None,
        exclude_ids: Optional[Iterable[Optional[str]]] = None,
        block: int = 1024,
        exact: bool = False,
    ) -> "tuple[np.ndarray, np.ndarray]":
        """Top-``k`` (rows, scores) per query, best first; rows are -1 / scores -inf where fewer match.

        ``exclude_ids`` gives, per query, a catalog id to leave out (the query item itself) or None.
        ``exact=True`` bypasses the FAISS structure (the ground truth recall is measured against).
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise ValueError(f"query dimension {q.shape[1]} does not match the index's {self.dim}")
        q = np.ascontiguousarray(q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12))
        keep = self.mask(filters)
        excluded = list(exclude_ids) if exclude_ids is not None else [None] * len(q)
        if len(excluded) != len(q):
            raise ValueError("exclude_ids needs one entry (id or None) per query")
        skip = np.array([self._pos.get(str(e), -1) if e is not None else -1 for e in excluded], dtype=np.int64)
        rows_out = np.full((len(q), k), -1, dtype=np.int64)
        scores_out = np.full((len(q), k), -np.inf, dtype=np.float32)
        if min(k, len(self)) <= 0:
            return rows_out, scores_out
        kept = len(self) if keep is None else int(keep.sum())
        if exact or self.faiss is None or kept < min(self.exact_below, len(self)):
            return self._exact(q, k, keep, skip, block, rows_out, scores_out)
        return self._approximate(q, k, keep, kept, skip, rows_out, scores_out)

    def _exact(self, q: np.ndarray, k: int, keep: Optional[np.ndarray], skip: np.ndarray, block: int,
               rows_out: np.ndarray, scores_out: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
        """Scan every row, or only the rows ``keep`` selects; fills and returns the output arrays.

        A filter keeping few rows scans a copy of just those rows (cheaper than scoring everything);
        one keeping many scores all rows and masks the others out (cheaper than copying them).
        """
        cand = None if keep is None or keep.sum() * 4 > len(keep) else np.flatnonzero(keep)
        pool = self.vectors if cand is None else self.vectors[cand]
        n = len(pool)
        k_eff = min(k, n)
        if k_eff == 0:
            return rows_out, scores_out
        local_skip = skip if cand is None else _local_positions(cand, skip)
        for start in range(0, len(q), block):
            sims = q[start : start + block] @ pool.T  # (b, n)
            if keep is not None and cand is None:
                sims[:, ~keep] = -np.inf
            for j, s in enumerate(local_skip[start : start + block]):
                if s >= 0:
                    sims[j, s] = -np.inf
            if k_eff < n:
                part = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
            else:
                part = np.tile(np.arange(n), (len(sims), 1))
            part_scores = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            rows = np.take_along_axis(part, order, axis=1)
            scores = np.take_along_axis(part_scores, order, axis=1)
            if cand is not None:
                rows = cand[rows]
            valid = np.isfinite(scores)
            rows_out[start : start + len(sims), :k_eff] = np.where(valid, rows, -1)
            scores_out[start : start + len(sims), :k_eff] = scores
        return rows_out, scores_out

    def _approximate(self, q: np.ndarray, k: int, keep: Optional[np.ndarray], kept: int, skip: np.ndarray,
                     rows_out: np.ndarray, scores_out: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
        """FAISS search (restricted to ``keep``), exclusion, IVF-PQ re-scoring, and the exact fallback."""
        import faiss  # optional heavy dependency: only approximate indexes need faiss

        kind, params = self.kind, self.info["params"]
        fetch = k + 1 if (skip >= 0).any() else k
        widen = len(self) / max(kept, 1)  # a filter keeping 1/4 of the rows needs ~4× the search effort
        bitmap = None
        if kind == "ivfpq":
            fetch = max(fetch, 10) * int(params.get("rerank", 1))  # re-rank at least rerank × 10 candidates
            sp = faiss.SearchParametersIVF(nprobe=int(min(params["nlist"], math.ceil(params["nprobe"] * widen))))
        elif kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=int(max(fetch, math.ceil(params["efSearch"] * widen))))
        else:
            sp = faiss.SearchParameters()
        if keep is not None:
            bitmap = np.packbits(keep, bitorder="little")  # must outlive the search call
            sp.sel = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bitmap))
        fetch = min(fetch, kept)
        _scores, cand = self.faiss.search(q, fetch, params=sp)
        del bitmap
        for j in range(len(q)):
            rows = cand[j][(cand[j] >= 0) & (cand[j] != skip[j])]
            # exact cosines for every kind: HNSW/flat already are; IVF-PQ's are re-scored (re-ranked) here
            scores = self.vectors[rows] @ q[j]
            order = np.argsort(-scores, kind="stable")[:k]
            available = kept - int(skip[j] >= 0 and (keep is None or keep[skip[j]]))
            if len(order) < min(k, available):  # the structure came back short: answer this query exactly
                self._exact(q[j : j + 1], k, keep, skip[j : j + 1], 1, rows_out[j : j + 1], scores_out[j : j + 1])
                continue
            rows_out[j, : len(order)] = rows[order]
            scores_out[j, : len(order)] = scores[order]
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


def _local_positions(cand: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """Global rows to skip → their positions within ``cand`` (sorted), -1 where not a candidate."""
    pos = np.searchsorted(cand, skip)
    pos = np.minimum(pos, len(cand) - 1)
    return np.where((skip >= 0) & (cand[pos] == skip), pos, -1)


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so hits serialise to JSON as they are."""
    return value.item() if isinstance(value, np.generic) else value
