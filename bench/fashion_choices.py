"""The two Fashion design choices, measured on training data only (never the test split).

    python bench/fashion_choices.py [--out bench/results/fashion_choices.json]

1. Encoder input size for 28 px garments: frozen-feature class precision@10 of 1,000 validation items
   (drawn from Fashion-MNIST *train*) against 12,000 other train items, at 64 and 96 px (and 128 with --sizes).
2. Projection settings: a validation split carved from train (3,000 queries vs the other 57,000), 96 px
   features, precision@10 after projections trained with (epochs, hidden) = (4, 256), (8, 512), (12, 512).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core.encoders import l2_normalize  # noqa: E402
from core.search import VectorIndex  # noqa: E402
from fashion.data import load_fashion_mnist  # noqa: E402
from fashion.train import cached_features  # noqa: E402
from fashion.model import EncoderConfig, _pool_raw, apply_projection, grey28_batch  # noqa: E402
from fashion.train import ProjectionConfig, train_projection  # noqa: E402


def precision10(queries: np.ndarray, catalog: np.ndarray, yq: np.ndarray, yc: np.ndarray) -> float:
    rows, _ = VectorIndex(catalog, [str(i) for i in range(len(catalog))]).search(queries, 10)
    return round(float(np.mean(yc[rows] == yq[:, None])), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64,96")
    parser.add_argument("--out", default="bench/results/fashion_choices.json")
    args = parser.parse_args()
    cat = load_fashion_mnist()
    y = np.asarray(cat.labels)
    train = np.where(cat.split == "train")[0]
    rng = np.random.default_rng(0)
    result: dict = {"resolution": {}, "projection": {}}

    sub = rng.choice(train, 13_000, replace=False)
    val_q, val_c = sub[:1000], sub[1000:]
    for size in (int(s) for s in args.sizes.split(",")):
        enc = EncoderConfig(input_size=size).encoder()
        start = time.perf_counter()
        feats = {name: _pool_raw(enc, enc.grid(enc.normalize_array(grey28_batch(cat.pixels[rows], size)), batch_size=256))
                 for name, rows in (("q", val_q), ("c", val_c))}
        result["resolution"][size] = {
            "frozen_precision@10": precision10(l2_normalize(feats["q"]), l2_normalize(feats["c"]), y[val_q], y[val_c]),
            "encode_img_per_s": round(len(sub) / (time.perf_counter() - start), 1),
        }
        print("resolution", size, result["resolution"][size], flush=True)

    features = cached_features(cat, EncoderConfig(input_size=96))
    val = np.random.default_rng(1).choice(train, 3000, replace=False)
    fit = np.setdiff1d(train, val)
    for epochs, hidden in ((4, 256), (8, 512), (12, 512)):
        start = time.perf_counter()
        weights, _ = train_projection(features[fit], y[fit].tolist(), ProjectionConfig(epochs=epochs, hidden=hidden))
        score = precision10(apply_projection(weights, features[val]), apply_projection(weights, features[fit]), y[val], y[fit])
        result["projection"][f"epochs={epochs},hidden={hidden}"] = {
            "val_precision@10": score, "train_s": round(time.perf_counter() - start, 1)}
        print("projection", epochs, hidden, result["projection"][f"epochs={epochs},hidden={hidden}"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
