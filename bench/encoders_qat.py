"""Quantization-aware fine-tuning of EfficientNet-Lite0 (``core.qat``), chosen on dev photos, reported once on the
evaluation list.

    python bench/encoders_qat.py train --lr 2e-5 --steps 240 --checkpoints 80 160 240 --work /tmp/qat
    python bench/encoders_qat.py dev --work /tmp/qat                 # → bench/results/encoders_qat_dev.json
    python bench/encoders_qat.py product --work /tmp/qat --compare /tmp/qat/lr5e-06-t1-s120.safetensors
                                                                     # RECS_INT8_RECIPE=qat as the product builds it
    python bench/encoders_qat.py eval --weights /tmp/qat/lr2e-05-s160.safetensors   # once, after choosing on dev
                                                                     # → bench/results/encoders_qat_eval.json

``train``: the fp32 Lite0 (built as the product builds it) is fine-tuned with the int8 QDQ recipe simulated in torch,
distilled from a frozen fp32 copy on unlabelled images (``core.int8``'s calibration pool: Debian wallpapers,
scikit-learn's photos, Tux Paint stamps, randomly cropped, flipped and recoloured). Before training it refuses any
image that is, by name or by content (16×16 grey thumbnails), a dev photo or one of the evaluation list. Checkpoints
are safetensors; the loss log goes beside them.

``dev``: each checkpoint goes through the product's own code: ``ImageEncoder(weights=checkpoint)`` exports the fp32
ONNX graph and builds its int8 graph with the product's recipe and calibration images (``core.int8``), into a
private cache. Every int8 graph, and the shipped post-training graph of the original weights, is compared with the
ORIGINAL fp32 model on the dev images of ``bench/encoders_sensitivity.py`` (OpenCV's and scikit-image's sample
photos with seeded crops and flips; 95% bootstrap intervals), ONNX Runtime executing. The fine-tuned fp32 model's
own agreement with the original is reported too (how far fine-tuning moved fp32 itself).

``eval``: the chosen checkpoint's int8 graph against the original fp32 model on ``bench/checksets/int8_eval.csv``,
with the shipped post-training graph beside it, ONNX Runtime and OpenVINO, and speed at batch 32 interleaved with
ONNX Runtime fp32 in the same run (``bench/encoders_nncf.py``'s interleaved batch-32 timing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

import core.encoders as encoders  # noqa: E402
from core import int8, qat  # noqa: E402
from core.encoders import ImageEncoder  # noqa: E402
from encoders import (  # noqa: E402
    OPENCV_DATA, agreement, augmented, dev_photos, eval_photos, machine_info, run_all,
)
from encoders_nncf import speed  # noqa: E402
from encoders_sensitivity import ort_session, ov_session  # noqa: E402

log = logging.getLogger("encoders_qat")
#: fp32 layers of the faster variant: only the ImageNet head (the stem and block 0 int8 too).
HEAD_ONLY = ("/classifier/", "/fc/")


def thumbs(images: Sequence[Image.Image]) -> np.ndarray:
    """16×16 grey thumbnails in [0, 1]: equal photos (whatever their file names) give near-equal rows."""
    return np.stack([np.asarray(im.convert("L").resize((16, 16), Image.Resampling.BILINEAR), np.float32).ravel() / 255
                     for im in images])


def assert_unseen(train: qat.TrainingImages, photos: Sequence[tuple[str, Image.Image]], what: str) -> None:
    """Refuse training images that look like one of ``photos`` (mean absolute thumbnail difference under 2%)."""
    if not photos:
        return
    a, b = thumbs(train.images), thumbs([im for _, im in photos])
    diff = np.abs(a[:, None, :] - b[None, :, :]).mean(axis=2)
    i, j = np.unravel_index(int(diff.argmin()), diff.shape)
    if diff[i, j] < 0.02:
        raise SystemExit(f"error: training image {train.sources[i]} looks like {what} photo {photos[j][0]}")
    log.info("no training image looks like a %s photo (closest thumbnail difference %.3f)", what, diff[i, j])


def training_images(enc: ImageEncoder, dev: Sequence[tuple[str, Image.Image]]) -> qat.TrainingImages:
    """The unlabelled training images, checked by name and content against the dev and evaluation photos."""
    sources = int8.calibration_sources(limit=qat.TRAIN_IMAGES, clipart=qat.TRAIN_CLIPART)
    dev_files = [n for n, _ in dev] + [str(OPENCV_DATA / n.split(":", 1)[1]) for n, _ in dev if n.startswith("opencv")]
    qat.assert_disjoint(sources, sorted(int8.evaluation_paths()) + dev_files)
    train = qat.TrainingImages(sources, enc.preprocess)
    assert_unseen(train, dev, "dev")
    return train


def train(args: argparse.Namespace) -> None:
    enc = ImageEncoder(precision="fp32", runtime="torch")
    dev = dev_photos()
    images = training_images(enc, dev)
    calib = int8.calibration_batches(enc.preprocess, int8.calibration_sources(), 32)
    student = enc.module.to(memory_format=torch.contiguous_format)
    work = Path(args.work)
    tag = (f"lr{args.lr:g}-t{args.temperature:g}" + (f"-mix{args.mixup:g}" if args.mixup else "")
           + (f"-seed{args.seed}" if args.seed else "") + ("-stem" if args.quantize_stem else ""))
    saved: dict[int, str] = {}
    started = time.perf_counter()

    def checkpoint(step: int, module: torch.nn.Module) -> None:
        if step in args.checkpoints:
            path = work / f"{tag}-s{step}.safetensors"
            qat.save_weights(module, path)
            saved[step] = str(path)

    exclude = HEAD_ONLY if args.quantize_stem else int8.EXCLUDE_PATTERNS
    history = qat.distill(student, images, calib, steps=max(args.checkpoints), lr=args.lr, batch=args.batch,
                          temperature=args.temperature, embedding_weight=args.embedding_weight, mixup=args.mixup,
                          exclude=exclude, recalibrate_every=args.recalibrate_every, seed=args.seed,
                          on_step=checkpoint)
    record = {"tag": tag, "lr": args.lr, "batch": args.batch, "temperature": args.temperature,
              "embedding_weight": args.embedding_weight, "mixup": args.mixup,
              "recalibrate_every": args.recalibrate_every,
              "seed": args.seed, "fp32_patterns": list(exclude), "checkpoints": saved, "history": history,
              "train_images": images.sources, "seconds": round(time.perf_counter() - started, 1),
              "load_avg_end": os.getloadavg()}
    (work / f"{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{tag}: {len(history)} log rows, last loss {history[-1]['loss']}, {record['seconds']} s; "
          f"checkpoints {sorted(saved)}")


def graphs(weights: str, work: Path, openvino: bool = False,
           exclude: Sequence[str] = int8.EXCLUDE_PATTERNS) -> dict[str, Path]:
    """The product's fp32 export and int8 graph (and OpenVINO files) of ``weights``, built in a private cache.

    With other fp32 layers than the product's recipe (``exclude``), the export is quantized by
    ``core.int8.quantize_encoder`` with those layers fp32, on the product's calibration images."""
    encoders.ENCODER_CACHE = work / "cache"  # the shared encoder cache never sees experimental weights
    enc = ImageEncoder(weights=weights, precision="int8", int8_engine="onnxruntime")
    fp32 = enc._fp32_graph(32)
    if tuple(exclude) != tuple(int8.EXCLUDE_PATTERNS):
        out = {"fp32": fp32, "int8": work / "cache" / f"int8-fp32layers-{len(exclude)}.onnx"}
        if not out["int8"].is_file():
            batches = int8.calibration_batches(enc.preprocess, int8.calibration_sources(), 32)
            int8.quantize_encoder(fp32, out["int8"], batches, exclude=exclude)
        return out
    out = {"fp32": fp32, "int8": enc._int8_graph(32, fp32)}
    if openvino:
        out["openvino"] = enc._openvino_graph(32, out["int8"])
    return out


