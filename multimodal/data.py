"""Catalogs for multimodal product search: one ``Catalog`` shape for Tux Paint, Kaggle fashion and any CSV.

Why one shape: the index, the evaluation and the UI only need, per product, an id, a title, the text to
embed, a category (for filters and as evaluation relevance), an image file and a *group* (near-duplicates
such as Tux Paint's ``_mirror`` copies share one, so a split never separates them). Each loader maps its
format onto that and reports what it had to skip instead of failing on the first odd row.

Product text is configurable through ``text_fields``: the names of the fields joined into the text that
the sentence model embeds (e.g. ``("caption", "category")`` for Tux Paint).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image

from core.artifacts import checksum_strings
from core.datasets import DataUnavailable, load_tuxpaint  # noqa: F401 - DataUnavailable re-exported for callers
from core.images import ImageError, load_any

log = logging.getLogger(__name__)

#: Default product-text fields per catalog kind (what the sentence model reads).
TUXPAINT_TEXT_FIELDS: tuple[str, ...] = ("caption", "category")
FASHION_TEXT_FIELDS: tuple[str, ...] = ("productDisplayName", "articleType", "baseColour", "gender", "usage", "season")
FASHION_COLUMNS: tuple[str, ...] = (
    "id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
    "productDisplayName",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".svg")


class CatalogError(ValueError):
    """A catalog file cannot be read as asked; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Product:
    """One catalog item.

    ``category`` is the relevance label used by the evaluation and the UI filter (for Tux Paint the first
    two folder levels, e.g. ``animals/birds``); ``category_path`` keeps the full path for display.
    ``fields`` holds every raw attribute so ``text_fields`` can pick any of them.
    """

    id: str
    title: str
    text: str
    category: str
    image_path: Path
    group: str
    category_path: str = ""
    is_mirror: bool = False
    fields: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Catalog:
    """A list of products plus where it came from and what was skipped while reading it."""

    name: str
    kind: str
    products: list[Product]
    source: str = ""
    text_fields: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.products)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.products]

    def checksum(self) -> str:
        """Identity of the catalog's content: ids, texts, categories and each image file's size and bytes hash.

        Why hash the image bytes: an index must be rebuilt when a picture changes even if its name does not;
        the ~40 MB of Tux Paint images hash in well under a second.
        """
        parts: list[str] = [self.kind, ",".join(self.text_fields)]
        for p in self.products:
            parts += [p.id, p.title, p.text, p.category, _file_digest(p.image_path)]
        return checksum_strings(parts)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


def _words(value: str) -> str:
    """``body_parts/hats`` → ``body parts hats``: folder and attribute names as plain words."""
    return " ".join(value.replace("/", " ").replace("_", " ").replace("-", " ").split())


