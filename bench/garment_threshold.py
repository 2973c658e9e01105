"""Choose the Fashion tab's garment-warning threshold on Tux Paint: clothes stamps against every other stamp.

    python bench/garment_threshold.py [--out bench/results/garment_threshold.json]

Each stamp (mirrors left out) is classified by the shipped EfficientNet-Lite0; its garment mass is the
share of ImageNet probability on classes under WordNet's clothing, footwear, bag and accessory branches
(``fashion.guard.garment_mass``). The threshold maximises balanced accuracy (the mean of the accuracy on
clothes and on the rest: 48 clothes against ~900 others would otherwise reward never warning). The
script reports the accuracy on both groups with 95 % bootstrap intervals; ``fashion.guard.GARMENT_THRESHOLD``
holds the chosen value and docs/hashtag.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fashion.guard import garment_mass  # noqa: E402
from core.datasets import load_tuxpaint  # noqa: E402
from core.encoders import get_image_encoder  # noqa: E402
from core.images import ImageError, load_any  # noqa: E402
from core.metrics import bootstrap_ci, write_result  # noqa: E402

CANDIDATES = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/garment_threshold.json)")
    args = parser.parse_args(argv)
    encoder = get_image_encoder()
    images, is_clothes = [], []
    for stamp in load_tuxpaint():
        if stamp.is_mirror:
            continue
        try:
            images.append(load_any(stamp.image_path))
        except ImageError:
            continue
        is_clothes.append(stamp.top_category == "clothes")
    y = np.array(is_clothes)
    mass = garment_mass(encoder.grid_probabilities(encoder.grid(images)))
    rows = []
    for t in CANDIDATES:
        rows.append({"threshold": t, "clothes_accuracy": float((mass[y] >= t).mean()),
                     "other_accuracy": float((mass[~y] < t).mean())})
        rows[-1]["balanced_accuracy"] = (rows[-1]["clothes_accuracy"] + rows[-1]["other_accuracy"]) / 2
    best = max(rows, key=lambda r: (r["balanced_accuracy"], r["other_accuracy"]))
    t = best["threshold"]
    result = {
        "chosen": {**best,
                   "clothes_ci95": bootstrap_ci((mass[y] >= t).astype(float)),
                   "other_ci95": bootstrap_ci((mass[~y] < t).astype(float))},
        "clothes_images": int(y.sum()), "other_images": int((~y).sum()), "grid": rows,
        "backbone": encoder.name,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    else:
        write_result("garment_threshold", result)
    print(json.dumps(result["chosen"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