def original_weights() -> str:
    """The shipped weights file (what ``ImageEncoder()`` loads by default)."""
    return ImageEncoder(precision="fp32", runtime="torch").weights_source


def original_graphs() -> dict[str, Path]:
    """The original weights' fp32 export and shipped post-training int8 graph, from the product's encoder cache."""
    enc = ImageEncoder(precision="int8", int8_engine="onnxruntime")
    fp32 = enc._fp32_graph(32)
    q8 = enc._int8_graph(32, fp32)
    return {"fp32": fp32, "int8": q8, "openvino": enc._openvino_graph(32, q8)}


def row_text(name: str, a: dict) -> str:
    return (f"{name:44s} top1 {a['top1_equal']['mean']:.3f} {a['top1_equal']['ci95']} top5 "
            f"{a['fp32_top1_in_top5']['mean']:.3f} cos {a['embedding_cosine']['mean']:.4f}")


def simulation_fidelity(int8_graph: Path, x: np.ndarray, args: argparse.Namespace) -> dict:
    """How closely ``core.qat.QuantSim`` (calibrated on the product's calibration images) reproduces the int8 graph
    ONNX Runtime builds from the same weights: its agreement with that graph on the dev images."""
    enc = ImageEncoder(precision="fp32", runtime="torch")
    module = enc.module.to(memory_format=torch.contiguous_format)
    sim = qat.QuantSim(module)
    sim.calibrate(int8.calibration_batches(enc.preprocess, int8.calibration_sources(), 32))
    sim.mode = "quant"
    with torch.no_grad():
        logits, vecs = run_all(lambda b: tuple(t.numpy() for t in module(torch.from_numpy(b))), x)
    sim.remove()
    ort_logits, ort_vecs = run_all(ort_session(int8_graph, args.threads), x)
    return agreement(ort_logits, logits, ort_vecs, vecs)


