"""Where Fashion-MNIST's 96 px encoding spends its time: stage timers over the index build's own loop.

    python bench/encode_profile.py [--items 4096] [--threads 1] [--precision fp32 int8 ...]

Runs ``fashion.model.catalog_features``'s steps one by one on the first ``--items`` catalog items and times each:
loading the catalog, the batch resize (28 → 96 px), normalisation, the network (ONNX Runtime) and pooling, plus the
process CPU-seconds. Each precision is run in the same process, one after the other, after a warm-up batch. Writes
``bench/results/encode_profile.json``. The machine is shared: read CPU-seconds per image beside wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core.encoders import ImageEncoder  # noqa: E402
from fashion.data import load_catalog  # noqa: E402
from fashion.model import GREY28_INPUT_SIZE, _pool_raw, grey28_batch  # noqa: E402


def profile(encoder: ImageEncoder, pixels: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Seconds per stage of the index build's encoding loop over ``pixels``."""
    stages = {"resize": 0.0, "normalize": 0.0, "network": 0.0, "pool": 0.0}
    encoder.grid_batch(encoder.normalize_array(grey28_batch(pixels[:32], encoder.input_size)))  # warm-up / export
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, len(pixels), batch_size):
        t0 = time.perf_counter()
        x = grey28_batch(pixels[start : start + batch_size], encoder.input_size)
        t1 = time.perf_counter()
        x = encoder.normalize_array(x)
        t2 = time.perf_counter()
        grid = encoder.grid_batch(x)
        t3 = time.perf_counter()
        _pool_raw(encoder, grid)
        t4 = time.perf_counter()
        for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[key] += seconds
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {**{k: round(v, 3) for k, v in stages.items()}, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "img_per_s": round(len(pixels) / wall, 1), "img_per_cpu_s": round(len(pixels) / cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="ONNX intra-op threads (make run's image lane: 1)")
    parser.add_argument("--precision", nargs="+", default=["fp32"])
    parser.add_argument("--out", default="bench/results/encode_profile.json")
    args = parser.parse_args()
    os.environ["RECS_THREADS"] = str(args.threads)
    t0 = time.perf_counter()
    catalog = load_catalog("fashion-mnist")
    load_s = time.perf_counter() - t0
    pixels = catalog.pixels[: args.items]
    runs = {}
    for precision in args.precision:
        encoder = ImageEncoder(input_size=GREY28_INPUT_SIZE, precision=precision)
        runs[precision] = profile(encoder, pixels)
        print(precision, runs[precision], flush=True)
    result = {"items": len(pixels), "threads": args.threads, "catalog_load_s": round(load_s, 3), "runs": runs,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
