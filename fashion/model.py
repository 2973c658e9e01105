"""The visual-similarity recommender: CNN features → global max pool → L2 norm → (projection) → nearest neighbours.

A ``FashionIndex`` owns everything a query needs: the encoder settings, the optional learned
projection, the catalog's vectors, ids and labels, and how to bring a query photo to the catalog's
look. For Fashion-MNIST (28 px, grey, garment light on black) an uploaded colour photo is turned into
exactly that look first: grey, background removed, cropped to the garment, longest side 28 px,
centred (the dataset's own recipe), and then goes through the same resize as the catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from core.artifacts import ArtifactError, MODELS_DIR, load_arrays, save_arrays
from core.encoders import ImageEncoder, get_image_encoder, l2_normalize
from core.images import ImageSource, load_image
from core.int8 import resolve_precision
from core.progress import ProgressFn, track
from core.search import Hit, VectorIndex
from fashion.data import Catalog

log = logging.getLogger(__name__)

KIND = "fashion-index"
SCHEMA = 1
#: Suffix of the FAISS file saved beside ``<stem>.npz`` when the search index is not exact.
FAISS_SUFFIX = ".faiss"
#: Fashion-MNIST garments are encoded at this size instead of 224 px: 28 px images hold no more detail, 96 px
#: beat 64 px on a validation split of train (0.798 vs 0.785 precision@10, bench/fashion_choices.py) and has
#: ~5× fewer pixels than 224 px.
GREY28_INPUT_SIZE = 96


@dataclass
class EncoderConfig:
    """How vectors are made; recorded in the manifest so a mismatching query pipeline is caught."""

    backbone: str = "efficientnet_lite0"
    pooling: str = "max"
    input_size: Optional[int] = None
    runtime: str = "onnx"
    weights: Optional[str] = None
    #: int8 or fp32; None means this machine's default (``core.int8.resolve_precision``), fixed at creation so
    #: the manifest records what the vectors were made with and queries use the same.
    precision: Optional[str] = None

    def __post_init__(self) -> None:
        if self.precision is None:
            self.precision = resolve_precision() if self.runtime == "onnx" else "fp32"

    def encoder(self) -> ImageEncoder:
        return get_image_encoder(self.backbone, self.pooling, self.runtime, self.input_size, self.weights,
                                 precision=self.precision)


# ----------------------------------------------------------------------------------------------
# bringing images to the catalog's look


def to_fashion_mnist_style(image: ImageSource | Image.Image) -> np.ndarray:
    """A photo → a (28, 28) uint8 Fashion-MNIST-style image: garment light on black, longest side 28 px.

    Fashion-MNIST was made by trimming product photos, resizing the longest edge to 28 px, negating
    and converting to grey; we apply the same recipe. The background is estimated from the border
    (product shots are on white, so the image is negated when the border is bright).
    """
    img = image if isinstance(image, Image.Image) else load_image(image)
    grey = np.asarray(ImageOps.grayscale(img), dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    fg = grey if background < 128 else 255.0 - grey
    fg = np.clip(fg - min(background, 255.0 - background), 0, None)
    peak = float(fg.max())
    if peak <= 0:
        return np.zeros((28, 28), np.uint8)
    fg = fg / peak * 255.0
    ys, xs = np.nonzero(fg > 0.1 * 255.0)
    fg = fg[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = fg.shape
    scale = 28.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(fg.astype(np.uint8), mode="L").resize((nw, nh), Image.Resampling.LANCZOS)
    canvas = np.zeros((28, 28), np.uint8)
    top, left = (28 - nh) // 2, (28 - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(small)
    return canvas


def grey28_batch(pixels: np.ndarray, size: int) -> np.ndarray:
    """(N, 28, 28) uint8 light-on-black → (N, 3, size, size) floats in [0, 1], dark garment on white.

    Negated back to dark-on-white because ImageNet features describe products photographed on white
    better than glowing silhouettes (measured: +1 point precision@10 frozen).
    """
    x = 1.0 - torch.from_numpy(np.ascontiguousarray(pixels)).float()[:, None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    return x.repeat(1, 3, 1, 1).numpy()


def catalog_features(
    catalog: Catalog, encoder: ImageEncoder, *, batch_size: int = 256, progress: Optional[ProgressFn] = None
) -> np.ndarray:
    """Pooled (not yet normalised) CNN features for every catalog item, in catalog order.

    Works batch by batch (one progress bar over the whole catalog) so 70k items never sit in memory
    as 96 px tensors at once.
    """
    out = np.zeros((len(catalog), encoder.dim), np.float32)
    starts = range(0, len(catalog), batch_size)
    for start in track(starts, desc=f"encoding {catalog.name}", progress=progress, unit="batch"):
        stop = min(start + batch_size, len(catalog))
        if catalog.grey28:
            batch = encoder.normalize_array(grey28_batch(catalog.pixels[start:stop], encoder.input_size))
        else:
            batch = np.stack([encoder.preprocess(catalog.image(i)) for i in range(start, stop)])
        out[start:stop] = _pool_raw(encoder, encoder.grid_batch(batch))
    return out


def _pool_raw(encoder: ImageEncoder, grid: np.ndarray) -> np.ndarray:
    return (grid.max(axis=(2, 3)) if encoder.pooling == "max" else grid.mean(axis=(2, 3))).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# the learned projection (trained in fashion/train.py)


class Projection(torch.nn.Module):
    """features (N, D) → L2-normalised embedding (N, dim): a small MLP with a residual linear path."""

    def __init__(self, in_dim: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_dim, dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.linear(x) + self.mlp(x), dim=-1)


def build_projection(weights: dict[str, np.ndarray]) -> Projection:
    """Rebuild the projection module from saved weights (shapes are read off the weights)."""
    in_dim = weights["projection.linear.weight"].shape[1]
    dim = weights["projection.linear.weight"].shape[0]
    hidden = weights["projection.mlp.0.weight"].shape[0]
    model = Projection(in_dim, dim, hidden)
    model.load_state_dict({k.removeprefix("projection."): torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return model.eval()


def apply_projection(
    weights: dict[str, np.ndarray] | Projection, features: np.ndarray, batch: int = 8192
) -> np.ndarray:
    """Map features through the projection (saved weights or a built module); normalised numpy out."""
    model = weights if isinstance(weights, Projection) else build_projection(weights)
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch):
            out.append(model(torch.as_tensor(np.asarray(features[start : start + batch], dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.linear.out_features), np.float32)


def finish_features(features: np.ndarray, projection: Optional[dict[str, np.ndarray] | Projection]) -> np.ndarray:
    """Pooled features → the index's space: the projection if there is one (it takes raw pooled
    features, which measured 2 points better than normalised ones), else L2 normalisation."""
    if projection is not None:
        return apply_projection(projection, features)
    return l2_normalize(features)


# ----------------------------------------------------------------------------------------------
# the index


@dataclass
class FashionIndex:
    """Catalog vectors + everything needed to embed a query the same way."""

    catalog: str
    ids: list[str]
    labels: list[str]
    titles: list[str]
    vectors: np.ndarray
    encoder_config: EncoderConfig
    grey28: bool
    projection: Optional[dict[str, np.ndarray]] = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = VectorIndex(self.vectors, self.ids, {"label": self.labels, "title": self.titles})
        # built once: rebuilding the MLP per query cost ~70 ms of an interactive search
        self._projection = build_projection(self.projection) if self.projection is not None else None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def search_info(self) -> dict[str, Any]:
        """Kind, parameters and recall@10 against exact of the search structure (shown in the tab)."""
        return dict(self._index.info)

    def use_search(self, kind: str = "auto", params: Optional[dict[str, Any]] = None) -> None:
        """Build the search structure ``kind`` (exact, flat, hnsw, ivfpq; auto = by catalog size) over the vectors."""
        self._index.build(kind, params)

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))

    # -- embedding ------------------------------------------------------------------------------
    def finish(self, features: np.ndarray) -> np.ndarray:
        return finish_features(features, self._projection)

    def embed(self, images: Sequence[ImageSource | Image.Image]) -> np.ndarray:
        """Query images → vectors comparable with the catalog's (catalog-look preprocessing included)."""
        encoder = self.encoder_config.encoder()
        if self.grey28:
            pixels = np.stack([to_fashion_mnist_style(im) for im in images])
            grid = encoder.grid(encoder.normalize_array(grey28_batch(pixels, encoder.input_size)))
        else:
            loaded = [im if isinstance(im, Image.Image) else load_image(im) for im in images]
            grid = encoder.grid(loaded)
        return self.finish(_pool_raw(encoder, grid))

    # -- queries ---------------------------------------------------------------------------------
    def search(self, image: ImageSource | Image.Image, k: int = 10, categories: Optional[Sequence[str]] = None) -> list[Hit]:
        """Items most similar to an uploaded image; nothing is excluded (the best match stays first)."""
        return self._index.query(self.embed([image])[0], k, filters={"label": list(categories or [])})

    def similar(self, item_id: str, k: int = 10, categories: Optional[Sequence[str]] = None) -> list[Hit]:
        """Items most similar to a catalog item, leaving the item itself out."""
        return self._index.query(self._index.vector(item_id), k, filters={"label": list(categories or [])}, exclude_id=item_id)

    # -- storage -------------------------------------------------------------------------------
    def save(self, stem: Path) -> Path:
        """Vectors + metadata (.npz), the FAISS structure if any (.faiss), then the manifest naming both.

        The FAISS file is written first, so a crash leaves the old manifest, whose checksum then no
        longer matches and the index is reported stale instead of being half-used.
        """
        faiss_path = stem.with_suffix(FAISS_SUFFIX)
        search = self._index.save_faiss(faiss_path)
        if self._index.faiss is None and faiss_path.exists():
            faiss_path.unlink()
        arrays: dict[str, np.ndarray] = {
            "vectors": self.vectors.astype(np.float32),
            "ids": np.asarray(self.ids, dtype=str),
            "labels": np.asarray(self.labels, dtype=str),
            "titles": np.asarray(self.titles, dtype=str),
        }
        if self.projection is not None:
            arrays.update(self.projection)
        manifest = {
            "kind": KIND,
            "schema": SCHEMA,
            **self.manifest,
            "catalog": self.catalog,
            "grey28": self.grey28,
            "encoder": self.encoder_config.__dict__,
            "projection": self.projection is not None,
            "items": len(self.ids),
            "search": search,
        }
        return save_arrays(stem, arrays, manifest)

    @classmethod
    def load(cls, stem: Path, expect: Optional[dict[str, Any]] = None) -> "FashionIndex":
        hint = f"python -m fashion index --catalog {stem.name} --force"
        arrays, manifest = load_arrays(stem, kind=KIND, expect={"schema": SCHEMA, **(expect or {})}, hint=hint)
        try:
            projection = {k: v for k, v in arrays.items() if k.startswith("projection.")} or None
            index = cls(
                catalog=manifest["catalog"],
                ids=arrays["ids"].tolist(),
                labels=arrays["labels"].tolist(),
                titles=arrays["titles"].tolist(),
                vectors=arrays["vectors"],
                encoder_config=EncoderConfig(**manifest["encoder"]),
                grey28=bool(manifest["grey28"]),
                projection=projection,
                manifest=manifest,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{stem} is incomplete ({exc}). Rebuild it with `{hint}`.") from exc
        search = manifest.get("search") or {"kind": "exact", "params": {}, "recall@10": 1.0}
        index._index.load_faiss(stem.with_suffix(FAISS_SUFFIX), search, hint=hint)
        return index


def index_stem(catalog_key: str) -> Path:
    return MODELS_DIR / "fashion" / catalog_key
