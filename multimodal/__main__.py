"""Command line: ``python -m multimodal {index,search,evaluate}``.

    python -m multimodal index                       # Tux Paint catalog → models/multimodal/tuxpaint (skips if fresh)
    python -m multimodal index --catalog fashion --catalog-path ~/fashion-dataset --name fashion
    python -m multimodal index --engine spark [--master spark://host:7077] --force   # pictures encoded on Spark
    python -m multimodal search --text "red fruit" --top 5 --json
    python -m multimodal search --image photo.jpg --text "hat" --alpha 0.5 --top 5 --json
    python -m multimodal search --like animals/birds/owl --top 5 --json
    python -m multimodal evaluate --json
    python -m multimodal evaluate-feedback --json    # next-page precision@10 with / without a simulated user's 👍/👎

Expected failures (bad arguments, unreadable image, missing index) print one line on stderr and exit 2;
``--json`` keeps stdout pure JSON (logs and progress bars go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from core.artifacts import ArtifactError
from core.catalog.sources import CatalogError as OwnCatalogError
from core.cli import Parser, run
from core.datasets import DataUnavailable
from core.evaluation import write_result
from core.images import ImageError, load_image
from core.spark import SparkUnavailable
from core.text import TextEncoderUnavailable
from multimodal.data import CatalogError, load_catalog

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("multimodal")


class UsageError(Exception):
    """A user mistake: shown as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m multimodal", description="Multimodal product search (text + image).")
    sub = p.add_subparsers(dest="verb", required=True)

    def catalog_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--catalog", choices=["tuxpaint", "fashion", "csv"], default="tuxpaint")
        sp.add_argument("--catalog-path", help="fashion: folder with styles.csv + images/; csv: the CSV file")
        sp.add_argument("--image-dir", help="csv: folder the image column is relative to (default: the CSV's)")
        sp.add_argument("--text-fields", help="comma-separated fields that make the product text")
        sp.add_argument("--limit", type=int, help="only the first N products (Tux Paint: an evenly spaced subset)")
        sp.add_argument("--name", help="index name under models/multimodal/ (default: the catalog's name)")
        sp.add_argument("--text-model", default="all-MiniLM-L6-v2",
                        help="sentence-transformers model: the shipped default, a local folder, or a hub name")
        sp.add_argument("--backbone", default="efficientnet_lite0", help="image backbone (core.encoders.BACKBONES)")
        sp.add_argument("--pooling", choices=["max", "mean"], default="max")
        sp.add_argument("--allow-download", action="store_true", help="let a hub text model / weights download")

    sp = sub.add_parser("index", help="encode the catalog and build the search index (+ projection)")
    catalog_args(sp)
    sp.add_argument("--force", action="store_true", help="rebuild even if the index is fresh")
    sp.add_argument("--no-projection", action="store_true", help="skip training the image→text projection")
    sp.add_argument("--augment", action="store_true", help="also train the projection on mirrored pictures (slower)")
    sp.add_argument("--engine", choices=["local", "spark"], default="local",
                    help="encode the pictures in this process or on Spark (mapInPandas; same vectors)")
    sp.add_argument("--master", help="Spark master URL for --engine spark (default local[*])")
    sp.add_argument("--json", action="store_true")

    sp = sub.add_parser("search", help="query the index by text, image, both, or a catalog item")
    sp.add_argument("--text", help="words to search for")
    sp.add_argument("--image", help="path of a photo to search with")
    sp.add_argument("--like", metavar="ID", help="'more like this': a catalog item id (itself excluded)")
    sp.add_argument("--alpha", type=float, default=None,
                    help="text weight 0..1 when both are given (default: the one `evaluate` chose on validation)")
    sp.add_argument("--picture-weight", type=float, default=0.0,
                    help="text queries: weight 0..1 of the projected pictures beside the product text")
    sp.add_argument("--category", action="append", help="keep only this category (repeatable)")
    sp.add_argument("--top", type=int, default=10)
    sp.add_argument("--name", default="tuxpaint", help="index name under models/multimodal/")
    sp.add_argument("--catalog", default=None,
                    help="search a catalog built with `python -m core catalog add` (or the Data tab) instead")
    sp.add_argument("--json", action="store_true")

    sp = sub.add_parser("evaluate", help="precision/recall@1/5/10, NDCG@10 and MRR per mode, with baselines")
    catalog_args(sp)
    sp.add_argument("--seed", type=int, default=13)
    sp.add_argument("--no-imagenet", action="store_true", help="skip the ImageNet-label zero-shot baseline")
    sp.add_argument("--json", action="store_true", help="print only {method: metrics} as JSON")

    sp = sub.add_parser("evaluate-feedback", help="next-page precision@10 with and without a simulated user's likes")
    sp.add_argument("--name", default="tuxpaint", help="index name under models/multimodal/")
    sp.add_argument("--json", action="store_true")
    return p


