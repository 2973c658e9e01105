"""``python -m core <verb>``: shared set-up and sanity checks.

    python -m core prepare [--json]            # check (and install through apt where usable) the shipped datasets
    python -m core classify IMAGE [--json]     # ImageNet top-5 of the default encoder: are the weights real?
    python -m core backbones [--json]          # the registered image backbones and whether their weights are here
    python -m core catalog add NAME SOURCE [--meta CSV] [--json]           # your own catalog (folder, CSV, zip)
    python -m core catalog list|show NAME|remove NAME [--json]
    python -m core feedback stats|export|forget [--profile NAME] [--json]   # the feedback store
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core.artifacts import ArtifactError
from core.catalog.cli import add_parser as add_catalog_parser
from core.cli import Parser, run
from core.datasets import (
    FASHION_MNIST_DIR, FASHION_MNIST_PACKAGE, TUXPAINT_DIR, TUXPAINT_PACKAGE, DataUnavailable,
    ensure_debian_package, load_tuxpaint,
)
from core.feedback.cli import add_parser as add_feedback_parser
from core.images import ImageError, load_any


def _prepare(args: argparse.Namespace) -> int:
    status: dict[str, dict[str, object]] = {}
    ok = True
    for name, package, marker in (
        ("fashion-mnist", FASHION_MNIST_PACKAGE, FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz"),
        ("tuxpaint-stamps", TUXPAINT_PACKAGE, TUXPAINT_DIR),
    ):
        try:
            ensure_debian_package(package, marker, install=not args.no_install)
            status[name] = {"ok": True, "path": str(marker.parent if marker.is_file() else marker)}
        except DataUnavailable as exc:
            ok = False
            status[name] = {"ok": False, "message": str(exc)}
    if status["tuxpaint-stamps"]["ok"]:
        status["tuxpaint-stamps"]["stamps"] = len(load_tuxpaint())
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for name, info in status.items():
            print(f"{name:16s} {'ok' if info['ok'] else 'MISSING'}  {info.get('path') or info.get('message')}")
    return 0 if ok else 1


def _classify(args: argparse.Namespace) -> int:
    # torch and onnxruntime load in seconds: only the verbs that classify need them
    from core.encoders import get_image_encoder

    try:
        image = load_any(args.image)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    top = get_image_encoder(args.backbone).classify([image], top=5)[0]
    if args.json:
        print(json.dumps([{"label": label, "probability": round(p, 4)} for label, p in top]))
    else:
        for label, p in top:
            print(f"{p:6.3f}  {label}")
    return 0


def _backbones(args: argparse.Namespace) -> int:
    # torch and onnxruntime load in seconds: only the verbs that classify need them
    from core.encoders import BACKBONES, WeightsUnavailable, get_image_encoder

    rows = []
    for name, spec in BACKBONES.items():
        try:
            get_image_encoder(name, runtime="torch")
            available, note = True, "weights found"
        except WeightsUnavailable as exc:
            available, note = False, str(exc)
        rows.append({"name": name, "input_size": spec.input_size, "dim": spec.feature_dim, "available": available,
                     "description": spec.description, "note": note})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:20s} {'yes' if r['available'] else 'no ':3s}  {r['description']}")
            if not r["available"]:
                print(f"{'':24s}{r['note']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m core", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="check / install the shipped datasets")
    p.add_argument("--no-install", action="store_true", help="never call apt-get")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_prepare)
    p = sub.add_parser("classify", help="ImageNet top-5 of an image with a backbone")
    p.add_argument("image")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_classify)
    p = sub.add_parser("backbones", help="list image backbones and whether their weights are present")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_backbones)
    add_catalog_parser(sub)
    add_feedback_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    return run(lambda: args.func(args), expected=(ArtifactError, DataUnavailable))


if __name__ == "__main__":
    sys.exit(main())
