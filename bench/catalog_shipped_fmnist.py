"""Can Fashion-MNIST be built as an ordinary catalog during set-up? Items/s of the generic catalog build on its images.

    python bench/catalog_shipped_fmnist.py [--items 1000] [--out bench/results/catalog_shipped_fmnist.json]

Fashion-MNIST ships as 70,000 grey 28 px images. An ordinary catalog needs each as a file (the generic build's
source adapter reads image files), so an evenly spaced subset of the official split is written as 28 px PNGs
(dark garment on white, as the Fashion tab shows them to the CNN) and built by ``core.catalog.build`` three ways,
side by side in one run:

- ``catalog_224``: the generic build as every catalog is built (224 px EfficientNet-Lite0, words, thumbnails,
  index, near-duplicates);
- ``catalog_96``: the same build with the encoder at 96 px, the resolution the Fashion tab already encodes at;
- ``tab_96``: the Fashion tab's own encoding pass at 96 px (batch-resized pixel arrays, no words or thumbnails),
  what ``make run`` runs today.

Each reports images/s and the seconds 70,000 images would take at that rate. The machine is shared: compare the
rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import artifacts  # noqa: E402
from core.catalog.build import DEFAULT_ENCODER, build_catalog  # noqa: E402
from core.catalog.sources import Item, SourceReport  # noqa: E402
from core.encoders import get_image_encoder  # noqa: E402
from fashion.data import load_fashion_mnist  # noqa: E402
from fashion.model import GREY28_INPUT_SIZE, EncoderConfig, catalog_features  # noqa: E402

log = logging.getLogger("catalog_shipped_fmnist")
FULL = 70_000


def _write_pngs(pixels: np.ndarray, labels: list[str], ids: list[str], folder: Path) -> SourceReport:
    """The subset as files a source adapter would hand the generic build: dark garment on white, 28 px."""
    items = []
    for grey, label, item_id in zip(pixels, labels, ids):
        path = folder / f"{item_id}.png"
        Image.fromarray(255 - grey, mode="L").save(path)
        items.append(Item(id=item_id, image=path, title="", category=label))
    return SourceReport("shipped", folder, items, [], [])


def _row(name: str, items: int, seconds: float, extra: dict | None = None) -> dict:
    rate = items / max(seconds, 1e-9)
    return {"method": name, "items": items, "seconds": round(seconds, 2), "images_per_s": round(rate, 1),
            "projected_seconds_70000": round(FULL / rate, 0), **(extra or {})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "catalog_shipped_fmnist.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    catalog = load_fashion_mnist()
    rows = np.linspace(0, len(catalog) - 1, args.items).astype(np.int64)
    subset = catalog.subset(rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="fmnist-catalog-") as tmp:
        artifacts.MODELS_DIR = Path(tmp) / "models"  # catalogs_dir() reads it at call time
        (Path(tmp) / "png").mkdir()
        report = _write_pngs(subset.pixels, subset.labels, subset.ids, Path(tmp) / "png")
        for name, size in (("catalog_224", None), ("catalog_96", GREY28_INPUT_SIZE)):
            encoder = get_image_encoder(*DEFAULT_ENCODER, input_size=size)
            encoder.encode([Image.new("RGB", (28, 28))])  # load the session before the clock starts
            started = time.perf_counter()
            manifest = build_catalog(f"fmnist-{name}", report, encoder=encoder)
            results.append(_row(name, manifest["items"], time.perf_counter() - started,
                                {"phases": manifest["phases"], "input_size": encoder.input_size}))
            log.info("%s", results[-1])
        encoder = EncoderConfig(input_size=GREY28_INPUT_SIZE).encoder()
        catalog_features(subset.subset(range(min(64, len(subset)))), encoder)  # warm-up
        started = time.perf_counter()
        catalog_features(subset, encoder)
        results.append(_row("tab_96", len(subset), time.perf_counter() - started, {"input_size": encoder.input_size}))
        log.info("%s", results[-1])
    out = {"items": args.items, "full_catalog": FULL, "results": results, "environment": artifacts.environment(),
           "note": "one run on the shared 2-core machine; compare rows of this run with each other"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps([{k: r[k] for k in ("method", "images_per_s", "projected_seconds_70000")} for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
