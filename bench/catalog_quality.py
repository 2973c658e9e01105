"""How well a catalog built from someone's own photos answers: word search with and without titles, photo search.

    python bench/catalog_quality.py            # tune on the dev photos, report on the test photos
    → bench/results/catalog_quality.json
    python bench/catalog_quality.py --test-set catalog_test2 --out catalog_quality_test2
    → another test catalog, with the choices recorded in catalog_quality.json (nothing is chosen again)

The photos are ``bench/checksets/catalog_{dev,test}.csv``: real photos from Debian and PyPI packages that no
model of this product was fitted on, each labelled (``fish``, ``windmill``, ``hammer`` …) by a person looking
at it before any result was seen. Each split is built twice with ``core.catalog``: *untitled* (files renamed
``photo-NNN.jpg`` in one flat folder, so neither a name nor a folder gives the label away) and *titled* (a CSV
with the person's short title, e.g. "Northern harrier in flight", which need not contain the label word).

- Word search: the query is the label word; precision@5 is the share of the 5 results with that label, the
  mean over labels (every test label has at least 5 photos). Titled vs untitled shows what titles add.
- Photo search ("more like this"): each photo queries the rest; precision@5 = share of the same label,
  by label and overall, beside the Fashion tab's own index over the same folder (``fashion.train``).
- Near-duplicates: edited copies of each photo (70 % resize, JPEG quality 60, 90 % crop) against pairs of
  distinct photos of the same label; the cosine threshold maximising F1 on dev is reported on test.

Choices (the word-match floor, how title words match — plain, WordNet lemmas, or lemmas and the kinds a title
word names, "heron" standing for "bird" —, whether rare title words count more (IDF), the title/concept
weights, the duplicate threshold) are made on dev only. ``--test-set`` reports on a further test catalog
(``bench/checksets/catalog_test2.csv``: other photos, other labels, labelled the same way) with the choices as
``bench/results/catalog_quality.json`` recorded them, so a second test set can never move a constant.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# every catalog and index this evaluation builds lives in a private folder, never the app's models/
os.environ["RECS_MODELS_DIR"] = tempfile.mkdtemp(prefix="catalog-quality-models-")
os.environ.setdefault("RECS_ENCODER_CACHE", str(ROOT / "models" / "encoders"))

from core import artifacts  # noqa: E402
from core.catalog import store  # noqa: E402
from core.catalog.jobs import add_catalog  # noqa: E402
from core.encoders import get_image_encoder  # noqa: E402
from core.metrics import bootstrap_ci, write_result  # noqa: E402
from core.photosets import Photo, load_photoset  # noqa: E402
from fashion.train import build_index  # noqa: E402

log = logging.getLogger("catalog_quality")
CHECKSETS = ROOT / "bench" / "checksets"
RESULTS = ROOT / "bench" / "results"
MATCH_MIN_GRID = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
CONCEPT_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
LEXICAL_WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)
K = 5


def write_copies(photos: list[Photo], folder: Path) -> dict[str, str]:
    """The untitled copy (flat ``photo-NNN.jpg``) and a ``titled.csv`` beside it; returns catalog id → label."""
    folder.mkdir(parents=True, exist_ok=True)
    labels, rows = {}, [["id", "image", "title"]]
    for i, photo in enumerate(photos):
        name = f"photo-{i:03d}.jpg"
        with Image.open(photo.path) as img:
            img.convert("RGB").save(folder / name, quality=92)
        labels[name] = photo.label
        rows.append([name, f"{folder.name}/{name}", photo.title])
    with open(folder.parent / f"{folder.name}-titled.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return labels


def precision_at_k(ids: list[str], labels: dict[str, str], wanted: str, k: int = K) -> float:
    return sum(labels[i] == wanted for i in ids[:k]) / k


def word_precision(catalog: store.BuiltCatalog, labels: dict[str, str], *, match_min: float,
                   concept_weight: float, lexical_weight: float = 0.0, title_words: str = store.TITLE_WORDS,
                   idf: bool = store.TITLE_IDF, ideal: bool = False) -> dict[str, float]:
    """Label word → precision@5 of the word search (``ideal``: divided by min(5, photos of the label), for dev)."""
    out = {}
    for label in sorted(set(labels.values())):
        scores, _ = catalog.word_scores(label, match_min=match_min, concept_weight=concept_weight,
                                        lexical_weight=lexical_weight, title_words=title_words, idf=idf)
        top = [catalog.ids[r] for r in np.argsort(-scores, kind="stable")[:K]]
        hits = sum(labels[i] == label for i in top)
        out[label] = hits / (min(K, sum(v == label for v in labels.values())) if ideal else K)
    return out


def photo_precision(neighbours, labels: dict[str, str]) -> dict[str, list[float]]:
    """Label → per-photo precision@5 of "more like this" (``neighbours(id)`` gives the ranked ids, self excluded)."""
    out: dict[str, list[float]] = {}
    for item, label in labels.items():
        out.setdefault(label, []).append(precision_at_k(neighbours(item), labels, label))
    return out


def fashion_neighbours(folder: Path):
    """The Fashion tab's own index over the same folder, as the baseline for photo search."""
    index, _ = build_index(str(folder))
    return lambda item: [f"{h.id}.jpg" for h in index.similar(Path(item).with_suffix("").as_posix(), K)]


