"""The multimodal index: text and image vectors per product, fused at query time, plus an image→text projection.

Fusion maths (weighted concatenation, renormalised). With unit text vector ``t`` and unit image
vector ``v``, the fused vector at weight ``alpha`` is ``f = [sqrt(alpha)·t, sqrt(1-alpha)·v]``, whose norm is 1,
so for a query ``q`` and an item ``x``::

    f(q)·f(x) = alpha·(t_q·t_x) + (1-alpha)·(v_q·v_x)

i.e. fused cosine is the alpha-weighted mean of the two cosines. That identity is why ``alpha`` can change at
query time without rebuilding anything: the index keeps the two unweighted parts side by side and the query
carries the weights ``[alpha·t_q, (1-alpha)·v_q]`` (``fuse`` is kept for tests and for callers that want the
stored-vector form). Items with no text (empty text → zero vector) then score only on their picture, weighted
by ``1-alpha``, instead of being inflated by renormalisation.

The projection (``Projection``) is a linear map from image space into the sentence model's space, trained
contrastively on the catalog's own (image, caption) pairs (see ``train.py``). With it, an item whose text is
missing still has a text-space vector, so words find it by its picture.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from core.artifacts import MODELS_DIR, ArtifactError, load_arrays, save_arrays
from core.encoders import l2_normalize as l2n  # zero rows stay zero: an item without text is 'no evidence'
from core.search import VectorIndex

log = logging.getLogger(__name__)

INDEX_KIND = "multimodal-index"
PROJECTION_KIND = "multimodal-projection"
SCHEMA = 1
DEFAULT_ALPHA = 0.5
INDEX_HINT = "python -m multimodal index"


def index_dir() -> Path:
    """Where indexes live (``$RECS_MODELS_DIR/multimodal``), read at call time so tests can redirect it."""
    return MODELS_DIR / "multimodal"


def fuse(text: np.ndarray, image: np.ndarray, alpha: float) -> np.ndarray:
    """Weighted concatenation ``[sqrt(alpha)·text, sqrt(1-alpha)·image]``, renormalised row-wise.

    ``alpha`` = 1 is text only, 0 image only. Inputs are normalised first so the weight means what it says.
    """
    _check_alpha(alpha)
    fused = np.concatenate([math.sqrt(alpha) * l2n(text), math.sqrt(1.0 - alpha) * l2n(image)], axis=-1)
    return l2n(fused)


def _check_alpha(alpha: float) -> None:
    if not (0.0 <= float(alpha) <= 1.0) or math.isnan(float(alpha)):
        raise ValueError(f"alpha (the text weight) must be between 0 and 1, got {alpha}")


@dataclass
class Projection:
    """``image (D_img) → text space (D_txt)``: ``l2n(x @ W + b)``; plain arrays, so it saves without pickle."""

    weight: np.ndarray  # (D_img, D_txt)
    bias: np.ndarray  # (D_txt,)
    info: dict[str, Any]

    def __call__(self, image_vectors: np.ndarray) -> np.ndarray:
        return l2n(np.asarray(image_vectors, np.float32) @ self.weight + self.bias)

    def save(self, stem: Path) -> None:
        save_arrays(stem, {"weight": self.weight, "bias": self.bias},
                    {"kind": PROJECTION_KIND, "schema": SCHEMA, **self.info})

    @classmethod
    def load(cls, stem: Path, expect: Optional[Mapping[str, Any]] = None) -> "Projection":
        arrays, manifest = load_arrays(stem, kind=PROJECTION_KIND, expect=expect, hint=INDEX_HINT)
        return cls(arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32), manifest)


@dataclass
class Result:
    """One search result as the CLI and the UI show it."""

    id: str
    title: str
    category: str
    score: float
    image_path: str
    text_score: Optional[float] = None
    image_score: Optional[float] = None

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "title": self.title, "category": self.category, "score": round(self.score, 6),
               "image_path": self.image_path}
        if self.text_score is not None:
            out["text_score"] = round(self.text_score, 6)
        if self.image_score is not None:
            out["image_score"] = round(self.image_score, 6)
        return out


class MultimodalIndex:
    """Per-product text and image vectors with metadata; text, image, fused and "more like this" search.

    ``text`` (N, 384) and ``image`` (N, 1280) are L2-normalised (text rows are zero where a product has no
    text). ``projection`` (optional) gives every product a second text-space vector made from its picture.
    """

    def __init__(
        self,
        ids: Sequence[str],
        titles: Sequence[str],
        categories: Sequence[str],
        image_paths: Sequence[str],
        text: np.ndarray,
        image: np.ndarray,
        *,
        texts: Optional[Sequence[str]] = None,
        manifest: Optional[dict[str, Any]] = None,
        projection: Optional[Projection] = None,
    ) -> None:
        n = len(ids)
        if not (len(titles) == len(categories) == len(image_paths) == len(text) == len(image) == n):
            raise ValueError("ids, titles, categories, image paths and vectors must have one row per product")
        self.ids = [str(i) for i in ids]
        self.titles = [str(t) for t in titles]
        self.categories = [str(c) for c in categories]
        self.image_paths = [str(p) for p in image_paths]
        self.texts = [str(t) for t in texts] if texts is not None else list(self.titles)
        self.text = l2n(text)
        self.image = l2n(image)
        self.has_text = np.linalg.norm(self.text, axis=1) > 0.5
        self.manifest = dict(manifest or {})
        self._views: dict[tuple[str, ...], VectorIndex] = {}
        self._views_lock = threading.Lock()  # sessions share one index: build each view once
        self.projection: Optional[Projection] = None
        self.projected: Optional[np.ndarray] = None
        if projection is not None:
            self.set_projection(projection)

    def __len__(self) -> int:
        return len(self.ids)

    # -- parts and views ----------------------------------------------------------------------------
    def set_projection(self, projection: Optional[Projection]) -> None:
        """Attach (or detach) the image→text projection; items without text then get its vector as text part."""
        self.projection = projection
        self.projected = projection(self.image) if projection is not None else None
        with self._views_lock:
            self._views.clear()

    def _part(self, name: str) -> np.ndarray:
        if name == "text":  # the text part, filled from the picture where text is missing and a projection exists
            if self.projected is None:
                return self.text
            return np.where(self.has_text[:, None], self.text, self.projected)
        if name == "proj":
            if self.projected is None:
                raise ValueError("this index has no image→text projection")
            return self.projected
        if name == "image":
            return self.image
        raise KeyError(name)

    def _view(self, parts: tuple[str, ...]) -> VectorIndex:
        """A ``VectorIndex`` over the side-by-side, unweighted parts; weights travel with the query."""
        view = self._views.get(parts)
        if view is not None:
            return view
        with self._views_lock:
            if parts not in self._views:
                matrix = np.concatenate([self._part(p) for p in parts], axis=1)
                self._views[parts] = VectorIndex(matrix, self.ids, metadata={"category": self.categories},
                                                 normalize=False)
            return self._views[parts]

    def categories_sorted(self) -> list[str]:
        return sorted(set(self.categories))

    def position(self, item_id: str) -> int:
        try:
            return self.ids.index(str(item_id))
        except ValueError:
            raise KeyError(f"{item_id!r} is not in the catalog") from None

    # -- search ----------------------------------------------------------------------------------
    def search(
        self,
        *,
        text_vec: Optional[np.ndarray] = None,
        image_vec: Optional[np.ndarray] = None,
        alpha: float = DEFAULT_ALPHA,
        k: int = 10,
        categories: Optional[Sequence[str]] = None,
        exclude_id: Optional[str] = None,
        picture_weight: float = 0.0,
    ) -> list[Result]:
        """Top-``k`` products for a text vector, an image vector, or both.

        - text only: cosine against the text part (``picture_weight`` > 0 mixes in the projected pictures:
          ``(1-w)·cos(q, text) + w·cos(q, P(image))``);
        - image only: cosine against the image part;
        - both: ``alpha·cos_text + (1-alpha)·cos_image`` (the fused cosine, see the module docstring).
        ``exclude_id`` leaves a catalog item out (for "more like this"); ``categories`` filters.
        """
        if text_vec is None and image_vec is None:
            raise ValueError("Give a text query, an image, or both.")
        _check_alpha(alpha)
        if not 0.0 <= picture_weight <= 1.0:
            raise ValueError("picture_weight must be between 0 and 1")
        parts: list[tuple[str, np.ndarray, float]] = []
        if text_vec is not None:
            t_weight = alpha if image_vec is not None else 1.0
            q = l2n(np.asarray(text_vec, np.float32).reshape(-1))
            if picture_weight > 0 and self.projected is not None:
                parts += [("text", q, t_weight * (1 - picture_weight)), ("proj", q, t_weight * picture_weight)]
            else:
                parts.append(("text", q, t_weight))
        if image_vec is not None:
            i_weight = (1.0 - alpha) if text_vec is not None else 1.0
            parts.append(("image", l2n(np.asarray(image_vec, np.float32).reshape(-1)), i_weight))
        parts = [p for p in parts if p[2] > 0]
        if not parts:
            raise ValueError("alpha gives zero weight to the only query you gave")
        names = tuple(p[0] for p in parts)
        query = np.concatenate([w * v for _, v, w in parts])
        norm = float(np.linalg.norm(query))
        if norm == 0:
            raise ValueError("The query is empty (no words the text model knows?).")
        filters = {"category": list(categories)} if categories else None
        hits = self._view(names).query(query, k, filters=filters, exclude_id=exclude_id)
        results = []
        for h in hits:
            row = h.index
            t_score = float(self._part("text")[row] @ parts[0][1]) if "text" in names else None
            i_score = float(self.image[row] @ parts[-1][1]) if "image" in names else None
            results.append(Result(
                id=h.id, title=self.titles[row], category=self.categories[row], score=h.score * norm,
                image_path=self.image_paths[row], text_score=t_score, image_score=i_score,
            ))
        return results

    def more_like_this(
        self, item_id: str, *, alpha: float = DEFAULT_ALPHA, k: int = 10, categories: Optional[Sequence[str]] = None
    ) -> list[Result]:
        """Products like catalog item ``item_id`` (its own text and picture as the query), never itself."""
        row = self.position(item_id)
        text_vec = self._part("text")[row] if (self.has_text[row] or self.projected is not None) else None
        if alpha == 0.0 or text_vec is None:
            return self.search(image_vec=self.image[row], k=k, categories=categories, exclude_id=item_id)
        if alpha == 1.0:
            return self.search(text_vec=text_vec, k=k, categories=categories, exclude_id=item_id)
        return self.search(text_vec=text_vec, image_vec=self.image[row], alpha=alpha, k=k,
                           categories=categories, exclude_id=item_id)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, stem: Path, manifest: dict[str, Any], fmt: str = "npz") -> Path:
        """Vectors and string columns in one ``.npz`` (strings as fixed-width unicode, never pickled)."""
        arrays = {
            "text": self.text, "image": self.image,
            "ids": np.asarray(self.ids, dtype=str), "titles": np.asarray(self.titles, dtype=str),
            "categories": np.asarray(self.categories, dtype=str),
            "image_paths": np.asarray(self.image_paths, dtype=str), "texts": np.asarray(self.texts, dtype=str),
        }
        return save_arrays(stem, arrays, {"kind": INDEX_KIND, "schema": SCHEMA, **manifest}, fmt=fmt)

    @classmethod
    def load(cls, stem: Path, *, with_projection: bool = True) -> "MultimodalIndex":
        """Load an index (and its projection when present); a missing or stale one raises ``ArtifactError``."""
        arrays, manifest = load_arrays(stem, kind=INDEX_KIND, expect={"schema": SCHEMA}, hint=INDEX_HINT)
        projection = None
        proj_stem = Path(str(stem) + "-projection")
        if with_projection and proj_stem.with_suffix(".json").is_file():
            try:
                projection = Projection.load(proj_stem, expect={"index_checksum": manifest.get("data_checksum")})
            except ArtifactError as exc:
                log.warning("ignoring projection: %s", exc)
        return cls(
            arrays["ids"].tolist(), arrays["titles"].tolist(), arrays["categories"].tolist(),
            arrays["image_paths"].tolist(), arrays["text"], arrays["image"], texts=arrays["texts"].tolist(),
            manifest=manifest, projection=projection,
        )


def default_stem(name: str = "tuxpaint") -> Path:
    """``$RECS_MODELS_DIR/multimodal/<name>``: the index the app and the CLI use unless told otherwise."""
    return index_dir() / name