def compose_text(values: dict, text_fields: Sequence[str]) -> str:
    """Join the chosen fields into product text, skipping empties and repeats ("Shirts" twice says nothing)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in text_fields:
        raw = values.get(name)
        if raw is None:
            continue
        text = str(raw).strip()
        if name in ("category", "category_path"):
            text = _words(text)
        if not text or text.lower() in seen or text.lower() == "nan":
            continue
        seen.add(text.lower())
        out.append(text)
    return ". ".join(t.rstrip(".") for t in out) + ("." if out else "")


# ----------------------------------------------------------------------------------------------
# Tux Paint


def load_tuxpaint_catalog(
    root: str | Path | None = None,
    *,
    text_fields: Sequence[str] = TUXPAINT_TEXT_FIELDS,
    categories: Optional[Iterable[str]] = None,
    limit: Optional[int] = None,
) -> Catalog:
    """Tux Paint stamps as products (the default catalog: real clip-art with captions and category folders).

    ``limit`` keeps an evenly spaced subset (tests build a tiny index from ~40 stamps).
    Available text fields: ``caption``, ``category`` (two folder levels), ``category_path``, ``name``.
    """
    stamps = load_tuxpaint(root, categories=categories, one_per_stamp=True)
    if limit is not None and limit < len(stamps):
        step = len(stamps) / limit
        stamps = [stamps[int(i * step)] for i in range(limit)]
    products: list[Product] = []
    for s in stamps:
        category = "/".join(s.category[:2]) or "uncategorised"
        values = {
            "caption": s.caption,
            "category": category,
            "category_path": "/".join(s.category),
            "name": _words(s.name),
        }
        title = s.caption.rstrip(".") or _words(s.name)
        products.append(
            Product(
                id=s.id,
                title=title,
                text=compose_text(values, text_fields),
                category=category,
                image_path=Path(s.image_path),
                group=s.group,
                category_path="/".join(s.category),
                is_mirror=s.is_mirror,
                fields=values,
            )
        )
    return Catalog(
        name="tuxpaint", kind="tuxpaint", products=products, source=str(root or "tuxpaint-stamps-default"),
        text_fields=tuple(text_fields),
    )


def catalog_from_items(name: str, items: Sequence[dict], *, kind: str = "catalog",
                       text_fields: Sequence[str] = TUXPAINT_TEXT_FIELDS) -> Catalog:
    """The products of a catalog built by ``core.catalog`` (its ``items.json`` rows, in its row order).

    Why: a shipped catalog exists once, as an ordinary catalog; the Product search head (its tuned fusion
    weight and image→text projection) is fitted on top of that catalog's items and image vectors instead of
    reading the stamps again. A row's fields are its attributes (a shipped Tux Paint row keeps the stamp's own
    ``caption``; others use the title), category and title, so ``compose_text`` gives the same product text as
    the Tux Paint loader above.
    """
    products = []
    for row in items:
        attributes = {str(k): str(v) for k, v in dict(row.get("attributes", {})).items()}
        category = str(row.get("category") or "uncategorised")
        title = str(row.get("title") or row["id"])
        values = {"caption": title, **attributes, "title": title, "category": category,
                  "description": str(row.get("description", ""))}
        products.append(Product(id=str(row["id"]), title=title, text=compose_text(values, text_fields),
                                category=category, image_path=Path(str(row["source"])), group=str(row["id"]),
                                category_path=attributes.get("category_path", category), fields=values))
    return Catalog(name=name, kind=kind, products=products, source=f"catalog:{name}", text_fields=tuple(text_fields))


# ----------------------------------------------------------------------------------------------
# Kaggle "Fashion Product Images" (styles.csv + images/<id>.jpg)


def load_fashion_catalog(
    root: str | Path,
    *,
    text_fields: Sequence[str] = FASHION_TEXT_FIELDS,
    category_levels: Sequence[str] = ("masterCategory", "subCategory", "articleType"),
    relevance_levels: int = 3,
    limit: Optional[int] = None,
) -> Catalog:
    """Read the Kaggle "Fashion Product Images (Small)" layout: ``root/styles.csv`` and ``root/images/<id>.jpg``.

    The real ``styles.csv`` has rows whose ``productDisplayName`` contains unquoted commas, so they parse
    into more than 10 fields; those are counted in ``skipped["malformed_rows"]`` and skipped (logged once)
    rather than guessed at. Rows without an image file are counted in ``skipped["missing_image"]``.
    """
    root = Path(root)
    styles = root / "styles.csv"
    images = root / "images"
    if not styles.is_file():
        raise CatalogError(f"{styles} not found: a Kaggle fashion catalog folder holds styles.csv and images/.")
    skipped = {"malformed_rows": 0, "missing_image": 0, "duplicate_id": 0}
    products: list[Product] = []
    seen: set[str] = set()
    with open(styles, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise CatalogError(f"{styles} is empty.")
        header = [h.strip() for h in header]
        missing = [c for c in ("id", "productDisplayName") if c not in header]
        if missing:
            raise CatalogError(f"{styles} lacks column(s) {', '.join(missing)}; found {', '.join(header)}.")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                skipped["malformed_rows"] += 1
                continue
            values = dict(zip(header, (v.strip() for v in row)))
            pid = values["id"]
            if pid in seen:
                skipped["duplicate_id"] += 1
                continue
            image = _find_image(images, pid)
            if image is None:
                skipped["missing_image"] += 1
                continue
            seen.add(pid)
            path_parts = [values.get(c, "") for c in category_levels if values.get(c, "")]
            category = "/".join(path_parts[:relevance_levels]) or "uncategorised"
            values["category"] = category
            products.append(
                Product(
                    id=pid,
                    title=values.get("productDisplayName") or pid,
                    text=compose_text(values, text_fields),
                    category=category,
                    image_path=image,
                    group=pid,
                    category_path="/".join(path_parts),
                    fields=values,
                )
            )
            if limit is not None and len(products) >= limit:
                break
    if skipped["malformed_rows"]:
        log.warning("%s: skipped %d malformed rows (more or fewer than %d fields, e.g. unquoted commas)",
                    styles, skipped["malformed_rows"], len(header))
    if not products:
        raise CatalogError(f"No usable products in {styles} (skipped: {skipped}).")
    return Catalog(name=root.name or "fashion", kind="fashion", products=products, source=str(root),
                   text_fields=tuple(text_fields), skipped=skipped)


def _find_image(folder: Path, stem: str) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------------------------
# generic CSV + image folder


def load_csv_catalog(
    csv_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    id_column: str = "id",
    title_column: str = "title",
    image_column: str = "image",
    category_column: str = "category",
    text_fields: Sequence[str] = ("title", "description", "category"),
    group_column: Optional[str] = None,
) -> Catalog:
    """A generic catalog: a CSV with one row per product and an image column (a file name or relative path).

    ``image_dir`` defaults to the CSV's folder. Image paths that leave ``image_dir`` (``../``) are refused,
    because a catalog file should not be able to point the app at arbitrary files. Rows with a missing id,
    a missing image or the wrong number of fields are counted in ``skipped`` and left out.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CatalogError(f"{csv_path} not found.")
    base = Path(image_dir) if image_dir is not None else csv_path.parent
    base_resolved = base.resolve()
    skipped = {"malformed_rows": 0, "missing_image": 0, "duplicate_id": 0, "missing_id": 0}
    products: list[Product] = []
    seen: set[str] = set()
    with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        for needed in (id_column, image_column):
            if needed not in header:
                raise CatalogError(f"{csv_path} has no {needed!r} column; found {', '.join(header) or 'nothing'}.")
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                skipped["malformed_rows"] += 1
                continue
            values = dict(zip(header, (v.strip() for v in row)))
            pid = values.get(id_column, "")
            if not pid:
                skipped["missing_id"] += 1
                continue
            if pid in seen:
                skipped["duplicate_id"] += 1
                continue
            image = (base / values.get(image_column, "")).resolve()
            if not values.get(image_column) or not image.is_file() or base_resolved not in image.parents:
                skipped["missing_image"] += 1
                continue
            seen.add(pid)
            category = values.get(category_column, "").replace(" > ", "/").strip("/") or "uncategorised"
            values["category"] = category
            values.setdefault("title", values.get(title_column, ""))
            products.append(
                Product(
                    id=pid,
                    title=values.get(title_column) or pid,
                    text=compose_text(values, text_fields),
                    category=category,
                    image_path=image,
                    group=values.get(group_column, pid) if group_column else pid,
                    category_path=category,
                    fields=values,
                )
            )
    if not products:
        raise CatalogError(f"No usable products in {csv_path} (skipped: {skipped}).")
    if any(skipped.values()):
        log.warning("%s: skipped rows %s", csv_path, {k: v for k, v in skipped.items() if v})
    return Catalog(name=csv_path.stem, kind="csv", products=products, source=str(csv_path),
                   text_fields=tuple(text_fields), skipped=skipped)


