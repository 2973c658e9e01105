"""Build a catalog: one streamed pass over its images makes every artifact Fashion and Product search need.

    manifest = build_catalog("my-shop", read_source("photos.zip", workdir=tmp), progress=callback)

Per image, once: decode (JPEG decoded at reduced scale when it is much larger than needed), a 256 px
thumbnail for display, the CNN's grid → a max-pooled image vector (what both tabs' photo search compares)
and the ImageNet class probabilities from the same forward pass → WordNet concept words with their
probability mass (so word search finds photos nobody titled). Then, once per catalog: text embeddings of
titles and descriptions, embeddings of the concept vocabulary, a search index sized to the catalog
(``core.search``: exact below its threshold, FAISS above), and groups of near-duplicate images.

Why streamed: a 10,000-photo shop must build in a worker with a bounded memory budget, so no step holds
every decoded image; only vectors (5 KB per image) accumulate.

Why a temporary folder renamed at the end: a build that is killed or fails leaves nothing a tab could open.
The folder name comes from ``check_name`` (a whitelist), never from a file or a person's free text.
"""

from __future__ import annotations

import concurrent.futures as futures
import datetime as _dt
import io
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from core import artifacts
from core.catalog.sources import SHIPPED_KIND, CatalogError, Item, Skipped, SourceReport, check_name
from core.concepts import class_probabilities, concept_table
from core.encoders import ENCODER_CACHE, ImageEncoder, get_image_encoder
from core.progress import ProgressFn
from core.images import MAX_PIXELS, ImageError, letterbox, load_image, load_svg
from core.locks import BuildInProgress, build_lock
from core.search import VectorIndex
from core.text import DEFAULT_TEXT_MODEL, get_text_encoder

log = logging.getLogger(__name__)

KIND = "catalog"
SCHEMA = 1
#: Long side of the stored display thumbnails.
THUMB_SIDE = 256
#: Images per encoder batch (the ONNX session's static batch shape).
BATCH = 32
#: Concept words kept per image (the strongest by probability mass) and the least mass worth keeping.
WORDS_PER_IMAGE = 16
MIN_WORD_MASS = 0.01
#: Cosine above which two catalog images count as near-duplicates: chosen by F1 on the dev photos' edited copies
#: (70 % resize, 90 % crop, JPEG quality 60) against distinct photos of the same label (bench/catalog_quality.py;
#: on test it finds every copy and flags 0.8 % of distinct same-label pairs).
DUPLICATE_COSINE = 0.79
#: The image encoder every catalog is built with (backbone, pooling): both tabs compare its vectors.
DEFAULT_ENCODER = ("efficientnet_lite0", "max")




def catalogs_dir() -> Path:
    """Where built catalogs live: ``<models>/catalogs/<name>/`` (read at call time so tests can redirect it)."""
    return artifacts.MODELS_DIR / "catalogs"


@dataclass
class _Decoded:
    """One image ready for the encoder: its preprocessed array and its display thumbnail as JPEG bytes."""

    row: int
    array: Optional[np.ndarray] = None
    thumb: bytes = b""
    error: str = ""


@dataclass
class _Accumulator:
    """What the streamed pass keeps: vectors and words per kept image, and what it had to skip."""

    items: list[Item] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    word_ids: list[np.ndarray] = field(default_factory=list)
    word_mass: list[np.ndarray] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=lambda: {"decode_wait": 0.0, "encode": 0.0, "words": 0.0})


# ----------------------------------------------------------------------------------------------
# decoding