def tune_words(catalogs: dict[str, store.BuiltCatalog], labels: dict[str, str]) -> dict:
    """The word-match floor on the untitled dev catalog, then on the titled one how title words match
    (``store.TITLE_WORDS``), whether rare title words count more (IDF) and the title / concept weights.
    Ties go to the simpler reading of words (plain before lemmas before kinds, no IDF), then to the defaults."""
    untitled = {m: np.mean(list(word_precision(catalogs["untitled"], labels, match_min=m, concept_weight=0.0,
                                                ideal=True).values())) for m in MATCH_MIN_GRID}
    match_min = max(untitled, key=lambda m: (untitled[m], -abs(m - store.WORD_MATCH_MIN)))
    grid = list(itertools.product(store.TITLE_WORD_MODES, (False, True), CONCEPT_WEIGHT_GRID, LEXICAL_WEIGHT_GRID))
    titled = {(mode, idf, w, x): round(float(np.mean(list(word_precision(
        catalogs["titled"], labels, match_min=match_min, concept_weight=w, lexical_weight=x, title_words=mode,
        idf=idf, ideal=True).values()))), 6) for mode, idf, w, x in grid}
    mode, idf, weight, lexical = max(titled, key=lambda c: (
        titled[c], -store.TITLE_WORD_MODES.index(c[0]), not c[1], -abs(c[2] - store.CONCEPT_WEIGHT),
        -abs(c[3] - store.LEXICAL_WEIGHT)))
    return {"match_min": match_min, "concept_weight": weight, "lexical_weight": lexical, "title_words": mode,
            "idf": idf, "grid_untitled": {str(k): round(float(v), 4) for k, v in untitled.items()},
            "grid_titled": {f"{m}{' idf' if i else ''}, concept {w}, lexical {x}": round(v, 4)
                            for (m, i, w, x), v in titled.items()}}


