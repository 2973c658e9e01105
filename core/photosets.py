"""Labelled sets of real photographs that ship in Debian and PyPI packages, and synthetic photo folders made
from them.

A photo set is a CSV (``bench/checksets/*.csv``) with the columns ``package,path,label,group,title`` and an
optional ``acceptable`` (space-separated words a person would also accept for the subject). ``path`` is a file
of an installed package (absolute for Debian, relative to the distribution for PyPI) or a photo inside a
downloaded package file (``wheel:``/``deb:`` specs, ``core.photo_archives``). The labels were written by a
person looking at each photo, so they are the yardstick for the catalog and hashtag evaluations.

Speed benchmarks need thousands of photo-like JPEGs of a realistic size; ``materialize_jpegs`` makes them from a
set's photos by random crops, flips and scales, one at a time, so 10,000 of them never sit in memory together.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image, ImageOps

from core.artifacts import atomic_path
from core.photo_archives import is_archive_spec, member_file

log = logging.getLogger(__name__)

#: Where the committed check sets live.
CHECKSETS_DIR = Path(__file__).resolve().parent.parent / "bench" / "checksets"
#: The groups a labelled photo may belong to.
GROUPS = frozenset({"animal", "object", "food", "scene", "vehicle", "person", "plant", "structure", "tool"})
REQUIRED_COLUMNS = ("package", "path", "label", "group", "title")
#: The smallest number of test photos a catalog label needs for a per-label precision@5 to mean anything.
MIN_TEST_PER_LABEL = 5


class PhotoSetError(ValueError):
    """A photo-set CSV that is malformed (a bug in the file, never a missing package)."""


@dataclass(frozen=True)
class Photo:
    """One labelled photo, materialised as a local file."""

    path: Path
    label: str
    group: str
    title: str
    acceptable: tuple[str, ...]
    package: str


def resolve_photo(package: str, path: str) -> Optional[Path]:
    """The local file of a photo-set row, or None when its package is not there.

    Debian files are absolute paths; PyPI files are relative to their distribution's root; ``wheel:``/``deb:``
    specs are copied out of the downloaded package file (a malformed spec raises ``ArchiveSpecError``).
    """
    if is_archive_spec(path):
        found = member_file(path)
    elif path.startswith("/"):
        found = Path(path)
    else:
        try:
            found = Path(str(importlib.metadata.distribution(package).locate_file(path)))
        except importlib.metadata.PackageNotFoundError:
            return None
    return found if found is not None and found.is_file() else None


def _fetch_hint(missing: dict[str, str]) -> str:
    """The commands that bring the missing packages (package -> one of its paths)."""
    archived = sorted(p for p, path in missing.items() if is_archive_spec(path))
    debian = sorted(p for p, path in missing.items() if not is_archive_spec(path) and path.startswith("/"))
    pypi = sorted(set(missing) - set(archived) - set(debian))
    hints = []
    if archived:
        hints.append(f"`make heldout-photos` (downloads {', '.join(archived)})")
    if debian:
        hints.append(f"`apt-get install {' '.join(debian)}`")
    if pypi:
        hints.append(f"`pip install {' '.join(pypi)}`")
    return " and ".join(hints)


def read_rows(csv_path: str | Path) -> list[dict[str, str]]:
    """The rows of a photo-set CSV, checked: required columns, a known group, one-word labels (safe as folder names)."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise PhotoSetError(f"{csv_path.name} lacks the column(s) {', '.join(absent)} "
                                f"(found: {', '.join(reader.fieldnames or [])}).")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if row["group"] not in GROUPS:
            raise PhotoSetError(f"{csv_path.name} line {line}: group {row['group']!r} is not one of "
                                f"{', '.join(sorted(GROUPS))}.")
        if not re.fullmatch(r"[a-z0-9]+", row["label"]):
            raise PhotoSetError(f"{csv_path.name} line {line}: the label must be one lowercase word of letters and "
                                f"digits, got {row['label']!r}.")
    return rows


def load_photoset(csv_path: str | Path) -> list[Photo]:
    """The photos of a set whose packages are present; the others are skipped with one warning that names the
    command fetching them."""
    csv_path = Path(csv_path)
    photos: list[Photo] = []
    missing: dict[str, str] = {}
    for row in read_rows(csv_path):
        local = resolve_photo(row["package"], row["path"])
        if local is None:
            missing.setdefault(row["package"], row["path"])
            continue
        photos.append(Photo(path=local, label=row["label"], group=row["group"], title=row["title"],
                            acceptable=tuple((row.get("acceptable") or "").split()), package=row["package"]))
    if missing:
        log.warning("%s: photos of %d package(s) skipped because they are not here (%s); fetch them with %s.",
                    csv_path.name, len(missing), ", ".join(sorted(missing)), _fetch_hint(missing))
    return photos


