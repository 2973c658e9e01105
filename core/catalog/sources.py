"""Reading and validating a catalog source: which images it holds, with what metadata, and what was skipped.

Why one reader: the Fashion and Product search tabs search the same catalogs, so a folder, a CSV, the Kaggle
"Fashion Product Images" layout and a ``.zip`` of any of them must give the same items with the same ids
whichever tab asks. A source with some bad files or rows gives the good ones and lists the rest by name
(``Skipped``), so a shop owner sees exactly what to fix; a source with nothing usable, or one that is unsafe
to open, raises ``CatalogError`` with one sentence that is safe to show in the browser (no server paths).

Paths are never built from user text except by resolving them below the source's root and checking that the
result is still inside it; a CSV can therefore never point the app at ``/etc/passwd`` or ``../other-shop``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

from PIL import Image, UnidentifiedImageError

from core.artifacts import checksum_strings
from core.catalog.archive import LIMITS, CatalogError, Limits, extract_archive, human_bytes, is_ignored
from core.datasets import TUXPAINT_DIR, DataUnavailable, load_tuxpaint
from core.images import ALLOWED_FORMATS, MAX_PIXELS

__all__ = [
    "BUILTINS", "CatalogError", "IMAGE_SUFFIXES", "Item", "LIMITS", "Limits", "NAME_PATTERN", "Skipped",
    "SHIPPED_KIND", "SHIPPED_PREFIX", "SourceReport", "builtin_source", "check_name", "clothes_kind", "read_source",
    "shipped_name",
]

log = logging.getLogger(__name__)

#: Catalog names: 1-64 ASCII letters, digits, ``-`` and ``_`` (they become folder and database names).
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch: ``$`` would also accept a trailing newline
#: Catalogs that ship with the app, built from the Tux Paint stamps (Debian ``tuxpaint-stamps-default``).
BUILTINS = ("tuxpaint-clothes", "tuxpaint")
#: How a source names a shipped catalog (``python -m core catalog add tuxpaint shipped:tuxpaint``), and the
#: source kind its manifest records (the Data page marks such catalogs as shipped).
SHIPPED_PREFIX = "shipped:"
SHIPPED_KIND = "shipped"
#: Files taken as images when their header also says so (SVG by its ``<svg`` tag: it is rasterised later).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".svg"})
KAGGLE_STYLES = "styles.csv"
KAGGLE_IMAGES = "images"
#: Column names recognised per role, after lower-casing and turning spaces and dashes into ``_``; first wins.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("image", "image_path", "path", "file", "filename", "img", "file_name", "image_file", "photo"),
    "id": ("id", "item_id", "sku", "product_id"),
    "title": ("title", "name", "productdisplayname"),
    "category": ("category", "label", "class", "articletype"),
    "description": ("description", "desc"),
}
#: The Fashion tab's labels for Tux Paint's clothes (most sit directly in ``clothes/``, so the folder says little).
TUXPAINT_CLOTHES_KINDS = (
    ("hats", ("hat", "cap", "crown", "helmet", "fedora", "sombrero", "mortarboard", "hardhat")),
    ("dresses", ("dress", "skirt", "bikini")),
    ("bottoms", ("pants", "jeans", "bottoms")),
    ("tops", ("shirt", "jacket", "top")),
    ("footwear", ("boot", "shoe", "heel", "sock")),
)


@dataclass(frozen=True)
class Item:
    """One catalog item.

    ``id`` is the catalog's own id: the CSV's id column, else the image's path relative to the source root
    (posix, with its suffix), so ids are stable however the catalog is moved or re-zipped. ``image`` is the
    absolute path of an existing regular file inside the source root. ``attributes`` keeps every other CSV
    column, for filters.
    """

    id: str
    image: Path
    title: str = ""
    category: str = ""
    description: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Skipped:
    """Something left out of a catalog: ``what`` is a file relative to the source or ``row N`` (a line number)."""

    what: str
    reason: str


@dataclass
class SourceReport:
    """What a source holds: its kind, its root folder, the usable items, what was skipped and the CSV columns."""

    kind: str
    root: Path
    items: list[Item]
    skipped: list[Skipped]
    columns: list[str]

    def checksum(self) -> str:
        """What the source holds, as one key: each item's id, metadata and file (size and modification time).

        Recorded in the built catalog's manifest, so ``add --update`` (what the default-model build runs for the
        shipped catalogs) can tell a fresh catalog from one whose source changed without decoding an image.
        """
        parts = [self.kind]
        for item in self.items:
            try:
                stat = item.image.stat()
                file = f"{stat.st_size}:{stat.st_mtime_ns}"
            except OSError:
                file = "missing"
            attributes = ",".join(f"{k}={v}" for k, v in sorted(item.attributes.items()))
            parts.append("|".join((item.id, item.title, item.category, item.description, attributes, file)))
        return checksum_strings(parts)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid catalog name; otherwise raise ``CatalogError`` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise CatalogError(f"The catalog name {shown} is not allowed: use 1 to 64 letters, digits, '-' or '_'.")
    return name


# ----------------------------------------------------------------------------------------------
# images and paths


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _image_problem(path: Path, limits: Limits) -> Optional[str]:
    """Why ``path`` is not a usable image (None if it is), from its suffix, size and header; no full decode."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return "not an image"
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        if size > limits.max_image_bytes:
            return f"{human_bytes(size)}, over the {human_bytes(limits.max_image_bytes)} limit for one image"
        if suffix == ".svg":
            with open(path, "rb") as f:
                return None if b"<svg" in f.read(65536).lower() else "not a readable image"
        with Image.open(path) as img:
            fmt, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        return "not a readable image"
    except Image.DecompressionBombError:
        return "too many pixels to decode safely"
    except PermissionError as exc:
        return f"cannot be read ({_os_reason(exc)})"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            return f"cannot be read ({_os_reason(exc)})"
        return "not a readable image"
    if fmt not in ALLOWED_FORMATS:
        return f"unsupported image format {fmt}"
    if width * height > MAX_PIXELS:
        return f"too many pixels to decode safely ({width}x{height})"
    return None