def _open_scaled(path: Path, side: int) -> Image.Image:
    """Decode ``path`` to upright 8-bit RGB no smaller than ``side`` on its long side where possible.

    Both uses scale the long side (the thumbnail fits a ``side`` box, the encoder letterboxes), so only the
    long side must stay at least ``side``. JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
    (``draft``, asked for the photo's own aspect ratio) when the photo is that much larger than needed: a
    600×450 photo decodes at 300×225 and a 3000 px phone photo at 375 px, and every later resize works on
    that many fewer pixels. The pixel budget is checked on the header, before any pixel is decoded.
    """
    if path.suffix.lower() == ".svg":
        # rasterised at ``side`` (256 px), as every other loader of the shipped SVG stamps does (``load_any``),
        # so a shipped catalog's vectors equal the ones its tabs measured before it became a catalog
        return load_svg(path, side)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{img.width}×{img.height} pixels is over the {MAX_PIXELS / 1e6:.0f} MP limit")
            if img.format == "JPEG":
                scale = side / max(img.width, img.height, 1)
                img.draft("RGB", (max(1, math.ceil(img.width * scale)), max(1, math.ceil(img.height * scale))))
            img.seek(0)
            img.load()
            return load_image(img)  # upright 8-bit RGB: the one place that knows every Pillow mode
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"unreadable image ({exc.__class__.__name__})") from exc


def _decode(row: int, item: Item, encoder: ImageEncoder) -> _Decoded:
    """Decode one item into the encoder's input and a thumbnail; errors become a skip, never an exception."""
    try:
        img = _open_scaled(item.image, max(THUMB_SIDE, encoder.input_size))
        thumb = img.copy()
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        thumb.save(buf, format="JPEG", quality=85)
        canvas = letterbox(img, encoder.input_size) if encoder.resize == "pad" else img
        return _Decoded(row, encoder.preprocess(canvas), buf.getvalue())
    except ImageError as exc:
        return _Decoded(row, error=str(exc))


def _decoded_batches(items: Sequence[Item], encoder: ImageEncoder, workers: int) -> Iterator[list[_Decoded]]:
    """Batches of decoded items, decoded on a small thread pool one batch ahead of the encoder.

    Pillow releases the GIL while decoding and resizing, so the next batch decodes while ONNX Runtime runs
    the current one; at most two batches of pixels exist at any time.
    """
    with futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="catalog-decode") as pool:
        pending: Optional[list[futures.Future]] = None
        for start in range(0, len(items) + BATCH, BATCH):
            chunk = items[start : start + BATCH]
            nxt = [pool.submit(_decode, start + i, item, encoder) for i, item in enumerate(chunk)] if chunk else None
            if pending is not None:
                yield [f.result() for f in pending]
            pending = nxt
            if pending is None:
                break


# ----------------------------------------------------------------------------------------------
# the streamed pass


def _encode_pass(items: Sequence[Item], encoder: ImageEncoder, thumbs: Path, acc: _Accumulator,
                 progress: ProgressFn) -> None:
    """Decode, thumbnail, encode and name every image, one batch at a time."""
    table = concept_table()
    done, total = 0, max(1, len(items))
    waited = time.perf_counter()
    for batch in _decoded_batches(items, encoder, workers=2):
        acc.phases["decode_wait"] += time.perf_counter() - waited
        good = [d for d in batch if not d.error]
        for d in batch:
            if d.error:
                acc.skipped.append(Skipped(items[d.row].id, d.error))
        if good:
            started = time.perf_counter()
            grid = encoder.grid_batch(np.stack([d.array for d in good]))
            acc.vectors.append(encoder.pool(grid))
            acc.phases["encode"] += time.perf_counter() - started
            started = time.perf_counter()
            mass = table.scores(class_probabilities(encoder, grid))
            top = np.argsort(-mass, axis=1)[:, :WORDS_PER_IMAGE]
            acc.word_ids.append(top.astype(np.int32))
            acc.word_mass.append(np.take_along_axis(mass, top, axis=1).astype(np.float32))
            for d in good:
                (thumbs / f"{len(acc.items):06d}.jpg").write_bytes(d.thumb)
                acc.items.append(items[d.row])
            acc.phases["words"] += time.perf_counter() - started
        done += len(batch)
        progress(0.9 * done / total, f"encoded {done:,} of {len(items):,} images")
        waited = time.perf_counter()


# ----------------------------------------------------------------------------------------------
# catalog-wide steps


def _text_of(item: Item) -> str:
    """The words a person gave an item (title, category, description); empty for an untitled photo."""
    return ". ".join(t for t in (item.title, item.category, item.description) if t and t.strip())