def load_catalog(kind: str = "tuxpaint", path: str | Path | None = None, **kwargs) -> Catalog:
    """Dispatch on ``kind`` (``tuxpaint``, ``fashion``, ``csv``): what the CLI and the index builder call."""
    if kind == "tuxpaint":
        return load_tuxpaint_catalog(path, **kwargs)
    if path is None:
        raise CatalogError(f"A {kind} catalog needs a path (--catalog-path).")
    if kind == "fashion":
        return load_fashion_catalog(path, **kwargs)
    if kind == "csv":
        return load_csv_catalog(path, **kwargs)
    raise CatalogError(f"Unknown catalog kind {kind!r}; choose tuxpaint, fashion or csv.")


# ----------------------------------------------------------------------------------------------
# splits


def split_groups(
    products: Sequence[Product], *, test_fraction: float = 0.2, seed: int = 13
) -> tuple[list[int], list[int]]:
    """Seeded (train rows, test rows), split by ``group`` so near-duplicates (mirrors) share a side.

    Stratified by category: each category's groups are shuffled with ``seed`` and the first
    ``round(test_fraction * n)`` go to test, so small categories are represented on both sides when they can be.
    """
    by_cat: dict[str, list[str]] = {}
    group_cat: dict[str, str] = {}
    for p in products:
        if p.group not in group_cat:
            group_cat[p.group] = p.category
            by_cat.setdefault(p.category, []).append(p.group)
    rng = random.Random(seed)
    test_groups: set[str] = set()
    for cat in sorted(by_cat):
        groups = sorted(by_cat[cat])
        rng.shuffle(groups)
        n_test = int(round(test_fraction * len(groups))) if len(groups) >= 3 else 0
        test_groups.update(groups[:n_test])
    train = [i for i, p in enumerate(products) if p.group not in test_groups]
    test = [i for i, p in enumerate(products) if p.group in test_groups]
    return train, test