def _resolve_inside(root: Path, text: str) -> tuple[Optional[Path], str]:
    """Resolve a relative path from a CSV below ``root`` (already resolved); (path, "") or (None, reason)."""
    rel = text.strip().replace("\\", "/")  # CSVs written on Windows use backslashes
    shown = rel[:80]
    if not rel:
        return None, "empty image cell"
    if "://" in rel:
        return None, f"image is a web address, not a file in the catalog: {shown}"
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return None, f"absolute image path not allowed: {shown}"
    try:
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            return None, f"image outside the catalog folder: {shown}"
        if not path.is_file():
            return None, f"image not found: {shown}"
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        return None, f"image not found: {shown}"
    return path, ""


class _Collector:
    """Items and skips of one source: refuses duplicate ids and stops at ``limits.max_items``."""

    def __init__(self, limits: Limits, display: str):
        self.limits = limits
        self.display = display
        self.items: list[Item] = []
        self.skipped: list[Skipped] = []
        self._ids: set[str] = set()
        self.named: set[Path] = set()  # every existing image a row named, used or not

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append(Skipped(what, reason))

    def add(self, item: Item, what: str) -> None:
        if item.id in self._ids:
            self.skip(what, f"duplicate id {item.id[:80]}")
            return
        if len(self.items) >= self.limits.max_items:
            raise CatalogError(f"{self.display} has more than {self.limits.max_items:,} items; split it into "
                               "several catalogs.")
        self._ids.add(item.id)
        self.items.append(item)

    def replace(self, items: list[Item], whats: list[str]) -> None:
        """Start the item list again from ``items`` (their ids may have changed), re-checking for duplicates."""
        self.items, self._ids = [], set()
        for item, what in zip(items, whats):
            self.add(item, what)

    def report(self, kind: str, root: Path, columns: list[str]) -> SourceReport:
        if not self.items:
            raise _nothing_usable(self.display, self.skipped)
        if self.skipped:
            log.info("%s: %d items, %d skipped", self.display, len(self.items), len(self.skipped))
        return SourceReport(kind, root, self.items, self.skipped, columns)


