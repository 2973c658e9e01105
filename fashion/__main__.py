"""``python -m fashion <verb>``: build an index, search it, evaluate it.

    python -m fashion index [--catalog fashion-mnist|tuxpaint-clothes|PATH] [--backbone ...] [--force]
                            [--index auto|exact|flat|hnsw|ivfpq] [--index-param efSearch=128 ...]
                            [--engine local|spark [--master URL]]
    python -m fashion search IMAGE [--catalog ...] [--top 10] [--category Dress] [--json]
    python -m fashion similar ITEM_ID [--catalog ...] [--top 10] [--json]
    python -m fashion evaluate [--queries N] [--json]
    python -m fashion evaluate-feedback [--queries N] [--json]   # second-page precision@10 with / without 👍/👎

Errors a user can cause (a bad image, a missing dataset or index) print one clear line on stderr and
exit with status 2; ``--json`` output goes to stdout alone, progress bars to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from core.artifacts import ArtifactError, write_json
from core.cli import Parser, run
from core.datasets import DataUnavailable
from core.encoders import BACKBONES, WeightsUnavailable
from core.images import ImageError, load_image
from core.spark import SparkUnavailable
from core.evaluation import write_result
from fashion.evaluate import evaluate, evaluation_path
from fashion.model import GREY28_INPUT_SIZE, EncoderConfig
from fashion.train import build_index


def _config(args: argparse.Namespace, grey28: bool):
    size = args.input_size or (GREY28_INPUT_SIZE if grey28 else None)
    return EncoderConfig(args.backbone, args.pooling, size, args.runtime, args.weights)


def cmd_index(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    index, built = build_index(
        args.catalog, config_for=lambda grey28: _config(args, grey28), projection=args.projection, force=args.force,
        search=args.index, search_params=_index_params(args.index_param), engine=args.engine, master=args.master,
    )
    return {
        "catalog": index.catalog,
        "items": len(index),
        "categories": index.categories,
        "built": built,
        "seconds": round(time.perf_counter() - started, 1),
        "encoder": index.manifest.get("encoder"),
        "projection": index.projection is not None,
        "index": index.search_info,
        "engine": index.manifest.get("engine", "local"),
    }


def _index_params(pairs: list[str] | None) -> dict[str, int] | None:
    """``["efSearch=128", "M=32"]`` → ``{"efSearch": 128, "M": 32}`` (every FAISS parameter here is an integer)."""
    if not pairs:
        return None
    out: dict[str, int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value.strip().isdigit():
            raise ValueError(f"--index-param takes NAME=INTEGER (e.g. efSearch=128), got {pair!r}")
        out[key.strip()] = int(value)
    return out


def _hits(hits) -> list[dict[str, Any]]:
    return [{"id": h.id, "label": h.meta["label"], "title": h.meta["title"], "score": round(h.score, 4)} for h in hits]


def cmd_search(args: argparse.Namespace) -> list[dict[str, Any]]:
    # the service brings the likes database stack (sqlalchemy, through core.feedback); only search and similar need it
    from fashion import service

    if service.is_built_catalog(args.catalog):  # a catalog of someone's own photos (python -m core catalog add)
        hits = service.own_catalog(args.catalog).search(image=_photo(args.image), k=args.top, categories=args.category)
        return [h.as_json() for h in hits]
    return _hits(service.search_upload(service.open_index(args.catalog), args.image, args.top, args.category))


def _photo(path: str):
    """A query photo from a path, decoded once with the shared loader (a clear ImageError when it is not one)."""
    return load_image(path)


def cmd_similar(args: argparse.Namespace) -> list[dict[str, Any]]:
    from fashion import service  # the likes database stack (sqlalchemy) loads only for search and similar

    return _hits(service.similar_items(service.open_index(args.catalog), args.item, args.top, args.category))


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    if args.queries is not None and args.queries < 2:
        raise ValueError("--queries must be at least 2")
    config = EncoderConfig(args.backbone, args.pooling, args.input_size or GREY28_INPUT_SIZE, args.runtime, args.weights)
    results = evaluate(config, max_queries=args.queries)
    write_json(evaluation_path(), {"encoder": config.__dict__, "results": results})
    if args.queries is None:  # only the full protocol becomes the committed result the README is built from
        write_result("fashion_evaluate", {"encoder": config.__dict__, "results": results}, seeds={"queries": 0})
    return results


def cmd_evaluate_feedback(args: argparse.Namespace) -> dict[str, Any]:
    # brings the likes database stack (sqlalchemy, through core.feedback); only this verb needs it
    from fashion.evaluate_feedback import evaluate_shipped

    result = evaluate_shipped(args.queries, args.val_queries)
    write_result("fashion_feedback", result, seeds={"queries": 0, "validation": 0})
    return result


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if isinstance(result, list):
        for r in result:
            print(f"{r['score']:.3f}  {r['label']:12s}  {r['id']}  {r['title']}")
    elif isinstance(result, dict) and all(isinstance(v, dict) for v in result.values()):
        for method, metrics in result.items():
            ci = metrics.get("ci95", {})
            cells = [f"{k}={v:.4f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")
                     if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items() if k != "ci95"]
            print(f"{method:20s} " + "  ".join(cells))
    else:
        print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m fashion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)

    def encoder_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backbone", default="efficientnet_lite0", choices=sorted(BACKBONES))
        p.add_argument("--pooling", default="max", choices=["max", "mean"])
        p.add_argument("--input-size", type=int, default=None, help="encoder input px (default 96 for 28 px catalogs, else the backbone's)")
        p.add_argument("--runtime", default="onnx", choices=["onnx", "torch", "bf16"])
        p.add_argument("--weights", default=None, help="state-dict file for ResNet backbones")

    p = sub.add_parser("index", help="encode a catalog and save its index to models/fashion/")
    p.add_argument("--catalog", default="fashion-mnist", help="fashion-mnist, tuxpaint-clothes, a Kaggle folder or an image folder")
    encoder_args(p)
    p.add_argument("--projection", default="auto", choices=["auto", "yes", "no"],
                   help="learn a label-driven projection (auto: for 28 px grey catalogs with a train split)")
    p.add_argument("--force", action="store_true", help="rebuild even if a fresh index exists")
    p.add_argument("--index", default=None, choices=["auto", "exact", "flat", "hnsw", "ivfpq"],
                   help="search structure: exact (numpy), flat (FAISS exact), hnsw, ivfpq, or auto = exact below "
                        "the measured size threshold, hnsw above (default: keep the saved one; auto for a new index)")
    p.add_argument("--index-param", action="append", metavar="NAME=INT",
                   help="FAISS parameter (hnsw: M, efConstruction, efSearch; ivfpq: nlist, m, nbits, nprobe, rerank)")
    p.add_argument("--engine", default="local", choices=["local", "spark"],
                   help="encode the catalog in this process or on Spark (mapInPandas; same vectors)")
    p.add_argument("--master", default=None, help="Spark master URL for --engine spark (default local[*])")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index)

    for verb, target, help_text, func in (
        ("search", "image", "catalog items most similar to an image file", cmd_search),
        ("similar", "item", "catalog items most similar to a catalog item (excluding itself)", cmd_similar),
    ):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument(target)
        p.add_argument("--catalog", default="fashion-mnist")
        p.add_argument("--top", type=int, default=10)
        p.add_argument("--category", action="append", help="keep only this category (repeatable)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="class precision@10 on Fashion-MNIST test vs train, with baselines")
    encoder_args(p)
    p.add_argument("--queries", type=int, default=None, help="evaluate on a seeded sample of N test queries (default: all 10,000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("evaluate-feedback", help="second-page precision@10 with and without a simulated user's likes")
    p.add_argument("--queries", type=int, default=None, help="a seeded sample of N test queries (default: all 10,000)")
    p.add_argument("--val-queries", type=int, default=3000,
                   help="held-out train queries the Rocchio weights and the re-ranker are chosen on")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate_feedback)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.json else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "top", 1) < 1:
        print("error: --top must be at least 1", file=sys.stderr)
        return 2
    return run(lambda: _print(args.func(args), args.json),
               expected=(ImageError, ArtifactError, DataUnavailable, WeightsUnavailable, SparkUnavailable))


if __name__ == "__main__":
    sys.exit(main())