def _catalog(args: argparse.Namespace):
    kwargs = {}
    if args.text_fields:
        kwargs["text_fields"] = tuple(f.strip() for f in args.text_fields.split(",") if f.strip())
    if args.catalog == "csv" and args.image_dir:
        kwargs["image_dir"] = args.image_dir
    if args.limit is not None:
        if args.limit < 2:
            raise UsageError("--limit must be at least 2")
        if args.catalog in ("tuxpaint", "fashion"):
            kwargs["limit"] = args.limit
    catalog = load_catalog(args.catalog, args.catalog_path, **kwargs)
    if args.catalog == "csv" and args.limit is not None:
        catalog.products = catalog.products[: args.limit]
    if args.name:
        catalog.name = args.name
    return catalog


def _shipped_defaults(args: argparse.Namespace) -> bool:
    """True when ``index`` asks for the shipped Tux Paint catalog with the default encoders, as the app uses it."""
    return (args.catalog == "tuxpaint" and not args.catalog_path and not args.text_fields and args.limit is None
            and not args.name and args.text_model == "all-MiniLM-L6-v2" and args.backbone == "efficientnet_lite0"
            and args.pooling == "max" and args.engine == "local" and not args.allow_download)


def cmd_index(args: argparse.Namespace) -> int:
    # loads torch and the encoders; only this verb needs them (--help stays light)
    from multimodal.train import build_catalog_head, build_index

    if _shipped_defaults(args):  # the shipped catalog: built as an ordinary catalog, the tab's head on top
        stem, built, summary = build_catalog_head("tuxpaint", kind="tuxpaint", force=args.force,
                                                  projection=not args.no_projection, augment=args.augment)
        info = {"index": str(stem), "built": built, "products": summary.get("items"), "catalog": summary}
        if args.json:
            print(json.dumps(info))
        else:
            print(f"{'built' if built else 'fresh, not rebuilt'}: {stem} ({summary.get('items')} products, "
                  "catalog tuxpaint)", file=sys.stderr)
        return 0
    catalog = _catalog(args)
    stem, built = build_index(catalog, force=args.force, projection=not args.no_projection, augment=args.augment,
                              text_model=args.text_model, backbone=args.backbone, pooling=args.pooling,
                              allow_download=args.allow_download,
                              engine=args.engine, master=args.master)
    info = {"index": str(stem), "built": built, "products": len(catalog), "skipped": catalog.skipped}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{'built' if built else 'fresh, not rebuilt'}: {stem} ({len(catalog)} products)", file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    # loads torch and the encoders; only this verb needs them (--help stays light)
    from multimodal.service import SearchService

    if args.top < 1 or args.top > 1000:
        raise UsageError("--top must be between 1 and 1000")
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        raise UsageError("--alpha must be between 0 and 1")
    if not 0.0 <= args.picture_weight <= 1.0:
        raise UsageError("--picture-weight must be between 0 and 1")
    text = args.text.strip() if args.text else None
    if args.text is not None and not text:
        raise UsageError("--text is empty")
    if not (text or args.image or args.like):
        raise UsageError("give --text, --image, --like, or a combination of --text and --image")
    if args.like and (text or args.image):
        raise UsageError("--like takes no --text or --image")
    if args.image and not Path(args.image).is_file():  # before loading any model: fail fast
        raise UsageError(f"No such image file: {args.image}")
    if args.catalog:
        return _search_own_catalog(args, text)
    service = SearchService.load(args.name)
    alpha = service.alpha if args.alpha is None else args.alpha
    if args.like:
        results = service.more_like_this(args.like, alpha=alpha, k=args.top, categories=args.category)
    else:
        results = service.search(text=text, image=args.image, alpha=alpha, k=args.top, categories=args.category,
                                 picture_weight=args.picture_weight)
    if args.json:
        print(json.dumps([r.as_dict() for r in results]))
    else:
        for i, r in enumerate(results, 1):
            print(f"{i:>3}. {r.score:6.3f}  {r.title}  [{r.category}]  {r.id}")
    return 0


