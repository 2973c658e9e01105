"""What keeping more layers fp32 costs in speed: candidate int8 recipes timed side by side with ONNX Runtime fp32.

    python bench/encoders_recipe_speed.py [--repeats 5] [--out bench/results/encoders_recipe_speed.json]

The candidates are the recipes that did best on the dev photos in ``bench/encoders_sensitivity.py``. All graphs
are calibrated on the same ranges (one calibration, cached), then every engine runs batch 32 at 224 px in turn
within each repeat (2 threads), so all see the same load; the ratio to ONNX Runtime fp32 is taken within each
repeat and its median reported. Input content does not change the arithmetic, so a fixed random batch is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import int8  # noqa: E402
from core.encoders import ImageEncoder  # noqa: E402
from encoders import timed  # noqa: E402
from encoders_sensitivity import HEAD, UNITS, ort_session, ov_session  # noqa: E402

CANDIDATES = {"v2 stem+b0": HEAD + UNITS["stem"] + UNITS["block0"],
              "b0+b1": HEAD + UNITS["block0"] + UNITS["block1"],
              "b0+b1+b3": HEAD + UNITS["block0"] + UNITS["block1"] + UNITS["block3"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/encoders_recipe_speed.json")
    args = parser.parse_args()
    os.environ["RECS_THREADS"] = str(args.threads)
    enc = ImageEncoder(precision="fp32")
    graph = enc._fp32_graph(32)
    batches = int8.calibration_batches(enc.preprocess, int8.calibration_sources(), 32)
    engines = {"ort fp32": ort_session(graph, args.threads)}
    with tempfile.TemporaryDirectory(prefix="int8-speed-") as work:
        cache = Path(work) / "ranges.json"
        for name, exclude in CANDIDATES.items():
            path = Path(work) / f"q{len(engines)}.onnx"
            int8.quantize_encoder(graph, path, batches, exclude=exclude, calibration_cache=cache)
            engines[f"ov {name}"] = ov_session(path, args.threads)
            engines[f"ort {name}"] = ort_session(path, args.threads)
        x = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
        for fn in engines.values():
            fn(x)
        walls: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.repeats):
            for name, fn in engines.items():
                walls[name].append(timed(fn, x, 2)[0])
    base = walls["ort fp32"]
    out: dict[str, object] = {
        name: {"img_s": round(statistics.median(v), 1),
               "ratio_median": round(statistics.median([a / b for a, b in zip(v, base)]), 2)}
        for name, v in walls.items()}
    out["load"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