def _nothing_usable(display: str, skipped: list[Skipped]) -> CatalogError:
    """The one-sentence failure of a source without a single usable item, with the first reasons."""
    if not skipped:
        return CatalogError(f"No images in {display}: it holds no JPEG, PNG, WebP, GIF, BMP, TIFF or SVG files.")
    rows = all(s.what.startswith("row ") or " row " in s.what for s in skipped)
    unit = ("row" if rows else "file") + ("s" if len(skipped) != 1 else "")
    examples = "; ".join(f"{s.what}: {s.reason}" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return CatalogError(f"No usable images in {display}: {len(skipped)} {unit} skipped ({examples}{more}).")


# ----------------------------------------------------------------------------------------------
# CSV rows


def _normalise(header: str) -> str:
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def _roles(header: list[str]) -> dict[str, int]:
    """Which column plays which role (image, id, title, category, description), by the names in COLUMN_NAMES."""
    names = [_normalise(h) for h in header]
    roles: dict[str, int] = {}
    for role, candidates in COLUMN_NAMES.items():
        for candidate in candidates:
            if candidate in names and names.index(candidate) not in roles.values():
                roles[role] = names.index(candidate)
                break
    return roles


class _CsvRows:
    """A CSV's header and its rows as (line number, fields or None, problem), read line by line.

    Lines are decoded one by one with ``surrogateescape``, so a row holding bytes that are not UTF-8 is
    reported as that row (``not UTF-8``) instead of failing the whole file or silently garbling it. The
    delimiter is the header's most frequent of ``,`` ``;`` and tab (spreadsheets in many locales write ``;``).
    Use as a context manager so the file is closed even when only the header is read.
    """

    def __init__(self, path: Path, limits: Limits):
        display = path.name
        size = path.stat().st_size
        if size > limits.max_csv_bytes:
            raise CatalogError(f"{display} is {human_bytes(size)}; CSV files over "
                               f"{human_bytes(limits.max_csv_bytes)} are refused.")
        self._file = open(path, "rb")
        try:
            first = self._file.readline()
            if first.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise CatalogError(f"{display} is saved as UTF-16; save it as 'CSV UTF-8' and try again.")
            first = first.removeprefix(b"\xef\xbb\xbf")
            if not first.strip():
                raise CatalogError(f"{display} is empty or starts with a blank line; its first line must name "
                                   "the columns.")
            head = first.decode("utf-8", "surrogateescape")
            self._reader = csv.reader(self._lines(head), delimiter=max((",", ";", "\t"), key=head.count))
            self.header = [h.strip() for h in next(self._reader)]
            if not _utf8(self.header):
                raise CatalogError(f"{display} has a first line that is not UTF-8 text; save it as 'CSV UTF-8'.")
        except BaseException:
            self._file.close()
            raise

    def _lines(self, head: str) -> Iterator[str]:
        yield head
        for raw in self._file:
            yield raw.decode("utf-8", "surrogateescape")

    def __enter__(self) -> "_CsvRows":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[tuple[int, Optional[list[str]], str]]:
        reader = self._reader
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, f"unreadable CSV line ({str(exc)[:80]})"
                if reader.line_num < start:
                    return
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            yield start, row, "" if _utf8(row) else "not UTF-8"


def _utf8(cells: list[str]) -> bool:
    try:
        "\x1f".join(cells).encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes stand for bytes that were not UTF-8
        return False
    return True


def _item_from_row(cells: list[str], header: list[str], roles: dict[str, int], item_id: str, image: Path) -> Item:
    used = set(roles.values())
    attributes = {(header[i] or f"column {i + 1}"): cells[i] for i in range(len(header)) if i not in used}
    get = lambda role: cells[roles[role]] if role in roles else ""  # noqa: E731 - a local shorthand
    return Item(id=item_id, image=image, title=get("title"), category=get("category"),
                description=get("description"), attributes=attributes)


def _read_table(csv_path: Path, root: Path, collect: _Collector, image_of: Callable[[list[str], dict], str],
                *, limits: Limits, needs: str = "image", recover_last: str = "") -> list[str]:
    """Turn a CSV's rows into items below ``root``; ``image_of`` names a row's image relative to ``root``.

    When the last column is named ``recover_last``, a row with too many fields has its extra fields joined
    back into that column (the Kaggle styles.csv has product names with unquoted commas in its last column);
    otherwise a row with the wrong number of fields is skipped.
    """
    with _CsvRows(csv_path, limits) as rows:
        return _table_rows(csv_path, rows, root, collect, image_of, limits=limits, needs=needs,
                           recover=bool(recover_last) and _normalise(rows.header[-1]) == recover_last)


def _table_rows(csv_path: Path, rows: _CsvRows, root: Path, collect: _Collector,
                image_of: Callable[[list[str], dict], str], *, limits: Limits, needs: str, recover: bool) -> list[str]:
    header = rows.header
    roles = _roles(header)
    if needs not in roles:
        found = ", ".join(h for h in header if h) or "none"
        hint = ("add a column named image with each photo's path relative to the CSV" if needs == "image"
                else "add a column named id")
        raise CatalogError(f"{csv_path.name} has no {needs} column (columns found: {found[:200]}); {hint}.")
    n = len(header)
    for line, row, problem in rows:
        what = f"row {line}"
        if row is None or problem:
            collect.skip(what, problem)
            continue
        if recover and len(row) > n:
            row = row[: n - 1] + [",".join(row[n - 1 :])]
        if len(row) != n:
            collect.skip(what, f"{len(row)} fields, expected {n}")
            continue
        cells = [c.strip() for c in row]
        item_id = cells[roles["id"]] if "id" in roles else ""
        if "id" in roles and not item_id:
            collect.skip(what, "empty id")
            continue
        rel = image_of(cells, roles)
        image, why = _resolve_inside(root, rel)
        if image is None:
            collect.skip(what, why)
            continue
        collect.named.add(image)
        bad = _image_problem(image, limits)
        if bad:
            collect.skip(what, f"{bad}: {rel[:80]}")
            continue
        collect.add(_item_from_row(cells, header, roles, item_id or image.relative_to(root).as_posix(), image), what)
    return header


def _read_csv(csv_path: Path, kind: str, limits: Limits, *, list_unlisted: bool = False) -> SourceReport:
    """A CSV with an image column; image paths are relative to the CSV's folder and must stay inside it.

    ``list_unlisted`` (when the user handed over the whole folder) also lists the images no row names.
    """
    root = csv_path.parent
    collect = _Collector(limits, csv_path.name)
    header = _read_table(csv_path, root, collect, lambda cells, roles: cells[roles["image"]], limits=limits)
    report = collect.report(kind, root, header)
    if list_unlisted:
        _unlisted(root, report, collect.named, csv_path.name)
    return report


def _read_kaggle(root: Path, kind: str, limits: Limits) -> SourceReport:
    """Kaggle "Fashion Product Images": ``styles.csv`` (id, ..., articleType, ..., productDisplayName) and
    ``images/<id>.jpg``; the category is articleType, the title productDisplayName, the rest attributes."""
    styles = root / KAGGLE_STYLES

    def image_of(cells: list[str], roles: dict) -> str:
        stem = f"{KAGGLE_IMAGES}/{cells[roles['id']]}"
        for suffix in (".jpg", ".jpeg", ".png", ".webp"):
            if (root / f"{stem}{suffix}").is_file():
                return f"{stem}{suffix}"
        return f"{stem}.jpg"

    collect = _Collector(limits, KAGGLE_STYLES)
    header = _read_table(styles, root, collect, image_of, limits=limits, needs="id",
                         recover_last="productdisplayname")
    return collect.report(kind, root, header)


# ----------------------------------------------------------------------------------------------
# folders


def _scan_folder(root: Path, collect: _Collector, limits: Limits, exclude: frozenset[Path] = frozenset()) -> None:
    """Every image below ``root``; labels from the first sub-folder; hidden files and OS litter ignored silently."""

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "a folder"
        collect.skip(where, f"folder cannot be read ({_os_reason(exc)})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            if is_ignored([d]):
                continue
            if (here / d).is_symlink():
                collect.skip((here / d).relative_to(root).as_posix(), "link to a folder, not followed")
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            resolved = path.resolve()
            if is_ignored([name]) or resolved in exclude:
                continue
            rel = path.relative_to(root)
            if not resolved.is_relative_to(root):
                collect.skip(rel.as_posix(), "link to a file outside the folder")
                continue
            problem = _image_problem(path, limits)
            if problem:
                collect.skip(rel.as_posix(), problem)
                continue
            category = rel.parts[0] if len(rel.parts) > 1 else ""
            collect.add(Item(id=rel.as_posix(), image=resolved, category=category), rel.as_posix())


def _meta_index(items: list[Item]) -> dict[str, int]:
    """Keys a metadata row may use for an item: its path, its path without suffix, and its file stem if unique."""
    index: dict[str, int] = {}
    stems: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        index[item.id] = i
        index.setdefault(item.id.rsplit(".", 1)[0], i)
        stems.setdefault(Path(item.id).stem, []).append(i)
    for stem, rows in stems.items():
        if len(rows) == 1:
            index.setdefault(stem, rows[0])
    return index


def _merge_meta(meta: Path, collect: _Collector, limits: Limits) -> list[str]:
    """Add titles, categories, descriptions and attributes from ``meta`` to the folder's items, in place.

    A row matches an image by its image column (the path relative to the folder) or else by its id column
    (the path, the path without suffix, or the file name without suffix). Lookups only: no path is built from
    the CSV. With an id column the row's id becomes the item's id.
    """
    with _CsvRows(meta, limits) as rows:
        header = rows.header
        roles = _roles(header)
        if "image" not in roles and "id" not in roles:
            found = ", ".join(h for h in header if h) or "none"
            raise CatalogError(f"{meta.name} has neither an image nor an id column (columns found: {found[:200]}); "
                               "add a column named image with each photo's path relative to the folder.")
        merged = _meta_rows(meta.name, rows, roles, collect)
    # a row's id may now clash with another image's path id: the later one is skipped as a duplicate
    collect.replace([merged.get(i, item) for i, item in enumerate(collect.items)], [i.id for i in collect.items])
    return header


def _meta_rows(name: str, rows: _CsvRows, roles: dict[str, int], collect: _Collector) -> dict[int, Item]:
    """Items rebuilt from the metadata rows that match one, by their row in ``collect.items``."""
    index = _meta_index(collect.items)
    merged: dict[int, Item] = {}
    n = len(rows.header)
    for line, row, problem in rows:
        what = f"{name} row {line}"
        if row is None or problem:
            collect.skip(what, problem)
            continue
        if len(row) != n:
            collect.skip(what, f"{len(row)} fields, expected {n}")
            continue
        cells = [c.strip() for c in row]
        row_id = cells[roles["id"]] if "id" in roles else ""
        key = (cells[roles["image"]] if "image" in roles else "") or row_id
        key = key.replace("\\", "/").removeprefix("./")
        if not key:
            collect.skip(what, "empty image cell")
            continue
        at = index.get(key)
        if at is None:
            collect.skip(what, f"image not found: {key[:80]}")
            continue
        if at in merged:
            collect.skip(what, f"a second row for {collect.items[at].id[:80]}")
            continue
        base = collect.items[at]
        new = _item_from_row(cells, rows.header, roles, row_id or base.id, base.image)
        merged[at] = Item(id=new.id, image=base.image, title=new.title, category=new.category or base.category,
                          description=new.description, attributes=new.attributes)
    return merged


def _unlisted(root: Path, report: SourceReport, named: set[Path], csv_name: str) -> None:
    """List images in a CSV source's folder that no row names (likely forgotten rows), without opening them."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored([d]))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_ignored([name]) and path.suffix.lower() in IMAGE_SUFFIXES and path.resolve() not in named:
                report.skipped.append(Skipped(path.relative_to(root).as_posix(), f"not listed in {csv_name}"))


def _read_dir(root: Path, meta: Optional[Path], limits: Limits, prefix: str, display: str) -> SourceReport:
    """A folder: the Kaggle layout, a folder with one CSV, or a plain folder of images (``meta`` merged in).

    A single top-level CSV with an image column makes a CSV catalog (the folder's images that no row names
    are listed as skipped); one with only an id column describes the folder's images like ``meta``; one with
    neither is listed as skipped and the folder is read as plain images.
    """
    collect = _Collector(limits, display)
    if meta is None and (root / KAGGLE_STYLES).is_file() and (root / KAGGLE_IMAGES).is_dir():
        return _read_kaggle(root, prefix + "kaggle", limits)
    csvs = sorted(p for p in root.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and not is_ignored([p.name]))
    if meta is None and len(csvs) > 1:
        names = ", ".join(p.name for p in csvs[:5])
        raise CatalogError(f"{display} has {len(csvs)} CSV files at its top level ({names}); keep only the one that "
                           "lists the images.")
    exclude = {meta.resolve()} if meta is not None else set()
    if meta is None and len(csvs) == 1:
        with _CsvRows(csvs[0], limits) as rows:
            header, roles = rows.header, _roles(rows.header)
        if "image" in roles:
            return _read_csv(csvs[0], prefix + "csv", limits, list_unlisted=True)
        if "id" in roles:
            meta = csvs[0]  # the CSV describes the folder's images by id (file name without suffix)
        else:
            found = ", ".join(h for h in header if h) or "none"
            collect.skip(csvs[0].name, f"not used: no image or id column (columns found: {found[:200]})")
        exclude.add(csvs[0].resolve())
    _scan_folder(root, collect, limits, exclude=frozenset(exclude))
    columns: list[str] = []
    if meta is not None:
        if not collect.items:
            raise _nothing_usable(display, collect.skipped)
        columns = _merge_meta(meta, collect, limits)
    return collect.report(prefix + "folder", root, columns)


def _descend(folder: Path) -> Path:
    """An unpacked zip's root: its single top-level folder when that is all it holds (the usual 'zip a folder')."""
    entries = [p for p in folder.iterdir() if not is_ignored([p.name])]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


def read_source(source: str | Path, *, meta: Path | None = None, workdir: Path | None = None,
                limits: Limits = LIMITS) -> SourceReport:
    """Read and validate a catalog source: a folder, a CSV, a Kaggle folder, or a ``.zip`` of any of them.

    ``meta`` is a CSV adding titles, categories, descriptions and attributes to a folder's images. A zip is
    validated (see ``core.catalog.archive``) and unpacked into a new folder inside ``workdir``, which the
    caller owns (its temporary build folder) and removes; the items' paths point there. Raises
    ``CatalogError`` (one sentence, no server paths beyond what the caller passed) when nothing is usable.
    """
    path = Path(source).expanduser()
    shown = path.name or str(source)[:80]
    if not path.exists():
        raise CatalogError(f"{shown} does not exist; give a folder, a CSV file or a .zip archive.")
    meta_path = None
    if meta is not None:
        meta_path = Path(meta).expanduser().resolve()
        if not meta_path.is_file():
            raise CatalogError(f"The metadata file {Path(meta).name} does not exist.")
    path = path.resolve()
    if path.is_dir():
        return _read_dir(path, meta_path, limits, "", shown)
    if not path.is_file():
        raise CatalogError(f"{shown} is not a folder, a CSV file or a .zip archive.")
    if path.suffix.lower() == ".csv":
        if meta_path is not None:
            raise CatalogError(f"A metadata CSV only applies to a folder of images; {shown} is a CSV already.")
        if path.name == KAGGLE_STYLES and (path.parent / KAGGLE_IMAGES).is_dir():
            return _read_kaggle(path.parent, "kaggle", limits)
        return _read_csv(path, "csv", limits)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        if workdir is None:
            raise ValueError("read_source needs a workdir to unpack a zip into")
        root = _descend(extract_archive(path, workdir, limits))
        return _read_dir(root, meta_path, limits, "zip:", shown)
    raise CatalogError(f"{shown} is not a folder, a CSV file or a .zip archive.")


# ----------------------------------------------------------------------------------------------
# built-in catalogs


def clothes_kind(stamp_id: str, caption: str) -> str:
    """The Fashion tab's kind of a Tux Paint clothing stamp (hats, tops, …), from its id and caption."""
    text = f"{stamp_id} {caption}".lower().replace("_", " ").replace("-", " ")
    for kind, words in TUXPAINT_CLOTHES_KINDS:
        if any(w in text for w in words):
            return kind
    return "accessories"


def shipped_name(source: str | Path) -> Optional[str]:
    """The shipped catalog a source names (``shipped:tuxpaint`` → ``tuxpaint``), or None for any other source."""
    text = str(source)
    return text[len(SHIPPED_PREFIX):] if text.startswith(SHIPPED_PREFIX) else None


def builtin_source(name: str, *, limit: Optional[int] = None) -> SourceReport:
    """A catalog that ships with the app, read like any other source (kind ``shipped``; ``shipped:NAME``).

    ``tuxpaint-clothes``: Tux Paint's clothing stamps labelled by kind (hats, tops, ...); ``tuxpaint``: every
    stamp, labelled by its first two folder levels (``animals/birds``). Ids are the stamps' own ids
    (``clothes/hat``), so feedback recorded against them stays valid. Mirror copies are left out. Titles and
    categories are read as the Product search tab has always read them (the caption, else the stamp's name;
    ``uncategorised`` for a stamp outside any folder), so its tuned head sees the same products.
    ``limit`` keeps an evenly spaced subset, the same one ``multimodal.data.load_tuxpaint_catalog`` keeps (tests).
    """
    if name not in BUILTINS:
        raise CatalogError(f"There is no shipped catalog {name[:64]!r}; the shipped catalogs are "
                           f"{', '.join(BUILTINS)}.")
    clothes = name == "tuxpaint-clothes"
    try:
        stamps = load_tuxpaint(categories=["clothes"] if clothes else None, one_per_stamp=True)
    except DataUnavailable as exc:
        raise CatalogError(str(exc)) from exc
    if limit is not None and limit < len(stamps):
        step = len(stamps) / limit
        stamps = [stamps[int(i * step)] for i in range(limit)]
    root = TUXPAINT_DIR.resolve()
    items = []
    for s in stamps:
        words = " ".join(s.name.replace("_", " ").replace("-", " ").split())
        category = clothes_kind(s.id, s.caption) if clothes else ("/".join(s.category[:2]) or "uncategorised")
        items.append(Item(id=s.id, image=Path(s.image_path).resolve(), title=s.caption.rstrip(".") or words,
                          category=category, attributes={"category_path": "/".join(s.category), "name": words,
                                                            "caption": s.caption}))
    return SourceReport(SHIPPED_KIND, root, items, [], [])
