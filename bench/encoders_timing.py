"""How ``bench/encoders.py`` times engines: what a timing that follows another engine's pays, and two streams.

    python bench/encoders_timing.py [--alternations 8] [--out bench/results/encoders_timing.json]

In each alternation, in one process, with the product's encoders (2 threads, batch 32, 224 px, 2 calls timed):
- ONNX Runtime fp32, timed after a pause and one untimed call;
- OpenVINO int8 timed the moment ONNX Runtime fp32 returns (how ``bench/encoders.py`` timed before its ``--settle``);
- OpenVINO int8 timed half a second after an ONNX Runtime fp32 call, and the same after one untimed call of its own;
- OpenVINO int8 compiled as two single-threaded streams, each running half the batch side by side, after a pause
  and one untimed call (an engine setting that was tried and not adopted).

ONNX Runtime's worker threads spin on the cores for a while after a call (its default outside the app's server),
so what is timed right after it runs on busy cores. Medians over the alternations; the machine's load average is
recorded, as in ``bench/encoders.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core import int8  # noqa: E402
from core.encoders import ENCODER_CACHE, ImageEncoder  # noqa: E402
from encoders import eval_photos, machine_info, timed  # noqa: E402


def two_streams(xml: Path, batch: int, threads: int) -> Callable[[np.ndarray], object]:
    """OpenVINO running ``xml`` as ``threads`` single-threaded streams, each on an equal part of the batch."""
    import openvino as ov  # the benchmark needs OpenVINO; the product runs without it

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0]: [batch // threads, 3, 224, 224]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": threads,
                                                 "INFERENCE_PRECISION_HINT": "f32"})

    def run(x: np.ndarray) -> None:
        requests = []
        for part in np.split(x, threads):
            request = compiled.create_infer_request()
            request.start_async({0: part})
            requests.append(request)
        for request in requests:
            request.wait()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alternations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--out", default="bench/results/encoders_timing.json")
    args = parser.parse_args()
    if not int8.openvino_available():
        raise SystemExit("error: this benchmark compares OpenVINO timings; install openvino (requirements.txt)")
    os.environ["RECS_THREADS"] = str(args.threads)
    load_start = os.getloadavg()
    fp32 = ImageEncoder(precision="fp32")
    ov8 = ImageEncoder(precision="int8", int8_engine="openvino")
    fp32.warm_up()
    ov8.warm_up()
    x = np.stack([fp32.preprocess(img) for _, img in eval_photos()[:32]])
    ort_fn = lambda b: fp32._run(b, want_logits=True)  # noqa: E731
    ov_fn = lambda b: ov8._run(b, want_logits=True)  # noqa: E731
    streams = two_streams(ENCODER_CACHE / f"{ov8._stem(32)}-int8-openvino.xml", 32, args.threads)
    rows: dict[str, list[float]] = {k: [] for k in (
        "ONNX Runtime fp32, after a pause and an untimed call", "OpenVINO int8, right after ONNX Runtime fp32",
        "OpenVINO int8, a pause after ONNX Runtime fp32", "OpenVINO int8, a pause and an untimed call after it",
        "OpenVINO int8 as two single-threaded streams, a pause and an untimed call after it")}
    names = list(rows)

    def rate(fn: Callable[[np.ndarray], object], after_ort: bool = True, warm: bool = True) -> float:
        """Images/s of two calls of ``fn``: after an ONNX Runtime call and a pause (``after_ort``), after a pause and
        one untimed call of its own (``warm``), both, or neither (the moment the previous timing returned)."""
        if after_ort:
            ort_fn(x)
        time.sleep(args.settle if after_ort or warm else 0)
        if warm:
            fn(x)
        return timed(fn, x, 2)[0]

    for _ in range(args.alternations):
        rows[names[0]].append(rate(ort_fn, after_ort=False))
        rows[names[1]].append(rate(ov_fn, after_ort=False, warm=False))  # the moment ONNX Runtime returns
        rows[names[2]].append(rate(ov_fn, warm=False))
        rows[names[3]].append(rate(ov_fn))
        rows[names[4]].append(rate(streams))
    result = {"machine": machine_info(load_start, args.threads), "batch": 32, "settle_s": args.settle,
              "alternations": args.alternations,
              "rows": [{"timing": k, "img_per_s": round(statistics.median(v), 1),
                        "img_per_s_all": [round(r, 1) for r in v]} for k, v in rows.items()]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in result["rows"]:
        low, high = min(row["img_per_s_all"]), max(row["img_per_s_all"])
        print(f"{row['img_per_s']:7.1f} img/s  {row['timing']}  (min {low}, max {high})")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
