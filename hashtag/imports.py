"""Tagged photos from a zip: a CSV of ``image,hashtags`` or Flickr8k's layout → one import in the feedback store.

Why it is built this way:

* **The archive is a stranger's.** It is unpacked by ``core.catalog.archive`` (paths, links, bombs and sizes
  checked from its directory before a byte is written), with tighter caps than a catalog: an import is a
  person's labelled photos, not a shop.
* **Validated as a whole, stored all or nothing.** Every check that can fail (no CSV, paths outside the CSV's
  folder, missing photos, no usable hashtag, too many photos, unreadable photos) runs before the store commits
  anything, and each refusal is one sentence naming the count and the first few offenders. A half-imported zip
  would be worse than none: its owner could not tell what the model learned from.
* **The photos are the importer's feedback.** They become tagged images of the importing profile
  (``FeedbackStore.import_tagged_images``), marked as one batch that can be listed and removed; an
  administrator's import is accepted for training at once, anyone else's waits on the Review page like a tag
  edit made in the Hashtags tab.
* **Hashtags** are read exactly as ``hashtag.data`` reads them for a dataset (``#Cats, beach`` → ``cat beach``;
  Flickr8k: the content words of at least two of an image's captions), so imported tags and dataset tags share
  one vocabulary.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from core.catalog.archive import MB, CatalogError, Limits, extract_archive, is_ignored
from core.feedback import FeedbackError, FeedbackStore
from core.feedback.store import MAX_IMAGE_BYTES, MAX_TAGS, TAG_LEN
from hashtag.data import DatasetError, Example, csv_examples, flickr8k_examples

log = logging.getLogger(__name__)

#: Photos one import may hold (each is decoded and re-encoded while the person waits).
MAX_PHOTOS = 1000
#: The zip's own caps: tighter than a catalog's, since an import is decoded while its owner waits.
LIMITS = Limits(max_archive_bytes=500 * MB, max_entries=5 * MAX_PHOTOS, max_total_bytes=1024 * MB,
                max_items=MAX_PHOTOS, max_csv_bytes=20 * MB)
#: Offending names quoted in a refusal (the count says how many there are in all).
NAMED = 3
TOKEN_FILE = "Flickr8k.token.txt"
FLICKR_FOLDERS = ("Flicker8k_Dataset", "Flickr8k_Dataset")  # the official zip misspells it; accept both


class ImportRefused(FeedbackError):
    """An import that cannot be used; the message is one sentence its owner can act on. Nothing was stored."""


@dataclass
class ImportPlan:
    """What a checked archive holds: its layout, the photos to store, and the rows left out (and why)."""

    kind: str
    source: str
    photos: list[tuple[str, Path, list[str]]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def _first(names: list[str]) -> str:
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def _find(root: Path, pattern: str) -> list[Path]:
    """Files below ``root`` matching ``pattern``, without hidden files and platform litter, in name order."""
    return sorted(p for p in root.rglob(pattern)
                  if p.is_file() and not is_ignored(p.relative_to(root).parts))


def read_folder(root: Path, limits: Limits = LIMITS) -> ImportPlan:
    """Recognise the layout of an unpacked import and check it; ``ImportRefused`` with one sentence if unusable."""
    tokens = _find(root, TOKEN_FILE)
    if tokens:
        return _flickr8k(root, tokens[0])
    candidates = []
    for path in _find(root, "*.csv"):
        if path.stat().st_size > limits.max_csv_bytes:
            raise ImportRefused(f"{path.name} is {path.stat().st_size / MB:.0f} MB; a CSV of hashtags may have at "
                                f"most {limits.max_csv_bytes / MB:.0f} MB.")
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = [c.strip().lower() for c in next(csv.reader(f), [])]
        if "image" in header and "hashtags" in header:
            candidates.append(path)
    if not candidates:
        raise ImportRefused("The zip has no CSV with 'image' and 'hashtags' columns and no Flickr8k.token.txt; add "
                            "a CSV whose rows name each photo (relative to the CSV) and its hashtags.")
    if len(candidates) > 1:
        raise ImportRefused(f"The zip holds {len(candidates)} CSVs with 'image' and 'hashtags' columns "
                            f"({_first([c.relative_to(root).as_posix() for c in candidates])}); keep one per import.")
    try:
        examples = csv_examples(candidates[0])
    except (DatasetError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{candidates[0].name} cannot be read ({_without(str(exc), root)}).") from exc
    return _plan("csv", candidates[0].name, candidates[0].parent, examples, len(examples))


def _flickr8k(root: Path, token: Path) -> ImportPlan:
    """Flickr8k: the token file, and the photo folder beside it (or at the top of the zip)."""
    folder = next((d / name for d in (token.parent, root) for name in FLICKR_FOLDERS if (d / name).is_dir()), None)
    if folder is None:
        raise ImportRefused(f"The zip has {TOKEN_FILE} but no {FLICKR_FOLDERS[0]} folder of photos beside it.")
    with open(token, encoding="utf-8", errors="replace") as f:
        listed = {line.split("\t", 1)[0].rsplit("#", 1)[0] for line in f if "\t" in line}
    examples: list[Example] = []
    try:
        examples = flickr8k_examples(token, folder, skip_missing=True)
    except DatasetError as exc:
        if "were found" not in str(exc):  # a malformed token file; "none found" is reported as missing below
            raise ImportRefused(f"{TOKEN_FILE} cannot be read ({_without(str(exc), root)}).") from exc
    found = {Path(e.image).name for e in examples}
    missing = sorted(listed - found)
    if missing:
        raise ImportRefused(f"{len(missing)} of {len(listed)} photos named in {TOKEN_FILE} are not in "
                            f"{folder.name}/ ({_first(missing)}); add them or remove their captions.")
    return _plan("flickr8k", TOKEN_FILE, folder, examples, len(listed))


def _without(text: str, root: Path) -> str:
    """An error message without the server's temporary folder in it."""
    return text.replace(f"{root}{os.sep}", "").replace(str(root), "the zip")


