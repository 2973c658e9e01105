"""Building the index (encode every product once) and training the image→text projection.

Why the projection is linear and trained with InfoNCE: the catalog has only ~800 (image, caption) pairs for
training, too few for anything deeper without memorising; a linear map from the frozen CNN features into the
frozen sentence space, pulled towards each image's own caption and away from the other captions in the batch
(symmetric, multi-positive where captions repeat), trains in seconds on a CPU and generalises to new pictures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageOps

from core.artifacts import read_json
from core.catalog.jobs import add_catalog
from core.catalog.sources import BUILTINS, SHIPPED_PREFIX
from core.catalog.store import open_catalog
from core.encoders import get_image_encoder, l2_normalize
from core.progress import ProgressFn
from core.spark import spark_job
from core.spark.encode import encode_catalog, encoder_spec
from core.text import get_text_encoder
from core.threads import torch_threads
from core.training import check_loss
from multimodal.data import Catalog, catalog_from_items, drop_unreadable_images
from multimodal.model import INDEX_KIND, SCHEMA, MultimodalIndex, Projection, default_stem, l2n

log = logging.getLogger(__name__)


@dataclass
class ProjectionConfig:
    """Hyper-parameters, chosen on a validation split carved from the training split (never the test split)."""

    epochs: int = 60
    lr: float = 3e-3
    weight_decay: float = 1e-3
    temperature: float = 0.3
    input_dropout: float = 0.2
    batch_size: int = 512
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def positive_mask(texts: Sequence[str]) -> np.ndarray:
    """(n, n) True where two items share the same text: repeated captions ("Hair.") are positives, not negatives."""
    keys = np.asarray([t.strip().lower() for t in texts])
    return keys[:, None] == keys[None, :]


def info_nce(pred: "torch.Tensor", target: "torch.Tensor", positives: "torch.Tensor", temperature: float):  # noqa: F821
    """Symmetric multi-positive InfoNCE between projected images ``pred`` and caption vectors ``target``.

    Both are (b, d) and L2-normalised; ``positives`` is the (b, b) same-text mask. Each row's target
    distribution spreads evenly over its positives.
    """
    logits = pred @ target.T / temperature
    soft = positives.float() / positives.float().sum(dim=1, keepdim=True)
    loss_i2t = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t2i = -(soft * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def train_projection(
    image_views: Sequence[np.ndarray],
    text: np.ndarray,
    texts: Sequence[str],
    config: Optional[ProjectionConfig] = None,
    *,
    progress: Optional[ProgressFn] = None,
) -> tuple[Projection, list[float]]:
    """Fit ``Projection`` on aligned rows: ``image_views`` is a list of (n, D_img) arrays (the picture and its
    augmentations, e.g. a mirrored copy; one is drawn per item per step), ``text`` (n, D_txt) the caption vectors.

    Returns the projection and the per-epoch training loss (tests check that it falls).
    """
    cfg = config or ProjectionConfig()
    keep = np.linalg.norm(text, axis=1) > 0.5  # items with no text teach nothing
    views = [np.asarray(v, np.float32)[keep] for v in image_views]
    target_np = l2n(text[keep])
    texts = [t for t, k in zip(texts, keep) if k]
    n, d_img, d_txt = len(target_np), views[0].shape[1], target_np.shape[1]
    if n < 2:
        raise ValueError("the projection needs at least two (image, text) pairs")
    # One thread: these matrices are tiny, and on a shared 2-core machine extra threads only wait on each other
    # (measured: 0.6 s per step with the encoder's thread count under load vs milliseconds with one).
    with torch_threads(1):
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        linear = torch.nn.Linear(d_img, d_txt)
        opt = torch.optim.AdamW(linear.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        stacked = torch.from_numpy(np.stack(views))  # (V, n, D)
        target = torch.from_numpy(target_np)
        mask = torch.from_numpy(positive_mask(texts))
        dropout = torch.nn.Dropout(cfg.input_dropout)
        losses: list[float] = []
        first: Optional[float] = None
        start = time.time()
        for epoch in range(cfg.epochs):
            linear.train()
            order = torch.randperm(n, generator=gen)
            total, batches = 0.0, 0
            for s in range(0, n, cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                pick = torch.randint(0, len(views), (len(idx),), generator=gen)
                x = stacked[pick, idx]
                pred = torch.nn.functional.normalize(linear(dropout(x)), dim=1)
                loss = info_nce(pred, target[idx], mask[idx][:, idx], cfg.temperature)
                value = check_loss(loss.detach(), "product projection", f"epoch {epoch + 1}", first)
                first = value if first is None else first
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += value
                batches += 1
            losses.append(total / max(batches, 1))
            if progress is not None:
                progress((epoch + 1) / cfg.epochs, f"training projection (loss {losses[-1]:.3f})")
    log.info("projection: %d pairs, %d epochs, loss %.3f → %.3f in %.1f s", n, cfg.epochs, losses[0], losses[-1],
             time.time() - start)
    weight = linear.weight.detach().numpy().T.astype(np.float32).copy()
    bias = linear.bias.detach().numpy().astype(np.float32).copy()
    info = {"pairs": int(n), "views": len(views), "config": {k: v for k, v in vars(cfg).items() if k != "extra"},
            "loss_first": losses[0], "loss_last": losses[-1]}
    return Projection(weight, bias, info), losses


def hflip(images: Sequence) -> list:
    """Mirror images left-right (the cheapest augmentation that keeps a product what it is)."""
    return [ImageOps.mirror(im) for im in images]


def center_crop(images: Sequence, keep: float = 0.8) -> list:
    """Keep the central ``keep`` fraction of each side (a tighter framing of the same product)."""
    out = []
    for im in images:
        w, h = im.size
        dw, dh = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
        out.append(im.crop((dw, dh, w - dw, h - dh)))
    return out


def _is_fresh(stem: Path, want: dict[str, Any], projection: bool) -> bool:
    """True when the index at ``stem`` was built from the same data with the same encoders (``want``: manifest
    keys and their values) and, when one is wanted, its projection exists."""
    manifest_path = stem.with_suffix(".json")
    if not manifest_path.is_file():
        return False
    try:
        old = read_json(manifest_path)
    except Exception:  # noqa: BLE001 - an unreadable manifest means rebuild
        return False
    return (old.get("kind") == INDEX_KIND and old.get("schema") == SCHEMA
            and all(old.get(key) == value for key, value in want.items())
            and (not projection or Path(str(stem) + "-projection.json").is_file()))


def build_index(
    catalog: Catalog,
    *,
    stem: Optional[Path] = None,
    text_model: str = "all-MiniLM-L6-v2",
    backbone: str = "efficientnet_lite0",
    pooling: str = "max",
    allow_download: bool = False,
    force: bool = False,
    projection: bool = True,
    projection_config: Optional[ProjectionConfig] = None,
    augment: bool = False,
    progress: Optional[ProgressFn] = None,
    engine: str = "local",
    master: Optional[str] = None,
    image_vectors: Optional[np.ndarray] = None,
    extra_manifest: Optional[dict[str, Any]] = None,
) -> tuple[Path, bool]:
    """Encode the catalog (text + image), save the index atomically, train + save the projection.

    Skips (returns ``(stem, False)``) when an index with the same data checksum and encoder specs exists,
    unless ``force``. The projection is trained on all products that have text (the app's model; the
    evaluation trains its own on the training split only). ``augment`` adds mirrored pictures to the
    projection's training (+1 encoding pass, ~25 % of the build; validation R@10 0.615 with vs 0.608 without,
    so ``make run`` does without). ``engine="spark"`` encodes the pictures on Spark (``master``: default
    ``local[*]``) with the same ONNX encoder, so the vectors equal the in-process ones. ``image_vectors`` (one
    row per product, made by the same image encoder) are used instead of encoding the pictures: the Product
    search head of a catalog built by ``core.catalog`` reuses that catalog's vectors. ``extra_manifest`` is
    recorded in the index manifest (which catalog it was fitted on).
    """
    stem = Path(stem) if stem is not None else default_stem(catalog.name)
    t0 = time.time()
    checksum = catalog.checksum()
    text_enc = get_text_encoder(text_model, allow_download=allow_download)
    image_enc = get_image_encoder(backbone, pooling=pooling, allow_download=allow_download)
    want = {"data_checksum": checksum, "text_encoder": text_enc.spec, "image_encoder": image_enc.spec,
            **(extra_manifest or {})}
    if not force and _is_fresh(stem, want, projection):
        log.info("index %s is fresh (checksum %s); use --force to rebuild", stem, checksum)
        return stem, False
    images: Optional[list] = None
    if image_vectors is None:
        catalog, images = drop_unreadable_images(catalog)
    elif len(image_vectors) != len(catalog):
        raise ValueError(f"{len(image_vectors)} image vectors for {len(catalog)} products")
    texts = [p.text for p in catalog.products]
    text_vecs = text_enc.encode(texts, progress=progress, desc="encoding product text")
    if image_vectors is not None:
        image_vecs = np.asarray(image_vectors, np.float32)
    elif engine == "spark":
        image_vecs = spark_image_vectors([p.image_path for p in catalog.products], image_enc.spec, master)
    else:
        image_vecs = image_enc.encode(images, progress=progress)
    index = MultimodalIndex(
        catalog.ids, [p.title for p in catalog.products], [p.category for p in catalog.products],
        [str(p.image_path) for p in catalog.products], text_vecs, image_vecs, texts=texts,
    )
    manifest = {
        "catalog": {"name": catalog.name, "kind": catalog.kind, "source": catalog.source, "items": len(catalog),
                    "text_fields": list(catalog.text_fields), "skipped": catalog.skipped},
        "data_checksum": checksum,
        "text_encoder": text_enc.spec,
        "image_encoder": image_enc.spec,
        "fusion": "alpha*cos_text + (1-alpha)*cos_image (renormalised weighted concatenation)",
        "allow_download": allow_download,
        "engine": engine,
        **(extra_manifest or {}),
    }
    if projection:
        if augment and images is None:
            _, images = drop_unreadable_images(catalog)
        views = [image_vecs] + ([image_enc.encode(hflip(images), progress=progress)] if augment else [])
        proj, _ = train_projection(views, text_vecs, texts, projection_config, progress=progress)
        proj.info.update({"index_checksum": checksum, "text_encoder": text_enc.spec,
                          "image_encoder": image_enc.spec, "trained_on": "all products with text"})
        proj.save(Path(str(stem) + "-projection"))
    index.save(stem, {**manifest, "build_seconds": round(time.time() - t0, 1)})
    log.info("index %s: %d products in %.1f s", stem, len(index), time.time() - t0)
    return stem, True


def build_catalog_head(name: str, *, kind: str = "catalog", force: bool = False, projection: bool = True,
                       augment: bool = False, progress: Optional[ProgressFn] = None) -> tuple[Path, bool, dict[str, Any]]:
    """The Product search head of catalog ``name``: built by ``core.catalog`` first when it is a shipped catalog
    (``shipped:NAME``, skipped when fresh), then the product text, the image→text projection and the saved index,
    fitted on the catalog's own items and image vectors, so no picture is decoded or encoded a second time.

    Returns (index stem, whether the head was rebuilt, the catalog's build summary or ``{}``). The head is fresh
    while the catalog's build and the products' data checksum are unchanged.
    """
    summary: dict[str, Any] = {}
    if name in BUILTINS:
        summary = add_catalog(name, f"{SHIPPED_PREFIX}{name}", update=True, progress=progress)
    built = open_catalog(name)
    products = catalog_from_items(name, built.items, kind=kind)
    stem, rebuilt = build_index(products, force=force, projection=projection, augment=augment, progress=progress,
                                image_vectors=built.index.vectors,
                                extra_manifest={"built_from": {"catalog": name, "created": built.manifest["created"]}})
    return stem, rebuilt, summary


def spark_image_vectors(paths: Sequence[Path | str], spec: dict[str, Any], master: Optional[str] = None) -> np.ndarray:
    """L2-normalised image vectors of ``paths`` computed on Spark executors, in the given order.

    ``spec`` is the in-process encoder's ``spec``; its backbone, pooling and input size are what the
    executors build (ONNX runtime, as in process). On a cluster every executor must see the paths.
    """
    settings = encoder_spec(str(spec["backbone"]), str(spec["pooling"]), "onnx", int(spec["input_size"]))
    with spark_job(master, app_name="multimodal-index") as spark:
        return l2_normalize(encode_catalog(spark, list(paths), settings))
