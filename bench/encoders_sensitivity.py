"""Which layers' int8 quantization costs agreement with fp32, and which calibration recipe keeps it: chosen on dev.

    python bench/encoders_sensitivity.py [--dev 320] [--out bench/results/encoders_sensitivity.json]

Every variant quantizes the same fp32 Lite0 export (224 px, batch 32) and is compared with it on the **dev**
photos (OpenCV's and scikit-image's sample photos that are not in the evaluation list
``bench/checksets/int8_eval.csv``, filled up with seeded crops and flips of them). The evaluation photos are never
used here; ``bench/encoders.py`` reports the chosen recipe on them. Variants:

- calibration method (minmax, percentile, entropy), number of calibration images, signed symmetric activations;
- sensitivity: everything int8 except the ImageNet head, then each unit (stem, block 0-6, head convolution) kept
  fp32 in turn: the gain in top-1 agreement says how much that unit's quantization costs;
- combinations of the units that cost the most.

Each row: top-1 agreement and fp32 top-1 within int8 top-5 (95% bootstrap intervals over the dev images), pooled
embedding cosine, and images per CPU-second of ONNX Runtime and of OpenVINO at batch 32 (a rough guide on a busy
machine; ``bench/encoders.py`` times the chosen graph side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

import onnxruntime  # noqa: E402

from core import int8  # noqa: E402
from core.encoders import ImageEncoder  # noqa: E402
from encoders import agreement, augmented, dev_photos, run_all, timed  # noqa: E402

#: Units of the network, by the node-name patterns of timm's export.
UNITS = {
    "stem": ("/conv_stem/", "/bn1/"),
    **{f"block{i}": (f"/blocks.{i}/",) for i in range(7)},
    "head_conv": ("/conv_head/", "/bn2/"),
}
HEAD = ("/classifier/", "/fc/")


def ort_session(path: Path, threads: int):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda b: tuple(session.run(None, {"x": b}))


def ov_session(path: Path, threads: int):
    try:
        import openvino as ov
    except ImportError:
        return None
    model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                       "INFERENCE_PRECISION_HINT": "f32"})
    return lambda b: tuple(model(b).values())


def variants(calib_default: int) -> list[dict]:
    """The recipes compared, in order (sensitivity rows first, then calibration rows)."""
    base = {"method": "minmax", "calib": calib_default, "activation": "u8", "symmetric": False}
    rows = [dict(base, name="all int8 but the head", exclude=HEAD)]
    rows += [dict(base, name=f"+ {u} fp32", exclude=HEAD + pats) for u, pats in UNITS.items()]
    current = HEAD + UNITS["stem"] + UNITS["block0"]
    rows += [dict(base, name="stem+block0 fp32 (v2 recipe)", exclude=current),
             dict(base, name="stem+block0 fp32, percentile", exclude=current, method="percentile"),
             dict(base, name="stem+block0 fp32, entropy", exclude=current, method="entropy"),
             dict(base, name="stem+block0 fp32, 256 calibration images", exclude=current, calib=256),
             dict(base, name="stem+block0 fp32, s8 symmetric activations", exclude=current, activation="s8",
                  symmetric=True)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev", type=int, default=320, help="dev images (distinct photos, then crops of them)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run only the variants whose name contains one of these")
    parser.add_argument("--extra", nargs="*", default=[], help="extra variants: unit names joined by + kept fp32")
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--op-types", nargs="*", help="quantize only these operator types (e.g. Conv Gemm)")
    parser.add_argument("--depthwise-fp32", action="store_true", help="extra variants keep depthwise convs fp32")
    parser.add_argument("--out", default="bench/results/encoders_sensitivity.json")
    args = parser.parse_args()
    os.environ["RECS_THREADS"] = str(args.threads)
    enc = ImageEncoder(precision="fp32")
    fp32_graph = enc._fp32_graph(32)
    distinct = dev_photos()
    x = np.stack([enc.preprocess(img) for _, img in augmented(distinct, args.dev, seed=1)])
    ref_logits, ref_vec = run_all(ort_session(fp32_graph, args.threads), x)
    todo = variants(int8.CALIBRATION_IMAGES)
    if args.only is not None:  # --only with no names: just the --extra variants
        todo = [v for v in todo if any(o in v["name"] for o in args.only)]
    for combo in args.extra:
        pats = HEAD + tuple(p for u in combo.split("+") if u for p in UNITS[u])
        tag = (f", only {'+'.join(args.op_types)}" if args.op_types else "") + (", depthwise fp32"
                                                                                  if args.depthwise_fp32 else "")
        todo.append({"name": f"{combo or 'head'} fp32, {args.method}{tag}", "exclude": pats, "method": args.method,
                     "calib": int8.CALIBRATION_IMAGES, "activation": "u8", "symmetric": False,
                     "op_types": args.op_types, "depthwise_fp32": args.depthwise_fp32})
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {"rows": []}
    result.update({"dev": {"images": len(x), "distinct_photos": len(distinct), "sources": [n for n, _ in distinct]},
                   "threads": args.threads})
    with tempfile.TemporaryDirectory(prefix="int8-sweep-") as work:
        batches_cache: dict[int, list] = {}
        for v in todo:
            started = time.perf_counter()
            n = v["calib"]
            if n not in batches_cache:
                sources = int8.calibration_sources(limit=n, clipart=n // 3)
                batches_cache[n] = int8.calibration_batches(enc.preprocess, sources, 32)
            cache = Path(work) / f"ranges-{v['method']}-{n}-{v['symmetric']}.json"
            path = Path(work) / "q.onnx"
            int8.quantize_encoder(fp32_graph, path, batches_cache[n], activation=v["activation"],
                                  exclude=v["exclude"], method=v["method"], symmetric=v["symmetric"],
                                  calibration_cache=cache, op_types=v.get("op_types"),
                                  depthwise_fp32=v.get("depthwise_fp32", False))
            built = time.perf_counter() - started
            ort = ort_session(path, args.threads)
            logits, vec = run_all(ort, x)
            row = {k: (list(val) if isinstance(val, tuple) else val) for k, val in v.items()}
            row.update(agreement(ref_logits, logits, ref_vec, vec))
            row["build_s"] = round(built, 1)
            row["ort_img_per_cpu_s"] = round(timed(ort, x[:32], 2)[1], 1)
            ov = ov_session(path, args.threads)
            if ov is not None:
                row["ov_img_per_cpu_s"] = round(timed(ov, x[:32], 2)[1], 1)
            row["load_avg"] = os.getloadavg()[0]
            result["rows"] = [r for r in result["rows"] if r["name"] != row["name"]] + [row]
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{row['name']:48s} top1 {row['top1_equal']['mean']:.3f} {row['top1_equal']['ci95']} "
                  f"top5 {row['fp32_top1_in_top5']['mean']:.3f} cos {row['embedding_cosine']['mean']:.4f} "
                  f"ort {row['ort_img_per_cpu_s']} ov {row.get('ov_img_per_cpu_s')} ({built:.0f} s)", flush=True)
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