def _embed_distinct(texts: Sequence[str]) -> np.ndarray:
    """Text vectors for ``texts``, each distinct text embedded once.

    A folder of photos has one text per sub-folder (its category), so 10,000 items often carry a few dozen
    distinct texts: embedding those alone cut the text step of a 10,000-photo build from 257 s to 6 s
    (bench/catalog_build.py, busy machine). Equal texts get equal vectors either way.
    """
    distinct = list(dict.fromkeys(texts))
    vectors = get_text_encoder().encode(distinct)
    row = {text: i for i, text in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]


def vocabulary_embeddings() -> tuple[list[str], np.ndarray]:
    """The concept vocabulary and its MiniLM embeddings, computed once per machine and cached as ``.npz``.

    About 1,200 words: a few seconds on a quiet machine, half a minute on a busy one, and the same for
    every catalog, so they live beside the encoder cache, keyed by the words and the text model.
    """
    words = list(concept_table().words)
    key = artifacts.checksum_strings([DEFAULT_TEXT_MODEL, *words])
    path = ENCODER_CACHE / f"concept-words-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return words, data["vectors"]
        except (OSError, ValueError, KeyError):
            log.warning("re-embedding the damaged concept-word cache %s", path)
    vectors = get_text_encoder().encode([w.replace("_", " ") for w in words], desc="embedding concept words")
    with artifacts.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, vectors=vectors)
    return words, vectors