def dev(args: argparse.Namespace) -> None:
    work = Path(args.work)
    original = original_graphs()
    enc = ImageEncoder(precision="fp32")
    distinct = dev_photos()
    x = np.stack([enc.preprocess(img) for _, img in augmented(distinct, args.dev, seed=1)])
    ref_logits, ref_vec = run_all(ort_session(original["fp32"], args.threads), x)

    def compare(path: Path) -> dict:
        logits, vec = run_all(ort_session(path, args.threads), x)
        return agreement(ref_logits, logits, ref_vec, vec)

    rows = {"shipped post-training int8": compare(original["int8"])}
    print(row_text("shipped post-training int8", rows["shipped post-training int8"]), flush=True)
    rows["torch simulation of it, against its ONNX Runtime graph"] = simulation_fidelity(original["int8"], x, args)
    print(row_text("torch simulation vs its ORT int8 graph", rows["torch simulation of it, against its ONNX Runtime "
                                                                "graph"]), flush=True)
    if args.head_only:  # the baseline of runs that fine-tune with the stem and block 0 int8 too
        head = graphs(original_weights(), work / "original-head-only", exclude=HEAD_ONLY)
        rows["post-training int8, only the head fp32"] = compare(head["int8"])
        print(row_text("post-training int8, only the head fp32", rows["post-training int8, only the head fp32"]))
    runs = {}
    for record_path in sorted(work.glob("*.json")):
        record = json.loads(record_path.read_text())
        runs[record["tag"]] = {k: v for k, v in record.items() if k not in ("train_images", "checkpoints")}
        for step, weights in sorted(record["checkpoints"].items(), key=lambda kv: int(kv[0])):
            built = graphs(weights, work / f"{record['tag']}-s{step}", exclude=record["fp32_patterns"])
            name = f"QAT {record['tag']} step {step}"
            rows[name] = compare(built["int8"])
            rows[name]["fine_tuned_fp32"] = compare(built["fp32"])
            rows[name].update({"run": record["tag"], "step": int(step), "weights": weights})
            print(row_text(name, rows[name]) + f"  (fp32 itself: top1 "
                  f"{rows[name]['fine_tuned_fp32']['top1_equal']['mean']:.3f})", flush=True)
    result = {"dev": {"images": len(x), "distinct_photos": len(distinct), "sources": [n for n, _ in distinct]},
              "reference": "the original fp32 Lite0 ONNX graph (ONNX Runtime)", "int8_recipe": int8.RECIPE,
              "engine": "ONNX Runtime", "runs": runs, "rows": rows, "load_avg_end": os.getloadavg()}
    if Path(args.out).is_file():  # runs stopped by hand are noted in the file by hand; keep the note
        result["stopped_runs"] = json.loads(Path(args.out).read_text()).get("stopped_runs", {})
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