def _plan(kind: str, source: str, base: Path, examples: list[Example], listed: int) -> ImportPlan:
    """Check the listed photos as a whole: inside the folder, present, within the budget, with hashtags."""
    base = base.resolve()
    outside, missing, photos = [], [], []
    seen: dict[Path, list[str]] = {}
    skipped: dict[str, int] = {}
    for e in examples:
        e.tags = [t for t in e.tags if len(t) <= TAG_LEN][:MAX_TAGS]  # what the store keeps per photo
        path = Path(e.image)
        name = os.path.relpath(path, base)
        if not path.resolve().is_relative_to(base):
            outside.append(name)
        elif not path.is_file():
            missing.append(name)
        elif not e.tags:
            skipped["no usable hashtag"] = skipped.get("no usable hashtag", 0) + 1
        elif path.resolve() in seen:  # listed twice: one photo with both rows' hashtags
            seen[path.resolve()] += [t for t in e.tags if t not in seen[path.resolve()]]
            skipped["listed twice (hashtags merged)"] = skipped.get("listed twice (hashtags merged)", 0) + 1
        else:
            seen[path.resolve()] = list(e.tags)
            photos.append((Path(name).as_posix(), path.resolve()))
    if outside:
        raise ImportRefused(f"{len(outside)} image paths in {source} point outside its folder ({_first(outside)}); "
                            "give paths relative to the CSV, inside the zip.")
    if missing:
        raise ImportRefused(f"{len(missing)} of {listed} photos listed in {source} are not in the zip "
                            f"({_first(missing)}); add them or remove their rows.")
    if not photos:
        raise ImportRefused(f"No row of {source} has a usable hashtag (hashtags are words of letters or digits, "
                            "such as '#beach sunset').")
    if len(photos) > MAX_PHOTOS:
        raise ImportRefused(f"{source} lists {len(photos):,} photos; one import may hold at most {MAX_PHOTOS:,} "
                            "(split it into several zips).")
    return ImportPlan(kind, source, [(name, path, seen[path]) for name, path in photos], skipped)


def _reader(path: Path) -> Callable[[], bytes]:
    """The photo's bytes, read only when the store encodes it (never all of an import in memory at once)."""
    def read() -> bytes:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise FeedbackError(f"it is {size / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB")
        return path.read_bytes()
    return read


def import_zip(store: FeedbackStore, profile: str, archive: bytes | Path, *, label: str,
               reviewer: Optional[str] = None, limits: Limits = LIMITS) -> dict[str, Any]:
    """Check and store one zip of tagged photos as an import of ``profile``; returns the import report.

    ``reviewer``: the importing administrator's key (the photos are accepted for training at once); ``None``
    leaves them pending review. Raises ``ImportRefused`` (one sentence; nothing stored) for an unusable zip.
    """
    workdir = Path(tempfile.mkdtemp(prefix="recs-import-"))
    try:
        path = workdir / "upload.zip"
        if isinstance(archive, (bytes, bytearray)):
            path.write_bytes(archive)
        else:
            shutil.copyfile(archive, path)
        try:
            root = extract_archive(path, workdir / "unpacked", limits)
        except CatalogError as exc:
            raise ImportRefused(str(exc).replace("upload.zip", label or "The zip")) from exc
        plan = read_folder(root, limits)
        try:
            batch = store.import_tagged_images(profile, [(name, _reader(p), tags) for name, p, tags in plan.photos],
                                               label=label or "import.zip", kind=plan.kind, reviewer=reviewer)
        except ImportRefused:
            raise
        except FeedbackError as exc:  # unreadable photos: the store has removed what it wrote
            raise ImportRefused(str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    tags = {t for _, _, ts in plan.photos for t in ts}
    return {"batch": batch.id, "label": batch.label, "kind": plan.kind, "source": plan.source,
            "photos": batch.images, "rows": len(plan.photos) + sum(plan.skipped.values()), "skipped": plan.skipped,
            "tags": len(tags), "review": "accepted" if reviewer else "pending"}
