"""Hashtag data: images → captions → ground-truth hashtags, splits, vocabulary, cached encoder grids.

Why these choices:

* **Tux Paint as the default corpus.** It is the one set of real captioned images that ships offline
  (961 stamps, an English caption each, a category path). Hashtags come from the category path
  (``animals/birds/owl`` → ``#animal #bird``) followed by the caption's content words ("A snowy owl." →
  ``#snowy #owl``), so the ground truth is reproducible from the package and needs no annotator.
* **Normalisation without nltk data.** ``wordpunct_tokenize`` + scikit-learn's stop words + a
  Snowball-stemmer-backed lemma map (inflections collapse onto the most frequent surface form seen
  in the corpus) + plural rules for words whose singular never occurs. nltk's corpora cannot be
  downloaded here, and WordNet lemmatisation would need them.
* **Split by group.** A ``_mirror`` copy shares its original's group, and the split is a hash of the
  group id, so a mirror can never sit on the other side of train/test from its original, and the
  split of an image does not change when other images are added.
* **Tables as CSV and vocabulary as JSON**: readable, diffable, never a pickle.
* **Grids cached once** (``grids.npz`` keyed by the encoder spec and the data checksum): encoding is
  the slow part; the decoder then trains on cached 7×7×1280 grids in minutes on a CPU.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from PIL import ImageOps

from core.artifacts import (
    MODELS_DIR,
    ArtifactError,
    atomic_path,
    checksum_strings,
    load_arrays,
    read_json,
    save_arrays,
    write_json,
)
from core.datasets import load_tuxpaint
from core.images import load_any
from core.progress import ProgressFn
from hashtag.text import (  # noqa: F401 - re-exported: the dataset API includes its normalisation
    EXTRA_STOP,
    INVARIANT,
    build_lemma_map,
    content_words,
    dedupe,
    normalize_tag,
    singular,
)

log = logging.getLogger(__name__)

PAD, START, END = "<pad>", "<start>", "<end>"
SPECIALS = (PAD, START, END)
SPLITS = ("train", "val", "test")

#: Where ``python -m hashtag build-dataset`` writes the Tux Paint tables by default.
HASHTAG_DIR = MODELS_DIR / "hashtag"
DEFAULT_DATASET = HASHTAG_DIR / "tuxpaint"
BUILD_HINT = "python -m hashtag build-dataset"

class DatasetError(RuntimeError):
    """A dataset file is missing or malformed; the message says which and how to fix it."""


# ----------------------------------------------------------------------------------------------
# examples and loaders


@dataclass
class Example:
    """One image with its caption and ground-truth hashtags (category tags first, then caption words)."""

    id: str
    image: str
    caption: str
    tags: list[str]
    group: str
    split: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)


def split_of(group: str, val: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split from a hash of the group id: stable across machines and dataset growth."""
    bucket = int(hashlib.sha1(group.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test:
        return "test"
    if bucket < test + val:
        return "val"
    return "train"


def tuxpaint_examples(root: str | Path | None = None) -> list[Example]:
    """Tux Paint stamps → examples: tags = category folders (root→leaf) + caption content words."""
    stamps = load_tuxpaint(root)
    raw_words: list[str] = []
    for s in stamps:
        raw_words += content_words(s.caption)
        raw_words += [p for folder in s.category for p in re.split(r"[^0-9a-z]+", folder.lower()) if p]
    lemma = build_lemma_map(raw_words)
    out = []
    for s in stamps:
        cat_tags = [normalize_tag(folder, lemma) for folder in s.category]
        words = [lemma.get(w, w) for w in content_words(s.caption)]
        out.append(
            Example(
                id=s.id, image=str(s.image_path), caption=s.caption, tags=dedupe(cat_tags + words),
                group=s.group, source="tuxpaint", extra={"mirror": s.is_mirror},
            )
        )
    return out


def flickr8k_examples(
    token_file: str | Path, images_dir: str | Path, *, min_captions: int = 2, skip_missing: bool = True
) -> list[Example]:
    """Flickr8k: ``Flickr8k.token.txt`` (``<image>.jpg#<n>\\t<caption>``) + the image folder.

    Hashtags are the content words that occur in at least ``min_captions`` of an image's captions
    (one annotator's odd word is not a tag), most frequent first, ties in order of first appearance.
    """
    token_file, images_dir = Path(token_file), Path(images_dir)
    if not token_file.is_file():
        raise DatasetError(f"Flickr8k token file not found: {token_file}")
    captions: dict[str, list[str]] = defaultdict(list)
    with open(token_file, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" not in line or "#" not in line.split("\t", 1)[0]:
                raise DatasetError(f"{token_file}:{lineno}: expected '<image>#<n><TAB><caption>'")
            key, caption = line.split("\t", 1)
            captions[key.rsplit("#", 1)[0]].append(caption.strip())
    lemma = build_lemma_map(w for caps in captions.values() for c in caps for w in content_words(c))
    out = []
    for name in sorted(captions):
        path = images_dir / name
        if not path.is_file():
            if skip_missing:
                log.warning("Flickr8k image missing, skipped: %s", path)
                continue
            raise DatasetError(f"Flickr8k image missing: {path}")
        caps = captions[name]
        need = min(min_captions, len(caps))
        per_caption = [dedupe(lemma.get(w, w) for w in content_words(c)) for c in caps]
        count = Counter(t for tags in per_caption for t in tags)
        first = {t: i for i, t in reversed(list(enumerate(t for tags in per_caption for t in tags)))}
        tags = sorted((t for t in count if count[t] >= need), key=lambda t: (-count[t], first[t]))
        stem = Path(name).stem
        out.append(Example(id=stem, image=str(path), caption=caps[0], tags=tags, group=stem, source="flickr8k",
                           extra={"captions": caps}))
    if not out:
        raise DatasetError(f"No Flickr8k images from {token_file} were found in {images_dir}")
    return out


def csv_examples(csv_file: str | Path, images_dir: str | Path | None = None) -> list[Example]:
    """A generic ``image,hashtags`` CSV (header required; optional ``caption`` column).

    ``hashtags`` may be ``#cat #animal``, ``cat animal`` or ``cat, animal``. Image paths are relative
    to ``images_dir`` (default: the CSV's folder) unless absolute.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DatasetError(f"CSV file not found: {csv_file}")
    base = Path(images_dir) if images_dir else csv_file.parent
    with open(csv_file, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often start with a BOM
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "image" not in fields or "hashtags" not in fields:
            raise DatasetError(f"{csv_file} needs a header with 'image' and 'hashtags' columns, found {fields}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    out = []
    for row in rows:
        if not row.get("image"):
            continue
        path = Path(row["image"])
        path = path if path.is_absolute() else base / path
        tags = dedupe(normalize_tag(t) for t in re.split(r"[\s,;]+", row["hashtags"]) if t.strip("#"))
        ident = Path(row["image"]).with_suffix("").as_posix()
        out.append(Example(id=ident, image=str(path), caption=row.get("caption", ""), tags=tags, group=ident,
                           source="csv"))
    if not out:
        raise DatasetError(f"{csv_file} has no rows")
    return out


# ----------------------------------------------------------------------------------------------
# the built dataset: tables + vocabulary on disk


@dataclass
class Vocab:
    """Tag ↔ index map; specials first. Saved as JSON (tags in index order + their train counts)."""

    tags: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tags)}

    @classmethod
    def build(cls, tag_lists: Iterable[Sequence[str]], min_count: int = 2) -> "Vocab":
        """Tags seen at least ``min_count`` times (in the training split), most frequent first."""
        counts = Counter(t for tags in tag_lists for t in tags)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + kept, {t: counts[t] for t in kept})

    def __len__(self) -> int:
        return len(self.tags)

    def encode(self, tags: Sequence[str], max_len: int) -> list[int]:
        """``<start> t1 … tn <end>`` with unknown tags dropped and at most ``max_len`` tags."""
        ids = [self.index[t] for t in tags if t in self.index][:max_len]
        return [self.index[START], *ids, self.index[END]]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tags[i] for i in ids if self.tags[i] not in SPECIALS]

    def to_json(self) -> dict:
        return {"specials": list(SPECIALS), "tags": self.tags, "counts": self.counts}

    @classmethod
    def from_json(cls, obj: dict) -> "Vocab":
        if not isinstance(obj, dict) or list(obj.get("tags", [])[:3]) != list(SPECIALS):
            raise ArtifactError(f"not a hashtag vocabulary. Rebuild it with `{BUILD_HINT}`.")
        return cls(list(obj["tags"]), {k: int(v) for k, v in obj.get("counts", {}).items()})


@dataclass
class HashtagDataset:
    """A built dataset folder: ``captions.csv``, ``hashtags.csv`` (with split), ``vocab.json``, ``dataset.json``."""

    root: Path
    examples: list[Example]
    vocab: Vocab
    manifest: dict

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]

    @property
    def checksum(self) -> str:
        return str(self.manifest["checksum"])


def drop_unreadable(examples: list[Example]) -> list[Example]:
    """Examples whose image decodes (PNG/JPEG/… through ``load_image``, SVG through ``load_any``)."""
    keep = []
    for e in examples:
        try:
            load_any(e.image)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means: leave this image out
            log.warning("skipping unreadable image %s (%s)", e.image, exc)
            continue
        keep.append(e)
    if not keep:
        raise DatasetError("none of the images could be read")
    return keep


def build_dataset(
    examples: list[Example], out: str | Path = DEFAULT_DATASET, *, min_count: int = 1, name: str = "tuxpaint"
) -> HashtagDataset:
    """Assign splits by group, build the vocabulary from train, and write the tables atomically.

    Images that cannot be decoded are dropped here, with a warning naming them, so that training and
    the grid cache never meet them (Tux Paint ships one SVG that the safe rasteriser refuses).
    """
    out = Path(out)
    examples = drop_unreadable(examples)
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        dup = [i for i, c in Counter(ids).items() if c > 1][:3]
        raise DatasetError(f"duplicate image ids: {dup}")
    for e in examples:
        e.split = split_of(e.group)
    vocab = Vocab.build((e.tags for e in examples if e.split == "train"), min_count=min_count)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "captions.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "image", "caption"])
            for e in examples:
                w.writerow([e.id, e.image, e.caption])
    with atomic_path(out / "hashtags.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "image", "hashtags", "split", "group"])
            for e in examples:
                w.writerow([e.id, e.image, " ".join(e.tags), e.split, e.group])
    write_json(out / "vocab.json", vocab.to_json())
    checksum = checksum_strings(f"{e.id}|{e.image}|{' '.join(e.tags)}|{e.split}" for e in examples)
    sizes = Counter(e.split for e in examples)
    manifest = {
        "kind": "hashtag-dataset", "schema": 1, "name": name, "checksum": checksum, "images": len(examples),
        "splits": {s: sizes.get(s, 0) for s in SPLITS}, "vocab_size": len(vocab) - len(SPECIALS),
        "min_count": min_count, "mean_tags": float(np.mean([len(e.tags) for e in examples])) if examples else 0.0,
    }
    write_json(out / "dataset.json", manifest)
    log.info("wrote %s: %d images %s, %d tags", out, len(examples), manifest["splits"], manifest["vocab_size"])
    return HashtagDataset(out, examples, vocab, manifest)


def load_dataset(root: str | Path = DEFAULT_DATASET) -> HashtagDataset:
    """Read a dataset folder written by ``build_dataset``; a missing one says which command builds it."""
    root = Path(root)
    if not (root / "dataset.json").is_file():
        raise ArtifactError(f"No hashtag dataset at {root}. Build it with `{BUILD_HINT}`.")
    manifest = read_json(root / "dataset.json")
    vocab = Vocab.from_json(read_json(root / "vocab.json"))
    captions: dict[str, str] = {}
    with open(root / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            captions[row["image_id"]] = row["caption"]
    examples = []
    with open(root / "hashtags.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            examples.append(Example(id=row["image_id"], image=row["image"], caption=captions.get(row["image_id"], ""),
                                    tags=row["hashtags"].split(), group=row["group"], split=row["split"]))
    return HashtagDataset(root, examples, vocab, manifest)


def ensure_dataset(root: str | Path = DEFAULT_DATASET) -> HashtagDataset:
    """Load the dataset, building the default Tux Paint one first if it does not exist yet."""
    root = Path(root)
    if not (root / "dataset.json").is_file() and root == DEFAULT_DATASET:
        build_dataset(tuxpaint_examples(), root)
    return load_dataset(root)


# ----------------------------------------------------------------------------------------------
# cached encoder grids


def grid_cache(ds: HashtagDataset, encoder, *, flips: bool = True, progress: Optional[ProgressFn] = None
               ) -> dict[str, np.ndarray]:
    """``{"grids": (N,C,h,w) float16, "flips": (N,C,h,w) float16}`` rows aligned with ``ds.examples``.

    Computed once and stored as ``grids-<key>.npz`` next to the dataset, keyed by the encoder spec and the
    dataset checksum; a stale file is recomputed instead of silently mixing features. float16 halves the
    file (≈120 MB per copy for Tux Paint) at no measurable cost to the decoder.
    """
    spec = dict(encoder.spec)
    key = checksum_strings([ds.checksum, *(f"{k}={v}" for k, v in sorted(spec.items())), f"flips={flips}"])[:12]
    stem = ds.root / f"grids-{key}"
    expect = {"dataset": ds.checksum, "encoder": spec, "flips": flips}
    try:
        arrays, _ = load_arrays(stem, kind="hashtag-grids", expect=expect)
        if len(arrays["grids"]) == len(ds.examples):
            return arrays
    except ArtifactError:
        pass
    log.info("encoding %d images once (cached in %s.npz)", len(ds.examples), stem)
    images = []
    for e in ds.examples:
        try:
            images.append(load_any(e.image))
        except Exception as exc:  # noqa: BLE001 - name the bad file, then stop
            raise DatasetError(f"cannot read image {e.image} ({exc})") from exc
    arrays = {"grids": encoder.grid(images, progress=progress).astype(np.float16)}
    if flips:
        arrays["flips"] = encoder.grid([ImageOps.mirror(im) for im in images], progress=progress).astype(np.float16)
    save_arrays(stem, arrays, {"kind": "hashtag-grids", **expect, "ids": checksum_strings(e.id for e in ds.examples)})
    prune_stale_grids(ds)
    return arrays


def prune_stale_grids(ds: HashtagDataset) -> list[Path]:
    """Delete grid caches built for an earlier version of this dataset (≈240 MB each); returns what went.

    Caches of the *same* data under another encoder stay: switching backbones back and forth is cheap.
    Only files this module wrote are touched (``grids-*.json`` with kind ``hashtag-grids`` + their array file).
    """
    removed = []
    for manifest_path in sorted(ds.root.glob("grids-*.json")):
        try:
            manifest = read_json(manifest_path)
        except ArtifactError:
            continue
        if manifest.get("kind") != "hashtag-grids" or manifest.get("dataset") == ds.checksum:
            continue
        for path in (ds.root / str(manifest.get("file", "")), manifest_path):
            if path.is_file() and path.name.startswith("grids-"):
                path.unlink()
                removed.append(path)
        log.info("removed stale grid cache %s (built for dataset %s)", manifest_path.stem, manifest.get("dataset"))
    return removed