def product(args: argparse.Namespace) -> None:
    """``RECS_INT8_RECIPE=qat`` built by the product itself (``ImageEncoder._qat_weights``, ``QAT_SETTINGS``) in a
    private cache, compared on dev with the original fp32 model, and its weights with a benchmark checkpoint."""
    original = original_graphs()
    encoders.ENCODER_CACHE = Path(args.work) / "product_cache"
    started = time.perf_counter()
    q8 = ImageEncoder(precision="int8", int8_engine="onnxruntime", int8_recipe="qat")
    weights = q8._qat_weights()
    tuned = q8._qat_encoder()
    int8_graph = tuned._int8_graph(32, tuned._fp32_graph(32))
    built_s = time.perf_counter() - started
    enc = ImageEncoder(precision="fp32", runtime="torch")
    x = np.stack([enc.preprocess(img) for _, img in augmented(dev_photos(), args.dev, seed=1)])
    ref_logits, ref_vec = run_all(ort_session(original["fp32"], args.threads), x)
    logits, vec = run_all(ort_session(int8_graph, args.threads), x)
    row = agreement(ref_logits, logits, ref_vec, vec)
    manifest = json.loads(weights.with_suffix(".json").read_text())
    row.update({"recipe": manifest["recipe"], "settings": manifest["settings"], "threads": q8.threads,
                "build_seconds_incl_cached": round(built_s, 1)})
    if args.compare:
        a, b = load_file(str(weights)), load_file(args.compare)
        row["max_abs_weight_difference_to"] = {args.compare: max(float((a[k] - b[k]).abs().max()) for k in a)}
    print(row_text("product-built qat int8 (dev)", row), row.get("max_abs_weight_difference_to"))
    result = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    result["product_build"] = row
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


def evaluate(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()
    photos = eval_photos()
    records = (json.loads(p.read_text()) for p in Path(args.weights).parent.glob("*.json"))
    record = next((r for r in records if args.weights in r.get("checkpoints", {}).values()), {})
    check = qat.TrainingImages(record.get("train_images", []), lambda im: im)
    assert_unseen(check, photos, "evaluation")
    original = original_graphs()
    built = graphs(args.weights, Path(args.work) / "eval", openvino=True)
    os.environ["RECS_THREADS"] = str(args.threads)
    engines: dict[str, Callable] = {
        "ONNX Runtime fp32": ort_session(original["fp32"], args.threads),
        "shipped post-training int8, OpenVINO": ov_session(original["openvino"], args.threads),
        "QAT int8, ONNX Runtime": ort_session(built["int8"], args.threads),
        "QAT int8, OpenVINO": ov_session(built["openvino"], args.threads),
    }
    enc = ImageEncoder(precision="fp32")
    x = np.stack([enc.preprocess(img) for _, img in photos])
    outputs = {name: run_all(fn, x) for name, fn in engines.items()}
    ref_logits, ref_vec = outputs["ONNX Runtime fp32"]
    rows = speed(engines, x[:32], args.repeats)  # every graph here has the static batch 32
    for name, r in rows.items():
        if name != "ONNX Runtime fp32":
            r["agreement"] = agreement(ref_logits, outputs[name][0], ref_vec, outputs[name][1])
            print(row_text(name, r["agreement"]) + f"  x{r['speedup_per_repeat_median']:.2f} ORT fp32 at batch 32")
    result = {"machine": machine_info(load_start, args.threads),
              "photos": {"images": len(photos), "list": int8.EVALUATION_SET.name},
              "weights": args.weights, "training": {k: v for k, v in record.items() if k != "checkpoints"},
              "reference": "the original fp32 Lite0 ONNX graph (ONNX Runtime)", "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--checkpoints", type=int, nargs="+", default=[100, 200, 300])
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--temperature", type=float, default=1.0)
    t.add_argument("--embedding-weight", type=float, default=1.0)
    t.add_argument("--mixup", type=float, default=0.0, help="Beta(a, a) blends of two views (0: none)")
    t.add_argument("--recalibrate-every", type=int, default=100)
    t.add_argument("--quantize-stem", action="store_true", help="also quantize the stem and block 0")
    t.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("dev")
    d.add_argument("--dev", type=int, default=320)
    d.add_argument("--head-only", action="store_true", help="add post-training int8 with only the head fp32")
    d.add_argument("--out", default="bench/results/encoders_qat_dev.json")
    b = sub.add_parser("product")
    b.add_argument("--dev", type=int, default=320)
    b.add_argument("--compare", help="a benchmark checkpoint to compare the product's weights with")
    b.add_argument("--out", default="bench/results/encoders_qat_dev.json")
    e = sub.add_parser("eval")
    e.add_argument("--weights", required=True)
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--out", default="bench/results/encoders_qat_eval.json")
    for p in (t, d, b, e):
        p.add_argument("--work", default="/tmp/qat")
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    {"train": train, "dev": dev, "product": product, "eval": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
