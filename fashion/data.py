"""Fashion catalogs: loading, ids, labels, splits.

Four sources behind one ``Catalog`` shape, so the index, the evaluation and the UI never special-case one:

- ``fashion-mnist`` (default): 70,000 real Zalando product photos, 28×28 grey, 10 classes, from the
  Debian package ``dataset-fashion-mnist`` (60k train / 10k test, the official split).
- ``tuxpaint-clothes``: the 48 colour clothing images of Tux Paint's ``clothes/`` (Debian
  ``tuxpaint-stamps-default``), labelled by sub-folder or name.
- ``kaggle``: the Kaggle "Fashion Product Images" layout, ``styles.csv`` + ``images/<id>.jpg``.
- a plain folder of images (labels from sub-folder names, if any).
"""

from __future__ import annotations

import csv
import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from core.artifacts import checksum_arrays, checksum_strings
from core.catalog.sources import clothes_kind
from core.datasets import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_PACKAGE,
    DataUnavailable,
    ensure_debian_package,
    load_tuxpaint,
)
from core.images import ImageError, load_any

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CATALOGS = ("fashion-mnist", "tuxpaint-clothes")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".svg"}


@dataclass
class Catalog:
    """Items to search among: ids, a category label and a title per item, and a way to get each image.

    ``pixels`` is set for small grey catalogs (Fashion-MNIST: (N, 28, 28) uint8, white garment on black)
    so they can be batch-resized without a PIL round trip; otherwise ``paths`` point at image files.
    ``split`` marks "train"/"test" rows where the source defines a split.
    """

    name: str
    ids: list[str]
    labels: list[str]
    titles: list[str]
    paths: list[Optional[Path]] = field(default_factory=list)
    pixels: Optional[np.ndarray] = None
    split: Optional[np.ndarray] = None
    report: dict[str, int] = field(default_factory=dict)
    source: str = ""
    _rows: Optional[dict[str, int]] = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def grey28(self) -> bool:
        """True for Fashion-MNIST-style catalogs: queries must be brought to the same look."""
        return self.pixels is not None

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))

    def row(self, item_id: str) -> Optional[int]:
        """Row of ``item_id`` (None if absent); the id → row map is built once per catalog."""
        if self._rows is None:
            self._rows = {item: i for i, item in enumerate(self.ids)}
        return self._rows.get(item_id)

    def checksum(self) -> str:
        """Identity of the catalog's content, recorded in index manifests to detect stale indexes."""
        if self.pixels is not None:
            return checksum_arrays(self.pixels, np.asarray(self.labels))
        parts = [f"{i}|{l}|{p}|{p.stat().st_size if p and p.exists() else 0}" for i, l, p in zip(self.ids, self.labels, self.paths)]
        return checksum_strings(parts)

    def image(self, i: int) -> Image.Image:
        """Item ``i`` as an RGB image (for display and for encoding file-based catalogs)."""
        if self.pixels is not None:
            return Image.fromarray(self.pixels[i], mode="L").convert("RGB")
        path = self.paths[i]
        if path is None:
            raise ImageError(f"item {self.ids[i]} has no image")
        return load_any(path)

    def subset(self, rows: Sequence[int] | np.ndarray) -> "Catalog":
        rows = np.asarray(rows, dtype=np.int64)
        return Catalog(
            name=self.name,
            ids=[self.ids[i] for i in rows],
            labels=[self.labels[i] for i in rows],
            titles=[self.titles[i] for i in rows],
            paths=[self.paths[i] for i in rows] if self.paths else [],
            pixels=self.pixels[rows] if self.pixels is not None else None,
            split=self.split[rows] if self.split is not None else None,
            report=dict(self.report),
            source=self.source,
        )


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by MNIST and Fashion-MNIST, with a magic-number check."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0:
        raise DataUnavailable(f"{path} is not an IDX file.")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DataUnavailable(f"{path}: only unsigned-byte IDX files are supported.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(shape)):
        raise DataUnavailable(f"{path} is truncated: expected {int(np.prod(shape))} values, found {arr.size}.")
    return arr.reshape(shape)


def load_fashion_mnist(root: str | Path | None = None, *, install: bool = False) -> Catalog:
    """All 70,000 Fashion-MNIST items; ``split`` marks the official 60k train / 10k test.

    A missing dataset raises ``DataUnavailable`` naming the command that installs it; the app never installs.
    """
    if root is None:
        ensure_debian_package(FASHION_MNIST_PACKAGE, FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", install=install)
        root = FASHION_MNIST_DIR
    root = Path(root)
    parts = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img = _find(root, f"{prefix}-images-idx3-ubyte")
        lab = _find(root, f"{prefix}-labels-idx1-ubyte")
        x, y = read_idx(img), read_idx(lab)
        if len(x) != len(y) or x.shape[1:] != (28, 28):
            raise DataUnavailable(f"{img} and {lab} do not match ({x.shape} vs {y.shape}).")
        parts.append((split, x, y))
    pixels = np.concatenate([p[1] for p in parts])
    labels_idx = np.concatenate([p[2] for p in parts])
    split = np.concatenate([np.full(len(p[1]), p[0]) for p in parts])
    ids = [f"{s}-{i:05d}" for p in parts for s, i in zip([p[0]] * len(p[1]), range(len(p[1])))]
    labels = [FASHION_MNIST_CLASSES[int(i)] for i in labels_idx]
    titles = [f"{label} #{item}" for label, item in zip(labels, ids)]
    return Catalog("fashion-mnist", ids, labels, titles, [], pixels, split, source=str(root))


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataUnavailable(f"{root} has no {stem}(.gz); is it a Fashion-MNIST folder?")


# ----------------------------------------------------------------------------------------------
# Tux Paint clothes, Kaggle, folders


def load_tuxpaint_clothes(root: str | Path | None = None) -> Catalog:
    """Tux Paint's clothing stamps, labelled by kind (hats, tops, bottoms, dresses, footwear, accessories)."""
    stamps = load_tuxpaint(root, categories=["clothes"], one_per_stamp=True)
    ids = [s.id for s in stamps]
    labels = [clothes_kind(s.id, s.caption) for s in stamps]
    titles = [s.caption.rstrip(".") for s in stamps]
    return Catalog("tuxpaint-clothes", ids, labels, titles, [s.image_path for s in stamps], source="tuxpaint")


KAGGLE_COLUMNS = (
    "id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
    "productDisplayName",
)


def load_kaggle(root: str | Path, *, label_column: str = "articleType") -> Catalog:
    """Kaggle "Fashion Product Images": ``styles.csv`` + ``images/<id>.jpg``.

    The real ``styles.csv`` has rows whose product name contains unquoted commas; those rows have too
    many fields and are counted in ``report['malformed']`` and skipped, as are rows whose image is missing.
    """
    root = Path(root)
    styles = root / "styles.csv"
    if not styles.is_file():
        raise DataUnavailable(f"{root} has no styles.csv; expected the Kaggle Fashion Product Images layout.")
    if label_column not in KAGGLE_COLUMNS:
        raise ValueError(f"label_column must be one of {KAGGLE_COLUMNS}")
    ids, labels, titles, paths = [], [], [], []
    report = {"rows": 0, "malformed": 0, "missing_image": 0, "duplicates": 0}
    seen: set[str] = set()
    with open(styles, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if [h.strip() for h in header[: len(KAGGLE_COLUMNS)]] != list(KAGGLE_COLUMNS):
            raise DataUnavailable(f"{styles} header is {header}, expected {list(KAGGLE_COLUMNS)}.")
        col = {name: i for i, name in enumerate(KAGGLE_COLUMNS)}
        for row in reader:
            report["rows"] += 1
            if len(row) != len(KAGGLE_COLUMNS) or not row[0].strip().isdigit():
                report["malformed"] += 1
                continue
            item = row[0].strip()
            if item in seen:
                report["duplicates"] += 1
                continue
            image = root / "images" / f"{item}.jpg"
            if not image.is_file():
                report["missing_image"] += 1
                continue
            seen.add(item)
            ids.append(item)
            labels.append(row[col[label_column]].strip() or "unknown")
            titles.append(row[col["productDisplayName"]].strip() or item)
            paths.append(image)
    if report["malformed"] or report["missing_image"]:
        log.warning("kaggle catalog %s: %s", root, report)
    if not ids:
        raise DataUnavailable(f"No usable rows in {styles} ({report}).")
    return Catalog(f"kaggle:{root.name}", ids, labels, titles, paths, report=report, source=str(root))


def load_folder(root: str | Path) -> Catalog:
    """Every image below ``root``; the label is the first sub-folder's name (or the folder's own name)."""
    root = Path(root)
    if not root.is_dir():
        raise DataUnavailable(f"{root} is not a folder.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataUnavailable(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}.")
    ids = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    labels = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else root.name for p in files]
    titles = [p.stem.replace("_", " ") for p in files]
    return Catalog(f"folder:{root.name}", ids, labels, titles, list(files), source=str(root))


def load_catalog(name_or_path: str, **kwargs) -> Catalog:
    """``fashion-mnist``, ``tuxpaint-clothes``, a Kaggle folder (has ``styles.csv``) or a folder of images."""
    if name_or_path == "fashion-mnist":
        return load_fashion_mnist(kwargs.get("root"))
    if name_or_path == "tuxpaint-clothes":
        return load_tuxpaint_clothes(kwargs.get("root"))
    path = Path(name_or_path).expanduser()
    if (path / "styles.csv").is_file():
        return load_kaggle(path, label_column=kwargs.get("label_column", "articleType"))
    if path.is_dir():
        return load_folder(path)
    raise DataUnavailable(
        f"Unknown catalog {name_or_path!r}: use {' or '.join(CATALOGS)}, a Kaggle Fashion Product Images folder "
        "(with styles.csv) or a folder of images."
    )


def catalog_key(name_or_path: str) -> str:
    """A filesystem-safe artifact name for a catalog (never derived from uploaded filenames)."""
    if name_or_path in CATALOGS:
        return name_or_path
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(name_or_path).expanduser().resolve().as_posix())
    return "custom" + safe[-60:]