def split_by_hash(rows: Sequence[dict[str, str]], min_test: int = MIN_TEST_PER_LABEL
                  ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The catalog dev/test rule: within each label, rows ordered by the SHA-256 of their ``path``; the first
    ``max(min_test, ceil(n / 2))`` go to test, the rest to dev. Fixed before any result was seen, so neither
    file is chosen by how a model does on it."""
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    dev, test = [], []
    for label in sorted(by_label):
        ordered = sorted(by_label[label], key=lambda r: hashlib.sha256(r["path"].encode()).hexdigest())
        k = max(min_test, math.ceil(len(ordered) / 2))
        test += ordered[:k]
        dev += ordered[k:]
    return dev, test


#: Crops keep 60-100% of each side and outputs are up to 1.1 x size: a source never needs more than this.
_CROP_MIN, _SCALE_MAX = 0.6, 1.1


def _load_rgb(source: Path, long_side: int):
    """``source`` upright in RGB, shrunk to at most ``long_side`` px (JPEGs decode at a reduced scale)."""
    with Image.open(source) as im:
        im.draft("RGB", (long_side, long_side))
        im = ImageOps.exif_transpose(im).convert("RGB")
    if max(im.size) > long_side:
        im.thumbnail((long_side, long_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return im


def _variant(source: Path, rng: random.Random, size: int):
    """One random crop (60-100% of each side), maybe mirrored, scaled to about ``size`` px on the long side."""
    im = _load_rgb(source, math.ceil(size * _SCALE_MAX / _CROP_MIN))
    w, h = im.size
    cw, ch = max(1, round(w * rng.uniform(_CROP_MIN, 1.0))), max(1, round(h * rng.uniform(_CROP_MIN, 1.0)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    long_side = max(8, round(size * rng.uniform(0.9, _SCALE_MAX)))
    scale = long_side / max(cw, ch)
    return im.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BICUBIC,
                     reducing_gap=2.0)


def _shrunk_pool(photos: Sequence[Photo], folder: Path, size: int) -> list[Photo]:
    """Each photo once, shrunk to the largest size a variant can need and saved as a JPEG in ``folder``, so the
    thousands of variants decode a small JPEG instead of the full-size original (a 1920 px WebP or a 6000 px
    wallpaper) every time."""
    long_side = math.ceil(size * _SCALE_MAX / _CROP_MIN)
    pool = []
    for i, photo in enumerate(photos):
        out = folder / f"{i:05d}.jpg"
        _load_rgb(photo.path, long_side).save(out, format="JPEG", quality=95)
        pool.append(dataclasses.replace(photo, path=out))
    return pool


def materialize_jpegs(photos: Sequence[Photo], out_dir: str | Path, n: int, size: int = 600,
                      seed: int = 0) -> list[Path]:
    """``n`` JPEGs of about ``size`` px on the long side in ``out_dir/<label>/``, made from ``photos``.

    Each pass over the pool uses every photo once in a seeded random order, so the labels stay balanced; every
    output is a different random crop/flip/scale. Each photo is first shrunk once to the largest size a variant
    can need (a temporary folder, not memory); then one image is decoded at a time (streamed), each file is
    written atomically, and ``manifest.json`` records what made the folder. Same inputs and seed: same files.
    """
    if not photos:
        raise ValueError("No photos to make JPEGs from: the photo set is empty or none of its packages is here.")
    if n < 0 or size < 8:
        raise ValueError(f"n must be >= 0 and size >= 8 (got n={n}, size={size}).")
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    paths: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="photopool-") as folder:
        pool = _shrunk_pool(photos, Path(folder), size)
        for i, photo in enumerate(_passes(pool, n, rng)):
            out = out_dir / photo.label / f"{i:06d}.jpg"
            with atomic_path(out) as tmp:
                _variant(photo.path, rng, size).save(tmp, format="JPEG", quality=90)
            paths.append(out)
    manifest = {"n": n, "size": size, "seed": seed, "pool": len(photos),
                "labels": sorted({p.label for p in photos}),
                "made_by": "core.photosets.materialize_jpegs: random crop 60-100% per side, mirror p=0.5, "
                           "long side 0.9-1.1 x size, JPEG quality 90"}
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    log.info("made %d JPEGs of about %d px from %d photos in %s", n, size, len(photos), out_dir)
    return paths


def _passes(photos: Sequence[Photo], n: int, rng: random.Random) -> Iterable[Photo]:
    """``n`` photos: whole shuffled passes over the pool, the last one cut short."""
    made = 0
    while made < n:
        order = list(photos)
        rng.shuffle(order)
        for photo in order[:n - made]:
            yield photo
        made += min(len(order), n - made)