def duplicate_scores(photos: list[Photo]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of (photo, edited copy) pairs and of (photo, other photo of the same label) pairs."""
    encoder = get_image_encoder("efficientnet_lite0", "max")
    originals = [Image.open(p.path).convert("RGB") for p in photos]
    copies = []
    for img in originals:
        w, h = img.size
        small = img.resize((max(1, w * 7 // 10), max(1, h * 7 // 10)))
        crop = small.crop((small.width // 20, small.height // 20, small.width * 19 // 20, small.height * 19 // 20))
        buf = tempfile.SpooledTemporaryFile()
        crop.save(buf, format="JPEG", quality=60)
        buf.seek(0)
        copies.append(Image.open(buf).convert("RGB"))
    a, b = encoder.encode(originals), encoder.encode(copies)
    positives = np.sum(a * b, axis=1)
    negatives = [float(a[i] @ a[j]) for i, j in itertools.combinations(range(len(photos)), 2)
                 if photos[i].label == photos[j].label]
    return positives, np.asarray(negatives)


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    grid = np.round(np.arange(0.70, 0.995, 0.01), 2)
    f1 = [2 * (pos >= t).sum() / max(1, 2 * (pos >= t).sum() + (pos < t).sum() + (neg >= t).sum()) for t in grid]
    return float(grid[int(np.argmax(f1))])


def duplicate_report(pos: np.ndarray, neg: np.ndarray, t: float) -> dict:
    return {"threshold": t, "copies_found": round(float((pos >= t).mean()), 4),
            "distinct_pairs_flagged": round(float((neg >= t).mean()), 4), "copies": len(pos), "distinct_pairs": len(neg)}


def build_split(split: str, work: Path) -> tuple[dict[str, str], dict[str, store.BuiltCatalog], list[Photo], dict]:
    """``split`` is ``dev``, ``test`` or the stem of another catalog CSV (``catalog_test2``)."""
    photos = load_photoset(CHECKSETS / f"{split if split.startswith('catalog_') else f'catalog_{split}'}.csv")
    labels = write_copies(photos, work / split)
    untitled = add_catalog(f"q-{split}-untitled", work / split)
    titled = add_catalog(f"q-{split}-titled", work / f"{split}-titled.csv")
    built = {"untitled": store.open_catalog(f"q-{split}-untitled"), "titled": store.open_catalog(f"q-{split}-titled")}
    skipped = {"untitled": untitled["skipped"]["count"], "titled": titled["skipped"]["count"]}
    return labels, built, photos, {"photos": len(photos), "skipped": skipped,
                                   "build_seconds": {"untitled": untitled["seconds"], "titled": titled["seconds"]}}


def summary(per_label: dict[str, float]) -> dict:
    values = np.array(list(per_label.values()))
    return {"mean": round(float(values.mean()), 4), "ci95": [round(v, 4) for v in bootstrap_ci(values)],
            "by_label": {k: round(v, 4) for k, v in per_label.items()}}


def photo_summary(per_label: dict[str, list[float]]) -> dict:
    flat = np.array([v for values in per_label.values() for v in values])
    return {"mean": round(float(flat.mean()), 4), "ci95": [round(v, 4) for v in bootstrap_ci(flat)],
            "by_label": {k: round(float(np.mean(v)), 4) for k, v in per_label.items()}, "queries": len(flat)}


def recorded_choices(name: str) -> tuple[dict, float, dict]:
    """What dev chose, as ``bench/results/<name>.json`` recorded it: (word choices, duplicate threshold, dev info)."""
    path = RESULTS / f"{name}.json"
    try:
        dev = json.loads(path.read_text(encoding="utf-8"))["dev"]
        chosen, threshold = dev["chosen"], float(dev["duplicate_threshold"])
        missing = [k for k in ("match_min", "concept_weight", "lexical_weight", "title_words", "idf") if k not in chosen]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} does not hold the dev choices ({exc}); run bench/catalog_quality.py first") from exc
    if missing:
        raise ValueError(f"{path} lacks the dev choice(s) {', '.join(missing)}")
    info = {k: v for k, v in dev.items() if k not in ("chosen", "duplicate_threshold")}
    return chosen, threshold, {**info, "choices_from": f"bench/results/{name}.json"}


def report_test(split: str, work: Path, chosen: dict, threshold: float) -> dict:
    """Word search (untitled, titled), photo search and near-duplicates on one test catalog with dev's choices."""
    labels, test, test_photos, test_info = build_split(split, work)
    words = {kind: summary(word_precision(test[kind], labels, match_min=chosen["match_min"],
                                          concept_weight=chosen["concept_weight"],
                                          lexical_weight=chosen["lexical_weight"] if kind == "titled" else 0.0,
                                          title_words=chosen["title_words"], idf=chosen["idf"]))
             for kind in ("untitled", "titled")}
    catalog = test["untitled"]
    photo = {"catalog": photo_summary(photo_precision(lambda i: [h.id for h in catalog.similar_items(i, K)], labels)),
             "fashion_index": photo_summary(photo_precision(fashion_neighbours(work / split), labels))}
    return {**test_info, "word_search": words, "photo_search": photo,
            "duplicates": duplicate_report(*duplicate_scores(test_photos), threshold)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="result name (default: catalog_quality, or catalog_quality_test2 for "
                                       "--test-set catalog_test2)")
    parser.add_argument("--dev-only", action="store_true", help="make the dev choices, print them, never touch test")
    parser.add_argument("--test-set", default="test",
                        help="test (the default: choose on dev, report on catalog_test.csv) or the stem of another "
                             "test CSV in bench/checksets, e.g. catalog_test2, reported with the recorded dev choices")
    parser.add_argument("--choices", default="catalog_quality",
                        help="the result whose recorded dev choices --test-set uses (default: catalog_quality)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.test_set != "test" and not (re.fullmatch(r"catalog_\w+", args.test_set)
                                        and (CHECKSETS / f"{args.test_set}.csv").is_file()):
        print(f"error: --test-set must be test or the stem of a catalog CSV in {CHECKSETS}, "
              f"got {args.test_set!r}", file=sys.stderr)
        return 2
    out = args.out or ("catalog_quality" if args.test_set == "test"
                       else f"catalog_quality_{args.test_set.removeprefix('catalog_')}")
    work = Path(tempfile.mkdtemp(prefix="catalog-quality-"))
    if args.test_set == "test" or args.dev_only:
        dev_labels, dev, dev_photos, dev_info = build_split("dev", work)
        chosen = tune_words(dev, dev_labels)
        if args.dev_only:
            print({k: v for k, v in chosen.items() if not k.startswith("grid")})
            return 0
        threshold = best_threshold(*duplicate_scores(dev_photos))
    else:
        try:
            chosen, threshold, dev_info = recorded_choices(args.choices)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    test = report_test(args.test_set, work, chosen, threshold)
    words, photo = test["word_search"], test["photo_search"]
    sets = "catalog_{dev,test}.csv" if args.test_set == "test" else f"catalog_dev.csv (choices), {args.test_set}.csv"
    result = {
        "protocol": f"bench/checksets/{sets}; word query = the label; precision@5; chosen on dev",
        "dev": {**dev_info, "chosen": chosen, "duplicate_threshold": threshold},
        "test": test,
        "bars": {"untitled_word_p@5>=0.5": words["untitled"]["mean"] >= 0.5,
                 "titled_word_p@5>=0.9": words["titled"]["mean"] >= 0.9,
                 "photo_p@5>=fashion_index": photo["catalog"]["mean"] >= photo["fashion_index"]["mean"]},
        "environment": artifacts.environment(),
    }
    write_result(out, result)
    print(f"word P@5 untitled {words['untitled']['mean']:.3f} {words['untitled']['ci95']}, titled "
          f"{words['titled']['mean']:.3f}; photo P@5 {photo['catalog']['mean']:.3f} vs fashion index "
          f"{photo['fashion_index']['mean']:.3f}; chosen {chosen['match_min']}, {chosen['concept_weight']}, "
          f"{chosen['lexical_weight']}, title words {chosen['title_words']}{' idf' if chosen['idf'] else ''}, "
          f"duplicates ≥ {threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