def near_duplicate_groups(vectors: np.ndarray, threshold: float = DUPLICATE_COSINE, k: int = 8) -> list[list[int]]:
    """Rows whose image vectors are near-identical (cosine ≥ ``threshold``), as groups of two or more rows.

    Each image's ``k`` nearest neighbours are linked when close enough; linked rows form one group
    (union–find), so three copies of one product photo are one group, not three pairs.
    """
    if len(vectors) < 2:
        return []
    index = VectorIndex(vectors, [str(i) for i in range(len(vectors))], normalize=False).build("auto", recall_queries=200)
    rows, scores = index.search(vectors, min(k, len(vectors) - 1) + 1, exclude_ids=[str(i) for i in range(len(vectors))])
    parent = list(range(len(vectors)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (row, score) in enumerate(zip(rows, scores)):
        for j in row[(score >= threshold) & (row >= 0)]:
            parent[find(int(j))] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(vectors)):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def _write_catalog(tmp: Path, acc: _Accumulator, encoder: ImageEncoder, progress: ProgressFn) -> dict:
    """Text embeddings, vocabulary embeddings, the search index and duplicates, then every file but the manifest."""
    started = time.perf_counter()
    vectors = np.concatenate(acc.vectors).astype(np.float32)
    texts = [_text_of(item) for item in acc.items]
    vocabulary, vocabulary_vectors = vocabulary_embeddings()
    text_spec = {"name": DEFAULT_TEXT_MODEL, "dim": int(vocabulary_vectors.shape[1])}
    text_vectors = np.zeros((len(texts), text_spec["dim"]), np.float32)
    if any(texts):  # an untitled catalog needs no text model at all: its words come from the concept cache
        progress(0.92, "embedding titles and descriptions")
        text_vectors = _embed_distinct(texts)
    phases = {"text": time.perf_counter() - started}
    started = time.perf_counter()
    progress(0.96, "building the search index")
    index = VectorIndex(vectors, [item.id for item in acc.items], normalize=False).build("auto")
    search_info = index.save_faiss(tmp / "image.faiss")
    phases["index"] = time.perf_counter() - started
    started = time.perf_counter()
    groups = near_duplicate_groups(vectors)
    phases["duplicates"] = time.perf_counter() - started
    np.savez(tmp / "arrays.npz", image=vectors, text=text_vectors, word_ids=np.concatenate(acc.word_ids),
             word_mass=np.concatenate(acc.word_mass), vocabulary=vocabulary_vectors)
    rows = [{"id": it.id, "title": it.title, "category": it.category, "description": it.description,
             "attributes": dict(it.attributes), "source": str(it.image)} for it in acc.items]
    artifacts.write_json(tmp / "items.json", rows)
    artifacts.write_json(tmp / "words.json", vocabulary)
    titled = sum(bool((it.title or it.description).strip()) for it in acc.items)
    return {"search": search_info, "duplicates": groups, "phases": phases, "titled": titled,
            "text_encoder": text_spec}


def build_catalog(name: str, report: SourceReport, *, progress: Optional[ProgressFn] = None,
                  source_label: str = "", replace: bool = False, encoder: Optional[ImageEncoder] = None) -> dict:
    """Build catalog ``name`` from a read source; returns its manifest.

    Raises ``CatalogError`` (one sentence) when the name is taken (unless ``replace``) or no image could be
    used. Unreadable images are skipped and listed in the manifest beside what the source reader skipped.
    """
    name = check_name(name)
    if not report.items:
        raise CatalogError("The source has no usable images.")
    try:
        with build_lock(f"catalog-{name}", timeout=0):
            return _build_locked(name, report, progress or (lambda fraction, message: None), source_label, replace,
                                 encoder or get_image_encoder(*DEFAULT_ENCODER))
    except BuildInProgress as exc:
        raise CatalogError(f"The catalog {name} is being built right now; wait for that build to end.") from exc


def _build_locked(name: str, report: SourceReport, progress: ProgressFn, source_label: str, replace: bool,
                  encoder: ImageEncoder) -> dict:
    """The build itself, with this name's lock held: no other build of it writes beside this one."""
    root = catalogs_dir()
    final = root / name
    if final.exists() and not replace:
        raise CatalogError(f"A catalog named {name} already exists; remove it first or choose another name.")
    for leftover in root.glob(f".building-{name}-*"):  # a build of this name that was killed mid-way
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f".building-{name}-{uuid.uuid4().hex[:8]}"
    (tmp / "thumbs").mkdir(parents=True)
    try:
        started = time.perf_counter()
        acc = _Accumulator(skipped=list(report.skipped))
        _encode_pass(report.items, encoder, tmp / "thumbs", acc, progress)
        if not acc.items:
            reasons = sorted({s.reason for s in acc.skipped})[:3]
            raise CatalogError(f"None of the {len(report.items):,} images could be read ({'; '.join(reasons)}).")
        extra = _write_catalog(tmp, acc, encoder, progress)
        manifest = _manifest(name, report, acc, encoder, extra, source_label, time.perf_counter() - started)
        artifacts.write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(1.0, f"built {name}: {manifest['items']:,} images")
    return manifest


def _manifest(name: str, report: SourceReport, acc: _Accumulator, encoder: ImageEncoder, extra: dict,
              source_label: str, seconds: float) -> dict:
    phases = {**{k: round(v, 2) for k, v in acc.phases.items()}, **{k: round(v, 2) for k, v in extra["phases"].items()}}
    return {
        "kind": KIND, "schema": SCHEMA, "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"kind": report.kind, "label": source_label or str(report.root), "columns": list(report.columns),
                   "checksum": report.checksum()},
        "shipped": report.kind == SHIPPED_KIND,
        "items": len(acc.items), "titled": extra["titled"],
        "categories": sorted({it.category for it in acc.items if it.category}),
        "attributes": sorted({key for it in acc.items for key in it.attributes}),
        "skipped": [{"what": s.what, "reason": s.reason} for s in acc.skipped[:1000]],
        "skipped_count": len(acc.skipped),
        "image_encoder": encoder.spec, "text_encoder": extra["text_encoder"],
        "words": {"per_image": WORDS_PER_IMAGE, "table": len(concept_table().words)},
        "search": extra["search"],
        "duplicates": {"cosine": DUPLICATE_COSINE, "groups": extra["duplicates"][:500]},
        "seconds": round(seconds, 2), "phases": phases,
        "images_per_s": round(len(report.items) / max(seconds, 1e-9), 1),
        "environment": artifacts.environment(),
    }


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished folder onto ``final``; a replaced catalog is renamed away first, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder: Path) -> dict:
    """A built catalog's manifest; ``ArtifactError`` when it is missing, corrupt or of another schema."""
    manifest = artifacts.read_json(folder / "manifest.json")
    if manifest.get("kind") != KIND or manifest.get("schema") != SCHEMA:
        raise artifacts.ArtifactError(f"The catalog in {folder.name} was built by another version; rebuild it.")
    return manifest
