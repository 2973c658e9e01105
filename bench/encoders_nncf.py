"""NNCF post-training int8 recipes for EfficientNet-Lite0, compared on dev photos and timed side by side.

    python bench/encoders_nncf.py [--variants base mixed_bc ...] [--calib 288] [--dev 320] [--repeats 5]
                                  [--out bench/results/encoders_nncf_dev.json]

OpenVINO's maintained quantizer (NNCF) quantizes the same fp32 ONNX export the product's int8 graph comes from,
calibrated on ``core.int8``'s real-photo calibration pool (wallpapers, scikit-learn's photos, seeded crops and a
third of Tux Paint clip art). Each variant is compared with ONNX Runtime fp32 on the **dev** images of
``bench/encoders_sensitivity.py`` (OpenCV's and scikit-image's sample photos not in the evaluation list, filled up with
seeded crops and flips): top-1 agreement, fp32 top-1 within int8 top-5 (95% bootstrap intervals), pooled-embedding
cosine. The evaluation list ``bench/checksets/int8_eval.csv`` is never read here. Then every variant is timed at
batch 32 against ONNX Runtime fp32 and the product's current int8 graph on OpenVINO, interleaved per repeat.

Variants (``--variants``, ``RECIPES``): NNCF's defaults (``base``: performance preset, fast bias correction), the
mixed preset and/or full bias correction, the stem, block 0 and ImageNet head kept fp32 as the ONNX Runtime recipe
does (``_ignored``), SmoothQuant (``_sq``: NNCF applies it only with the transformer model type), and
``nncf.quantize_with_accuracy_control`` (``accuracy_control*``: top-1 agreement with fp32 on the dev images as the
metric, reverting the most sensitive layers to fp32 until the drop is at most ``--max-drop``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

import nncf  # noqa: E402
import openvino as ov  # noqa: E402
from nncf.quantization.advanced_parameters import (  # noqa: E402
    AdvancedAccuracyRestorerParameters,
    AdvancedQuantizationParameters,
    AdvancedSmoothQuantParameters,
)

from core import int8  # noqa: E402
from core.encoders import ImageEncoder  # noqa: E402
from encoders import agreement, augmented, dev_photos, run_all, timed  # noqa: E402
from encoders_sensitivity import ort_session  # noqa: E402

#: name -> (preset, full bias correction, stem/block 0/head fp32, SmoothQuant, accuracy control)
RECIPES = {
    "base": ("performance", False, False, False, False),
    "perf_bc": ("performance", True, False, False, False),
    "perf_bc_ignored": ("performance", True, True, False, False),
    "perf_ignored": ("performance", False, True, False, False),
    "mixed_bc": ("mixed", True, False, False, False),
    "mixed_bc_ignored": ("mixed", True, True, False, False),
    "mixed_bc_sq": ("mixed", True, False, True, False),
    "accuracy_control": ("mixed", True, False, False, True),
    "accuracy_control_perf": ("performance", False, False, False, True),
    "accuracy_control_perf_bc": ("performance", True, False, False, True),
    "accuracy_control_ignored": ("mixed", True, True, False, True),
}
VARIANTS = tuple(RECIPES)
#: The ONNX Runtime recipe's fp32 layers (stem, block 0, ImageNet head) as regular expressions over OpenVINO's
#: operation names (which keep the ONNX node names).
IGNORED = [f".*{p.replace('.', '[.]')}.*" for p in int8.EXCLUDE_PATTERNS]


def compiled(model: "ov.Model", threads: int) -> Callable[[np.ndarray], tuple]:
    """An OpenVINO model compiled for the CPU at fp32 inference precision (no silent bf16), called on a batch."""
    net = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    return lambda b: tuple(net(b).values())


def quantize_variant(name: str, fp32: "ov.Model", calib: list[np.ndarray], dev_x: np.ndarray,
                     dev_ref: np.ndarray, max_drop: float) -> "ov.Model":
    """One NNCF recipe applied to a copy of the dynamic-batch fp32 model (calibration items are single images)."""
    preset, full_bc, ignored, smooth, control = RECIPES[name]
    kwargs: dict[str, object] = {
        "subset_size": len(calib), "fast_bias_correction": not full_bc,
        "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE}
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(patterns=IGNORED, validate=False)
    if smooth:  # NNCF applies SmoothQuant only with the transformer model type
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        alphas = AdvancedSmoothQuantParameters(convolution=0.15, matmul=0.95)
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alphas=alphas)
    dataset = nncf.Dataset(calib, lambda a: a[None])
    if not control:
        return nncf.quantize(fp32.clone(), dataset, **kwargs)

    def top1_agreement(model, items) -> tuple[float, list[float]]:
        # the metric NNCF keeps within max_drop: the share of dev images whose top-1 class equals fp32's
        request = model.create_infer_request()
        hits = [float(np.argmax(request.infer({0: x[None]})[model.outputs[1]]) == ref) for x, ref in items]
        return float(np.mean(hits)), hits

    return nncf.quantize_with_accuracy_control(
        fp32.clone(), dataset, nncf.Dataset(list(zip(dev_x, dev_ref))), top1_agreement, max_drop=max_drop,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(ranking_subset_size=160), **kwargs)


def fp32_nodes(model: "ov.Model") -> list[str]:
    """Convolutions/MatMuls whose weights are a plain fp32 constant (not quantized): what accuracy control reverted
    or the ignored scope kept."""
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
            and op.input_value(1).get_node().get_type_name() == "Constant"
            and op.input_value(1).get_element_type() == ov.Type.f32]


def speed(engines: dict[str, Callable], x: np.ndarray, repeats: int) -> dict[str, dict[str, object]]:
    """Batch-32 images/s per engine, interleaved per repeat; ratio to ONNX Runtime fp32 within each repeat."""
    walls: dict[str, list[float]] = {k: [] for k in engines}
    cpus: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            w, c = timed(fn, x, 2)
            walls[name].append(w)
            cpus[name].append(c)
    base, base_cpu = walls["ONNX Runtime fp32"], cpus["ONNX Runtime fp32"]
    out = {}
    for name in engines:
        ratios = [w / b for w, b in zip(walls[name], base)]
        out[name] = {"img_per_s": round(statistics.median(walls[name]), 1),
                     "img_per_cpu_s": round(statistics.median(cpus[name]), 1),
                     "speedup_per_repeat_median": round(statistics.median(ratios), 2),
                     "speedup_ratio_of_medians": round(statistics.median(walls[name]) / statistics.median(base), 2),
                     "speedup_per_cpu_s": round(statistics.median(cpus[name]) / statistics.median(base_cpu), 2),
                     "speedup_per_repeat": [round(r, 2) for r in ratios]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--calib", type=int, default=288, help="calibration images (a third clip art)")
    parser.add_argument("--dev", type=int, default=320)
    parser.add_argument("--max-drop", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/encoders_nncf_dev.json")
    args = parser.parse_args()
    os.environ["RECS_THREADS"] = str(args.threads)
    enc = ImageEncoder(precision="fp32")
    fp32_graph = enc._fp32_graph(32)
    q8 = ImageEncoder(precision="int8", int8_engine="openvino")
    current = q8._openvino_graph(32, q8._int8_graph(32, fp32_graph))
    distinct = dev_photos()
    dev_x = np.stack([enc.preprocess(img) for _, img in augmented(distinct, args.dev, seed=1)])
    ort_fp32 = ort_session(fp32_graph, args.threads)
    ref_logits, ref_vec = run_all(ort_fp32, dev_x)
    sources = int8.calibration_sources(limit=args.calib, clipart=args.calib // 3)
    calib = [enc.preprocess(int8.load_calibration_image(s)).astype(np.float32) for s in sources]
    fp32 = ov.convert_model(str(fp32_graph))
    fp32.reshape([-1, 3, enc.input_size, enc.input_size])
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {"variants": {}}
    result.update({"dev": {"images": len(dev_x), "distinct_photos": len(distinct)},
                   "calibration": {"images": len(calib), "clipart": args.calib // 3},
                   "nncf": nncf.__version__, "openvino": ov.__version__, "threads": args.threads})
    engines: dict[str, Callable] = {"ONNX Runtime fp32": ort_fp32,
                                    "OpenVINO int8, current QDQ recipe": compiled(ov.Core().read_model(current),
                                                                                  args.threads)}
    logits, vec = run_all(engines["OpenVINO int8, current QDQ recipe"], dev_x)
    result["variants"]["current_qdq"] = {"recipe": int8.RECIPE, **agreement(ref_logits, logits, ref_vec, vec)}
    with tempfile.TemporaryDirectory(prefix="nncf-") as work:
        for name in args.variants:
            started = time.perf_counter()
            model = quantize_variant(name, fp32, calib, dev_x, ref_logits.argmax(1), args.max_drop)
            built = round(time.perf_counter() - started, 1)
            ov.save_model(model, f"{work}/{name}.xml", compress_to_fp16=False)
            static = ov.Core().read_model(f"{work}/{name}.xml")
            static.reshape([32, 3, enc.input_size, enc.input_size])
            engines[f"OpenVINO int8, NNCF {name}"] = compiled(static, args.threads)
            logits, vec = run_all(engines[f"OpenVINO int8, NNCF {name}"], dev_x)
            row = {"build_s": built, "load_avg": os.getloadavg()[0], "fp32_layers": fp32_nodes(model),
                   **agreement(ref_logits, logits, ref_vec, vec)}
            result["variants"][name] = row
            out_path.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{name:20s} top1 {row['top1_equal']['mean']:.3f} {row['top1_equal']['ci95']} top5 "
                  f"{row['fp32_top1_in_top5']['mean']:.3f} cos {row['embedding_cosine']['mean']:.4f} "
                  f"fp32 layers {len(row['fp32_layers'])} ({built:.0f} s)", flush=True)
        result["speed_b32"] = speed(engines, dev_x[:32], args.repeats)
        result["speed_load_avg_end"] = os.getloadavg()
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in result["speed_b32"].items():
        print(f"{name:45s} {row['img_per_s']:7.1f} img/s  x{row['speedup_per_repeat_median']:.2f} "
              f"(cpu x{row['speedup_per_cpu_s']:.2f})")
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
