"""Dataset preparation shared by several tabs: Debian data packages and the Tux Paint stamp catalog.

Why here: Tux Paint's stamps (real images, one English caption each, a category path) serve the
fashion tab (``clothes/``), the hashtag tab and multimodal search, so one reader owns their quirks:
``X_mirror.png`` copies without a caption of their own, stems shipped as both PNG and SVG, captions
in the first line of a multi-language ``.txt``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

TUXPAINT_PACKAGE = "tuxpaint-stamps-default"
TUXPAINT_DIR = Path(os.environ.get("TUXPAINT_STAMPS_DIR", "/usr/share/tuxpaint/stamps"))
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


class DataUnavailable(RuntimeError):
    """A dataset is not on this machine. The message says exactly what to install or pass."""


# ----------------------------------------------------------------------------------------------
# Debian data packages


def apt_usable() -> bool:
    """True when this process may run apt-get: as root, or through passwordless sudo."""
    if shutil.which("apt-get") is None:
        return False
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return True
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def ensure_debian_package(package: str, marker: Path, *, install: bool = False) -> Path:
    """Make sure the Debian package that provides ``marker`` is installed; return ``marker``.

    Installs it through apt only when ``install`` is set, which only ``python -m core prepare`` (run by
    ``make setup``) does: a web server or a command that reads data must never run apt-get as a side effect
    (as root, on every rerun of a page). Otherwise raises ``DataUnavailable`` with the exact command to run
    (or the environment variable to point elsewhere), instead of a bare FileNotFoundError deep inside a loader.
    """
    if marker.exists():
        return marker
    if install and apt_usable():
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        log.info("installing Debian package %s", package)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = prefix + ["apt-get", "install", "-y", "--no-install-recommends", package]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:  # the package lists may be stale on a fresh machine
            subprocess.run(prefix + ["apt-get", "update", "-qq"], capture_output=True, env=env)
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode == 0 and marker.exists():
            return marker
        log.warning("apt-get install %s failed: %s", package, result.stderr.strip()[-500:])
    raise DataUnavailable(
        f"{marker} is missing. Install it with `make setup` (or `sudo apt-get install -y --no-install-recommends "
        f"{package}`), or point the loader at a copy of the files."
    )


# ----------------------------------------------------------------------------------------------
# Tux Paint stamps


@dataclass(frozen=True)
class Stamp:
    """One Tux Paint stamp: a real image with a caption and a category path.

    ``id`` is the path below the stamps root without suffix (``animals/birds/owl``), stable across
    machines. ``group`` is the id of the original for ``_mirror`` copies (and the id itself otherwise):
    split by group so a mirror never lands on the other side of a train/test split from its original.
    """

    id: str
    image_path: Path
    caption: str
    category: tuple[str, ...]
    group: str
    is_mirror: bool = False
    alternates: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The file stem (``owl``), without ``_mirror``."""
        return self.id.rsplit("/", 1)[-1].removesuffix("_mirror")

    @property
    def top_category(self) -> str:
        return self.category[0] if self.category else ""


def _one_per_stamp(stamps: list[Stamp]) -> list[Stamp]:
    """Drop mirror copies and byte-identical duplicates (same caption and image file content), keeping order."""
    seen: set[tuple[str, str]] = set()
    kept: list[Stamp] = []
    for s in stamps:
        if s.is_mirror:
            continue
        key = (s.caption, hashlib.sha256(s.image_path.read_bytes()).hexdigest())
        if key in seen:
            log.debug("dropping %s: the same picture and caption as an earlier stamp", s.id)
            continue
        seen.add(key)
        kept.append(s)
    return kept


def _caption(txt: Path) -> str:
    """The English caption: the first line of the stamp's ``.txt`` (the rest are translations)."""
    try:
        with open(txt, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return ""


def load_tuxpaint(
    root: str | Path | None = None,
    *,
    categories: Iterable[str] | None = None,
    install: bool = False,
    one_per_stamp: bool = False,
) -> list[Stamp]:
    """Read every stamp under ``root`` (default: the Debian package's folder), sorted by id.

    ``categories`` keeps only stamps whose top-level folder is listed (e.g. ``["clothes"]``).
    Mirrors take their original's caption. A stem shipped as both PNG and SVG is one stamp whose
    image is the PNG (no rasteriser needed) and whose SVG is kept in ``alternates``.

    ``one_per_stamp`` is for catalogs, where a product must appear once: it drops ``_mirror`` copies
    whose original is present (a left-right flip of the same picture) and byte-identical copies of a
    stamp filed under a second folder with the same caption (the first id is kept). Training sets keep
    mirrors (grouped with their original) as free augmentation.
    """
    if root is None:
        root = ensure_debian_package(TUXPAINT_PACKAGE, TUXPAINT_DIR, install=install)
    root = Path(root)
    if not root.is_dir():
        raise DataUnavailable(f"{root} is not a folder of Tux Paint stamps.")
    wanted = set(categories) if categories is not None else None
    files: dict[str, list[Path]] = {}
    for path in root.rglob("*"):
        if path.suffix.lower() not in (".png", ".svg") or not path.is_file():
            continue
        rel = path.relative_to(root).with_suffix("")
        if wanted is not None and rel.parts[0] not in wanted:
            continue
        files.setdefault(rel.as_posix(), []).append(path)
    stamps: list[Stamp] = []
    for stem_id in sorted(files):
        paths = sorted(files[stem_id], key=lambda p: p.suffix.lower() != ".png")  # PNG first
        is_mirror = stem_id.endswith("_mirror")
        group = stem_id.removesuffix("_mirror") if is_mirror else stem_id
        caption = _caption(root / f"{group}.txt")
        if not caption:
            caption = group.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ")
        category = tuple(Path(stem_id).parts[:-1])
        stamps.append(
            Stamp(
                id=stem_id,
                image_path=paths[0],
                caption=caption,
                category=category,
                group=group if group in files else stem_id,
                is_mirror=is_mirror and group in files,
                alternates=tuple(paths[1:]),
            )
        )
    if not stamps:
        raise DataUnavailable(f"No PNG or SVG stamps found under {root}.")
    if one_per_stamp:
        stamps = _one_per_stamp(stamps)
    log.info("loaded %d Tux Paint stamps from %s", len(stamps), root)
    return stamps