def _search_own_catalog(args: argparse.Namespace, text: str | None) -> int:
    """Words, photo or both over a built catalog; each hit has its catalog id, score, title, and why it was found."""
    # loads torch and the encoders; only this verb needs them (--help stays light)
    from multimodal.service import own_catalog

    catalog = own_catalog(args.catalog)
    if args.like:
        hits = catalog.similar_items(args.like, args.top, args.category)
    else:
        hits = catalog.search(text=text, image=load_image(args.image) if args.image else None, k=args.top,
                              alpha=0.5 if args.alpha is None else args.alpha, categories=args.category)
    if args.json:
        print(json.dumps([h.as_json() for h in hits], ensure_ascii=False))
    else:
        for i, h in enumerate(hits, 1):
            print(f"{i:>3}. {h.score:6.3f}  {h.title or h.id}  [{h.category}]  {h.reason}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    # loads torch and the encoders; only this verb needs them (--help stays light)
    from multimodal.evaluate import bars, evaluate, save_report

    catalog = _catalog(args)
    result = evaluate(catalog, seed=args.seed, imagenet_baseline=not args.no_imagenet, text_model=args.text_model,
                      backbone=args.backbone, pooling=args.pooling, allow_download=args.allow_download)
    save_report(result, catalog.name)
    report = {"catalog": catalog.name, "methods": result["methods"], "intervals": result["intervals"],
              "fusion": {k: v for k, v in result["details"]["fusion"].items() if k in ("alpha", "alpha_chosen_on", "validation_table")},
              "split": result["details"]["split"], "bars": bars(result)}
    if args.catalog == "tuxpaint" and args.limit is None and args.seed == 13:
        write_result("multimodal_evaluate", report, seeds={"split": args.seed, "validation": args.seed + 1})  # the default protocol is what the README is built from
    if args.json:
        # method → {precision@k, recall@k, ndcg@10, mrr, queries, ci95, n[, small_set]}
        print(json.dumps({m: {**met, **result["intervals"][m]} for m, met in result["methods"].items()}))
        return 0
    cols = ("precision@10", "recall@10", "ndcg@10", "mrr")
    print(f"{'method':<26}" + "".join(f"{m:>22}" for m in cols) + f"{'queries':>9}")
    for method, metrics in result["methods"].items():
        ci = result["intervals"][method]["ci95"]
        print(f"{method:<26}" + "".join(f"{metrics[m]:>8.3f} [{ci[m][0]:.3f},{ci[m][1]:.3f}]" for m in cols)
              + f"{metrics['queries']:>9d}")
    print(f"fusion alpha (chosen on validation): {result['details']['fusion']['alpha']}")
    for name, bar in bars(result).items():
        print(f"{'MET ' if bar['met'] else 'NOT MET'} {name}: " + ", ".join(
            f"{k}={v:.3f}" for k, v in bar.items() if k != "met"))
    return 0


def cmd_evaluate_feedback(args: argparse.Namespace) -> int:
    # loads torch and the encoders; only this verb needs them (--help stays light)
    from multimodal.feedback import evaluate_feedback
    from multimodal.model import MultimodalIndex, default_stem

    result = evaluate_feedback(MultimodalIndex.load(default_stem(args.name)))
    write_result(f"multimodal_feedback_{args.name}", result)
    print(json.dumps(result, indent=2) if args.json else
          f"next-page precision@10: with feedback {result['with_feedback']['precision@10']:.3f} "
          f"{result['with_feedback']['ci95']}, without {result['without_feedback']['precision@10']:.3f} "
          f"{result['without_feedback']['ci95']} (weights {result['weights']})")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO if os.environ.get("RECS_VERBOSE") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    # core.encoders loads torch (seconds); its error class is needed only once a verb runs, not for --help
    from core.encoders import WeightsUnavailable

    verb = {"index": cmd_index, "search": cmd_search, "evaluate": cmd_evaluate,
            "evaluate-feedback": cmd_evaluate_feedback}[args.verb]
    return run(lambda: verb(args), expected=(UsageError, ArtifactError, DataUnavailable, ImageError, CatalogError,
                                             OwnCatalogError, TextEncoderUnavailable, WeightsUnavailable,
                                             SparkUnavailable))


if __name__ == "__main__":
    sys.exit(main())
