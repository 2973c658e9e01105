"""Evaluation: class retrieval quality of Fashion-MNIST test images against the train catalog.

Protocol (fixed, leak-free): the official split; every one of the 10,000 test images is a query
against the 60,000 train images (full ranking, exact cosine); an item is relevant when it has the
query's class. Metrics are the standard ones of ``core.metrics``: precision@1 and @10, MAP@10
(average precision over the top 10 divided by min(10, relevant items)) and NDCG@10, each the mean over
queries with a 95 % bootstrap interval over queries (``ci95``); sets under ``core.metrics.SMALL_SET``
queries (the 13 colour photos) carry ``small_set: true``. The projection is fitted on train features
and labels only. Methods, measured in the same run:

- ``model``: the shipped pipeline (EfficientNet-Lite0 → global max pool → L2 → learned projection)
- ``frozen``: the same encoder without the projection (ImageNet features as they are)
- ``pixel_knn``: cosine kNN on the raw 784 pixels (the baseline to beat)
- ``photo:catalog_look`` / ``photo:plain``: Tux Paint colour clothing photos whose kind has a
  Fashion-MNIST class (jeans → Trouser, ...) as queries against the train catalog, with the
  Fashion-MNIST-style query preprocessing and with a plain grey resize: does the upload path work?
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageOps

from core.artifacts import MODELS_DIR, ArtifactError
from core.datasets import DataUnavailable
from core.encoders import l2_normalize
from core.evaluation import Split
from core.evaluation import evaluate as run_evaluation
from core.progress import ProgressFn
from core.search import VectorIndex
from fashion.data import Catalog, catalog_key, load_fashion_mnist, load_tuxpaint_clothes
from fashion.model import (
    GREY28_INPUT_SIZE, EncoderConfig, FashionIndex, _pool_raw, apply_projection, grey28_batch,
    index_stem,
)
from fashion.train import ProjectionConfig, cached_features, train_projection

log = logging.getLogger(__name__)

#: Tux Paint clothing stamps whose kind is one of Fashion-MNIST's classes (the rest have no counterpart).
TUXPAINT_TO_FASHION_MNIST = {
    "clothes/bellbottoms": "Trouser",
    "clothes/bluejeans1": "Trouser",
    "clothes/bluejeans2": "Trouser",
    "clothes/t_pants": "Trouser",
    "clothes/white_pants": "Trouser",
    "clothes/black_dress": "Dress",
    "clothes/hikingboot": "Ankle boot",
    "clothes/jacket": "Coat",
    "clothes/t_jacket": "Coat",
    "clothes/red_handbag": "Bag",
    "clothes/t-shirt_01": "T-shirt/top",
    "clothes/t_tshirt": "T-shirt/top",
    "clothes/red_highheel": "Sandal",
}


#: The table's metrics (``core.metrics`` definitions): MAP@10 divides by min(10, items of the query's class), so a
#: query with 3 of 10 relevant scores below one with 10 of 10, which dividing by the hits found would hide.
METRICS = ("precision@1", "precision@10", "map@10", "ndcg@10")


class SameClass(AbstractSet):
    """The catalog items of one class, as a container: membership and count without listing 6,000 rows."""

    def __init__(self, catalog_labels: np.ndarray, label: str, count: int) -> None:
        self.labels, self.label, self.count = catalog_labels, label, count

    def __contains__(self, row: object) -> bool:
        return bool(self.labels[int(row)] == self.label)  # type: ignore[call-overload]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:  # a Set; evaluation only asks membership and size
        return iter(np.nonzero(self.labels == self.label)[0].tolist())


class VectorRanker:
    """One method: its query vectors against its catalog vectors, exact cosine (queries are query row numbers)."""

    def __init__(self, name: str, queries: np.ndarray, catalog: np.ndarray) -> None:
        self.name, self.queries = name, queries
        self.index = VectorIndex(catalog, [str(i) for i in range(len(catalog))], normalize=True)

    def rank(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(self.queries[np.asarray(queries)], k)[0]


def class_split(catalog_labels: np.ndarray, query_labels: np.ndarray, name: str) -> Split:
    """Queries 0..n-1; relevant = the catalog items sharing the query's class."""
    classes, counts = np.unique(catalog_labels, return_counts=True)
    count = dict(zip(classes.tolist(), counts.tolist()))
    return Split(np.arange(len(query_labels)),
                 [SameClass(catalog_labels, q, count.get(q, 0)) for q in np.asarray(query_labels).tolist()], name=name)


def evaluation_path() -> Path:
    """Where ``python -m fashion evaluate`` keeps its last results for the tab to show."""
    return MODELS_DIR / "fashion" / "evaluation.json"