def category_query(category: str) -> str:
    """A category as a person would type it: ``animals/birds`` → ``animals birds``."""
    return _words(category)


def paraphrase(product: Product) -> str:
    """A held-out query for a product built from its data but not its caption.

    For Tux Paint the file name (``adelaide-rosella`` → ``adelaide rosella``, ``frog-1`` → ``frog``) names the
    object in different words from the caption ("An Adelaide Rosella."); elsewhere the title is used.
    Digits are dropped because ``frog-1`` and ``frog-2`` are the same kind of thing.
    """
    name = product.fields.get("name") if product.fields else None
    base = name if name else product.title
    words = [w for w in _words(str(base)).split() if not w.isdigit()]
    words = [w.rstrip("0123456789") or w for w in words]
    return " ".join(words) or product.title



# ----------------------------------------------------------------------------------------------
# images

def load_product_image(path: str | Path) -> Image.Image:
    """A catalog image as RGB PIL (PNG/JPEG/WebP, and SVG through ``core.images.load_svg``)."""
    return load_any(path)


def drop_unreadable_images(catalog: Catalog) -> tuple[Catalog, list[Image.Image]]:
    """Load every product's image once; products whose image cannot be decoded are dropped and counted.

    Returns the (possibly smaller) catalog and the decoded images in the same order, so the encoder
    does not decode them a second time.
    """
    kept: list[Product] = []
    images: list[Image.Image] = []
    bad = 0
    for p in catalog.products:
        try:
            images.append(load_product_image(p.image_path))
            kept.append(p)
        except ImageError as exc:
            bad += 1
            log.warning("skipping %s: %s", p.id, exc)
    skipped = dict(catalog.skipped)
    if bad:
        skipped["unreadable_image"] = bad
    out = Catalog(name=catalog.name, kind=catalog.kind, products=kept, source=catalog.source,
                  text_fields=catalog.text_fields, skipped=skipped)
    return out, images
