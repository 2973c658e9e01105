"""``python -m hashtag <verb>``: build-dataset, train, predict, evaluate, tune-fusion.

Bad input (missing file, non-image, no trained model) prints one line on stderr and exits non-zero;
``--json`` prints only JSON on stdout (logs and progress bars go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from core.cli import Parser

os.environ.setdefault("KERAS_BACKEND", "torch")
log = logging.getLogger("hashtag")


def _parser() -> argparse.ArgumentParser:
    from hashtag.data import DEFAULT_DATASET
    from hashtag.train import TrainConfig

    p = Parser(prog="python -m hashtag", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", required=True)

    b = sub.add_parser("build-dataset", help="write the image→caption and image→hashtags tables, split and vocab")
    b.add_argument("--source", choices=["tuxpaint", "flickr8k", "csv"], default="tuxpaint")
    b.add_argument("--path", help="Tux Paint stamps folder, Flickr8k.token.txt, or the CSV file")
    b.add_argument("--images", help="image folder (Flickr8k: Flicker8k_Dataset; CSV: default its folder)")
    b.add_argument("--out", default=None, help=f"dataset folder (default {DEFAULT_DATASET})")
    b.add_argument("--min-count", type=int, default=1, help="keep tags seen at least this often in train")
    b.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train the attention LSTM on cached encoder grids")
    t.add_argument("--dataset", default=str(DEFAULT_DATASET))
    t.add_argument("--force", action="store_true", help="retrain even if a fresh model exists")
    t.add_argument("--model-dir", default=None, help="checkpoint folder (default: <dataset>/model; experiments)")
    t.add_argument("--backbone", default="efficientnet_lite0",
                   help="encoder: efficientnet_lite0 or efficientnet_lite2 (ship offline), resnet152 or resnet50 "
                        "(need their weights)")
    t.add_argument("--weights", default=None, help="a state-dict file for --backbone resnet152/resnet50")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            t.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None, metavar="BOOL")
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            t.add_argument(flag, type=kind, default=None)
    t.add_argument("--with-feedback", action="store_true", help="also train on users' stored (image, tags) pairs")
    t.add_argument("--json", action="store_true")

    pr = sub.add_parser("predict", help="hashtags for one image")
    pr.add_argument("image")
    pr.add_argument("--dataset", default=str(DEFAULT_DATASET))
    pr.add_argument("--method", choices=["fused", "model", "concepts", "knn", "most_frequent"], default="fused",
                    help="fused (default): the decoder's and the ImageNet/WordNet concept tags in one list")
    pr.add_argument("--beam", type=int, default=None, help="beam width (default: the training config's)")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    pr.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="P/R/F1@1,3,5 and BLEU-1..4 on the test split, model vs baselines")
    e.add_argument("--dataset", default=str(DEFAULT_DATASET))
    e.add_argument("--split", choices=["test", "val"], default="test")
    e.add_argument("--beam", type=int, default=None)
    e.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    e.add_argument("--photos", default="dev",
                   help="real-photo set for the real_photos table: dev (default), check, scenes, a CSV, or none")
    e.add_argument("--check-photos", default="check",
                   help="held-out photo set for the real_photos_check table (default check; none skips it)")
    e.add_argument("--json", action="store_true")

    f = sub.add_parser("tune-fusion", help="choose the fusion weight on the real-photo dev set (Tux Paint val "
                                           "must not lose more than 0.01 F1@5)")
    f.add_argument("--dataset", default=str(DEFAULT_DATASET))
    f.add_argument("--beam", type=int, default=None)
    f.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    f.add_argument("--json", action="store_true")
    return p


def _emit(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj) if as_json else text)


def _service(args: argparse.Namespace):
    """Load the model once; then one torch thread (the encoder sets its own count when it is built)."""
    import torch

    from hashtag.service import HashtagService

    service = HashtagService(args.dataset, beam=args.beam, weights=args.weights)
    torch.set_num_threads(1)  # the decoder's small steps gain nothing from a 2nd thread; on a busy box it costs 10×
    return service


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from hashtag import data

    if args.verb == "build-dataset":
        if args.source == "tuxpaint":
            examples = data.tuxpaint_examples(args.path)
        elif not args.path:
            raise data.DatasetError(f"--path is required for --source {args.source}")
        elif args.source == "flickr8k":
            images = args.images or str(Path(args.path).parent / "Flicker8k_Dataset")
            examples = data.flickr8k_examples(args.path, images)
        else:
            examples = data.csv_examples(args.path, args.images)
        out = Path(args.out) if args.out else (data.DEFAULT_DATASET if args.source == "tuxpaint"
                                               else data.HASHTAG_DIR / args.source)
        ds = data.build_dataset(examples, out, min_count=args.min_count, name=args.source)
        _emit({**ds.manifest, "root": str(ds.root)}, args.json,
              f"{ds.manifest['images']} images → {ds.root} (splits {ds.manifest['splits']}, "
              f"{ds.manifest['vocab_size']} tags)")
        return 0

    if args.verb == "train":
        from hashtag.train import TrainConfig, train

        overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
        from core.encoders import get_image_encoder

        encoder = get_image_encoder(args.backbone, weights=args.weights)
        manifest = train(args.dataset, TrainConfig(**overrides), force=args.force, out=args.model_dir, encoder=encoder,
                         with_feedback=args.with_feedback)
        summary = {"model": str(args.model_dir or Path(args.dataset) / "model"), "val": manifest.get("val"),
                   "user_pairs": manifest.get("feedback", {}).get("user_pairs", 0),
                   "best_epoch": manifest.get("best_epoch"), "train_seconds": manifest.get("train_seconds")}
        _emit(summary, args.json, f"model in {summary['model']}: val f1@5 {manifest.get('val', {}).get('f1@5')} "
                                  f"(epoch {summary['best_epoch']}, {summary['train_seconds']} s)")
        return 0

    if args.verb == "predict":
        from core.images import load_image

        path = Path(args.image)
        if not path.is_file():
            raise FileNotFoundError(f"No such image file: {path}")
        image = load_image(path)  # bad input fails here, before the model is loaded
        service = _service(args)
        picture = None
        if args.method == "fused":
            results, picture = service.predict_fused(image, k=args.top_k)
        else:
            results = service.predict(image, method=args.method, k=args.top_k)
        obj = {"image": str(path), "method": args.method, "hashtags": [r.to_json() for r in results]}
        if picture is not None:
            obj["picture"] = picture.to_json()
        _emit(obj, args.json, " ".join(f"#{r.tag}({r.score:.2f})" for r in results))
        return 0

    if args.verb == "tune-fusion":
        from core.metrics import write_result
        from hashtag.concepts import tune_fusion

        result = tune_fusion(_service(args))
        write_result("hashtag_fusion_tuning", result)
        c = result["chosen"]
        _emit(result, args.json, f"concept ranking {result['ranking']}; fusion: decoder weight {c['near']} near "
                                 f"its training images ({result['gate']} ≥ {c['threshold']}), {c['far']} elsewhere, agreement "
                                 f"bonus {c['agree']}; dev P@5 {c['dev_precision@5']} hit@1 {c['dev_hit@1']} F1@5 "
                                 f"{c['dev_f1@5']}, val F1@5 {c['val_f1@5']} (decoder alone "
                                 f"{result['model_val_f1@5']})")
        return 0

    photos = None if args.photos.lower() == "none" else args.photos
    check = None if args.check_photos.lower() == "none" else args.check_photos
    table = _service(args).evaluate(args.split, photo_set=photos, check_set=check)
    if args.split == "test":
        from core.metrics import write_result

        write_result("hashtag_evaluate", table)
    lines = []
    groups = ("real_photos", "real_photos_check")
    for group, rows in [("", {m: r for m, r in table.items() if m not in groups}),
                        *((f"{g} ", table.get(g) or {}) for g in groups)]:
        lines += [f"{group}{m:14s} " + " ".join(f"{k}={v}" for k, v in row.items() if k != "ci95")
                  for m, row in rows.items() if isinstance(row, dict)]
    _emit(table, args.json, "\n".join(lines))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; expected failures become one line on stderr and exit code 2 (1 for the unexpected)."""
    from core.artifacts import ArtifactError
    from core.datasets import DataUnavailable
    from core.encoders import WeightsUnavailable
    from core.images import ImageError
    from hashtag.data import DatasetError

    from core.cli import run as run_cli

    return run_cli(lambda: run(argv),
                   expected=(ImageError, ArtifactError, DataUnavailable, DatasetError, WeightsUnavailable))


if __name__ == "__main__":
    sys.exit(main())