def evaluate(
    config: Optional[EncoderConfig] = None,
    *,
    max_queries: Optional[int] = None,
    k: int = 10,
    progress: Optional[ProgressFn] = None,
    catalog: Optional[Catalog] = None,
) -> dict[str, dict[str, Any]]:
    """Run every method on the same split; returns ``{method: {metric: value}}``."""
    config = config or EncoderConfig(input_size=GREY28_INPUT_SIZE)
    catalog = catalog or load_fashion_mnist()
    if catalog.split is None:
        raise DataUnavailable("evaluation needs a catalog with a train/test split (Fashion-MNIST)")
    train = np.where(catalog.split == "train")[0]
    test = np.where(catalog.split == "test")[0]
    if max_queries is not None and max_queries < len(test):
        test = np.random.default_rng(0).choice(test, max_queries, replace=False)
    labels = np.asarray(catalog.labels)
    features = cached_features(catalog, config, progress)
    frozen = l2_normalize(features)
    weights, final_loss = _shipped_projection(catalog, config)
    if weights is None:  # no matching index: fit the projection here, on train items only
        weights, losses = train_projection(features[train], labels[train].tolist(), ProjectionConfig())
        final_loss = losses[-1]
    projected = apply_projection(weights, features)
    pixels = catalog.pixels.reshape(len(catalog), -1).astype(np.float32)
    models = [VectorRanker(method, vectors[test], vectors[train])
              for method, vectors in (("model", projected), ("frozen", frozen), ("pixel_knn", pixels))]
    table = run_evaluation(models, class_split(labels[train], labels[test], "Fashion-MNIST test"), _metrics(k), k=k)
    results: dict[str, dict[str, Any]] = {name: row.nested() for name, row in table.items()}
    results["model"]["projection_final_loss"] = round(float(final_loss), 4)

    try:
        results.update(_photo_queries(catalog, train, config, weights, k))
    except DataUnavailable as exc:
        log.warning("photo-query check skipped: %s", exc)
    return results


def _shipped_projection(catalog: Catalog, config: EncoderConfig) -> "tuple[Optional[dict], float]":
    """The projection of the built index for this very catalog and encoder, so `model` measures the shipped
    artifact; (None, nan) when there is none (its projection was fitted on the train split only)."""
    try:
        index = FashionIndex.load(index_stem(catalog_key(catalog.name)),
                                  expect={"encoder": config.__dict__, "data": catalog.checksum(), "projection": True})
    except ArtifactError:
        return None, float("nan")
    return index.projection, float(index.manifest.get("projection_final_loss", float("nan")))


def _photo_queries(catalog: Catalog, train: np.ndarray, config: EncoderConfig, weights: dict, k: int) -> dict[str, dict[str, Any]]:
    """Colour photos → the grey 28 px catalog, with and without the Fashion-MNIST-style query preprocessing."""
    clothes = load_tuxpaint_clothes()
    rows = [i for i, item in enumerate(clothes.ids) if item in TUXPAINT_TO_FASHION_MNIST]
    truth = np.asarray([TUXPAINT_TO_FASHION_MNIST[clothes.ids[i]] for i in rows])
    photos = [clothes.image(i) for i in rows]
    encoder = config.encoder()
    catalog_vectors = apply_projection(weights, cached_features(catalog, config)[train])
    train_labels = np.asarray(catalog.labels)[train]
    # the index object only supplies the query pipeline here; its catalog vectors are not used
    index = FashionIndex(catalog.name, [], [], [], np.zeros((0, 1), np.float32), config, True, weights)
    pixels = np.stack([_plain_grey28(p) for p in photos])
    grid = encoder.grid(encoder.normalize_array(grey28_batch(pixels, encoder.input_size)))
    models = [VectorRanker("photo:catalog_look", index.embed(photos), catalog_vectors),
              VectorRanker("photo:plain", index.finish(_pool_raw(encoder, grid)), catalog_vectors)]
    table = run_evaluation(models, class_split(train_labels, truth, "Tux Paint clothing photos"), _metrics(k), k=k)
    return {name: row.nested() for name, row in table.items()}


def _metrics(k: int) -> tuple[str, ...]:
    """``METRICS`` at cut-off ``k`` (precision@1 stays at 1)."""
    return ("precision@1", f"precision@{k}", f"map@{k}", f"ndcg@{k}")


def _plain_grey28(image: Image.Image) -> np.ndarray:
    """The naive query path: grey, squash to 28×28, no background removal, crop or negation."""
    return np.asarray(ImageOps.grayscale(image).resize((28, 28), Image.Resampling.BILINEAR), dtype=np.uint8)
