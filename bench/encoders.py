"""Encoder engines side by side in one run: EfficientNet-Lite0 at 224 px, images/s and agreement with fp32.

    python bench/encoders.py [--repeats 5] [--nncf] [--out bench/results/encoders.json]

Rows (same process, same inputs, one after another per repeat, medians of ``--repeats``):
- ONNX Runtime fp32 (the default) and ONNX Runtime int8 (static QDQ, per-channel weights; the product's int8
  graph, built by ``core.encoders`` from ``core.int8``'s calibration images);
- OpenVINO running that same QDQ graph, and with ``--nncf`` OpenVINO running NNCF's post-training quantization of
  the fp32 graph (``RECS_INT8_ENGINE=openvino-nncf``, ``core.int8.NNCF_RECIPE``).

Throughput: batch 1 and 32, wall-clock images/s and images per process CPU-second (the machine is shared: the
CPU-second figure is the steadier one); the ratio to ONNX Runtime fp32 is taken within each repeat (its median) and
as a ratio of medians. Agreement with ONNX Runtime fp32 on the evaluation list ``bench/checksets/int8_eval.csv``
(distinct real photos from Debian and PyPI packages, never calibrated on and never used to choose the recipe):
top-1 equal, fp32 top-1 within the int8 top 5, cosine of the max-pooled embeddings, each with a 95% bootstrap
interval over photos. ``dev_photos`` and ``augmented`` serve ``bench/encoders_sensitivity.py``, where recipes are
chosen.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core import int8  # noqa: E402
from core.encoders import ImageEncoder, l2_normalize  # noqa: E402
from core.photosets import resolve_photo  # noqa: E402

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
#: OpenCV's sample files that are photographs (logos, drawings, renders, charts and text scans left out).
OPENCV_PHOTOS = (
    "HappyFish.jpg aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg basketball1.png basketball2.png "
    "board.jpg box.png box_in_scene.png building.jpg butterfly.jpg chicky_512.png ela_original.jpg fruits.jpg "
    "graf1.png graf3.png home.jpg leuvenA.jpg leuvenB.jpg left01.jpg licenseplate_motion.jpg messi5.jpg orange.jpg "
    "rubberwhale1.png smarties.png squirrel_cls.jpg stuff.jpg sudoku.png"
).split()
SKIMAGE_PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "coins", "moon", "clock",
                  "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel")


def dev_photos() -> list[tuple[str, "object"]]:
    """The dev photos recipes are chosen on: OpenCV's and scikit-image's sample photos that are neither calibrated
    on nor in the evaluation list. (name, PIL RGB image)."""

    held_out = int8.evaluation_paths()
    photos = []
    for name in SKIMAGE_PHOTOS:
        if f"skimage/data/{name}.png" in held_out:
            continue
        try:
            photos.append((f"skimage:{name}", Image.fromarray(getattr(data, name)()).convert("RGB")))
        except Exception:  # noqa: BLE001 - an image that needs a download is simply not in the set
            continue
    for name in OPENCV_PHOTOS:
        if (OPENCV_DATA / name).is_file() and str(OPENCV_DATA / name) not in held_out:
            with Image.open(OPENCV_DATA / name) as img:
                photos.append((f"opencv-doc:{name}", img.convert("RGB")))
    return photos


def eval_photos() -> list[tuple[str, "object"]]:
    """The evaluation photos (``bench/checksets/int8_eval.csv``: distinct real photos from Debian and PyPI packages,
    never calibrated or chosen on) that are present here: (path as listed, PIL RGB image)."""



    photos, missing = [], []
    with open(int8.EVALUATION_SET, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            local = resolve_photo(row["package"], row["path"])
            if local is None:
                missing.append(row["package"])
                continue
            with Image.open(local) as img:
                photos.append((row["path"], img.convert("RGB")))
    if missing:
        print(f"{len(missing)} evaluation photos absent (packages {sorted(set(missing))}: make heldout-photos)",
              file=sys.stderr)
    return photos


def augmented(photos: list, n: int, seed: int = 0) -> list[tuple[str, "object"]]:
    """The photos themselves, then seeded random crops (30-100% of the area), flips and rescalings up to ``n``."""

    rng = np.random.default_rng(seed)
    out = list(photos)
    while len(out) < n:
        name, img = photos[len(out) % len(photos)]
        w, h = img.size
        area, aspect = rng.uniform(0.3, 1.0), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = min(w, round(np.sqrt(area * w * h * aspect))), min(h, round(np.sqrt(area * w * h / aspect)))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = rng.uniform(0.5, 1.0)
        crop = crop.resize((max(32, round(cw * scale)), max(32, round(ch * scale))), Image.Resampling.BILINEAR)
        out.append((f"{name}#aug{len(out)}", crop))
    return out[:n]


def bootstrap(values: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, object]:
    """Mean with a 95% percentile-bootstrap interval over images."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float64)
    means = values[rng.integers(0, len(values), (reps, len(values)))].mean(axis=1)
    return {"mean": round(float(values.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]}


def agreement(ref_logits: np.ndarray, logits: np.ndarray, ref_vec: np.ndarray, vec: np.ndarray) -> dict[str, object]:
    """Per-image agreement of an engine with fp32, each with its bootstrap interval."""
    ref1 = ref_logits.argmax(1)
    top5 = np.argsort(-logits, 1)[:, :5]
    return {
        "top1_equal": bootstrap(ref1 == logits.argmax(1)),
        "fp32_top1_in_top5": bootstrap((top5 == ref1[:, None]).any(1)),
        "embedding_cosine": bootstrap(np.sum(l2_normalize(ref_vec) * l2_normalize(vec), axis=1)),
    }


def run_all(fn: Callable[[np.ndarray], tuple], x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(logits, max-pooled vectors) of every row of ``x``, ``batch`` at a time (last batch padded)."""
    logits, vecs = [], []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        grid, out = fn(chunk)
        logits.append(out[:n])
        vecs.append(grid[:n].max(axis=(2, 3)))
    return np.concatenate(logits), np.concatenate(vecs)


def timed(fn: Callable[[np.ndarray], object], x: np.ndarray, calls: int) -> tuple[float, float]:
    """(images/s, images per process CPU-second) of ``calls`` calls on ``x``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return calls * len(x) / wall, calls * len(x) / max(cpu, 1e-9)


def speed_table(engines: dict[str, Callable], x: np.ndarray, repeats: int,
                settle: float = 0.5) -> list[dict[str, object]]:
    """Interleaved timing: in each repeat every engine runs batch 32 then batch 1, so all see the same load.

    Each timing starts ``settle`` seconds after the previous engine's, then one untimed call: ONNX Runtime's idle
    worker threads keep spinning on the cores for a while after a call returns, so without the pause the engine timed
    next loses 3-13% of its images/s to them (``bench/encoders_timing.py``), and the untimed call wakes the engine's
    own threads, as they are awake in a steady run of calls (docs/encoders.md §2). The ratio to ONNX Runtime fp32 is
    taken within each repeat and its median reported beside the ratio of medians.
    """
    speed: dict[str, dict[int, list]] = {name: {1: [], 32: []} for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            for batch, calls in ((32, 4), (1, 32)):
                time.sleep(settle)
                fn(x[:batch])
                speed[name][batch].append(timed(fn, x[:batch], calls))
    base = [w for w, _ in speed["ONNX Runtime fp32"][32]]
    rows = []
    for name in engines:
        for batch in (1, 32):
            walls, cpus = zip(*speed[name][batch])
            row = {"engine": name, "batch": batch, "img_per_s": round(statistics.median(walls), 1),
                   "img_per_cpu_s": round(statistics.median(cpus), 1), "img_per_s_all": [round(v, 1) for v in walls]}
            if batch == 32:
                ratios = [w / b for w, b in zip(walls, base)]
                row["speedup_vs_ort_fp32_b32"] = round(statistics.median(walls) / statistics.median(base), 2)
                row["speedup_per_repeat_median"] = round(statistics.median(ratios), 2)
                row["speedup_per_repeat"] = [round(r, 2) for r in ratios]
            rows.append(row)
    return rows


def machine_info(load_start: tuple[float, ...], threads: int) -> dict[str, object]:
    """What the speeds were measured on: CPU count and flags, threads, and the load average at start and end."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": load_start,
            "load_avg_at_end": os.getloadavg(), "int8_flags": list(int8.int8_flags()), "threads": threads,
            "note": machine_note(load_start[0], threads)}


def machine_note(load: float, threads: int) -> str:
    """How to read the speeds: a load average above the threads used means other work shared the cores."""
    if load > threads:
        return "shared machine, busy during the run (see load_avg_start): compare rows, not absolute numbers"
    return "quiet machine (load average at most the threads used): absolute numbers stand for this CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nncf", action="store_true", help="add NNCF's int8 recipe (minutes to build once)")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of pause before each timing, so no engine pays for the previous one's threads")
    parser.add_argument("--out", default="bench/results/encoders.json")
    args = parser.parse_args()
    os.environ["RECS_THREADS"] = str(args.threads)
    load_start = os.getloadavg()
    fp32 = ImageEncoder(precision="fp32")
    q8 = ImageEncoder(precision="int8", int8_engine="onnxruntime")
    started = time.perf_counter()
    q8.warm_up()  # builds (or loads) the int8 graphs for batch 1 and 32
    int8_ready_s = time.perf_counter() - started
    fp32.warm_up()
    engines: dict[str, Callable] = {
        "ONNX Runtime fp32": lambda b: fp32._run(b, want_logits=True),
        "ONNX Runtime int8 (QDQ)": lambda b: q8._run(b, want_logits=True),
    }
    if int8.openvino_available():
        ov8 = ImageEncoder(precision="int8", int8_engine="openvino")
        ov8.warm_up()
        engines["OpenVINO int8 (the same QDQ graph)"] = lambda b: ov8._run(b, want_logits=True)
    if args.nncf:
        nn8 = ImageEncoder(precision="int8", int8_engine="openvino-nncf")
        nn8.warm_up()  # builds (or loads) NNCF's graphs for batch 1 and 32
        engines["OpenVINO int8 (NNCF recipe)"] = lambda b: nn8._run(b, want_logits=True)
    photos = eval_photos()
    x = np.stack([fp32.preprocess(img) for _, img in photos])
    outputs = {name: run_all(fn, x) for name, fn in engines.items()}
    ref_logits, ref_vec = outputs["ONNX Runtime fp32"]
    rows = speed_table(engines, x, args.repeats, args.settle)
    for r in rows:
        if r["engine"] != "ONNX Runtime fp32" and r["batch"] == 32:
            r["agreement"] = agreement(ref_logits, outputs[r["engine"]][0], ref_vec, outputs[r["engine"]][1])
    result = {
        "machine": machine_info(load_start, args.threads),
        "backbone": "efficientnet_lite0", "input_size": 224, "repeats": args.repeats,
        "settle_s": args.settle, "timing": "each timing after the pause and one untimed call",
        "photos": {"images": len(photos), "distinct_real_photos": len(photos), "list": str(int8.EVALUATION_SET.name),
                   "note": "each image a different photo; none calibrated on or used to choose the recipe"},
        "int8_graph_ready_s": round(int8_ready_s, 1),
        "calibration": {"images": len(int8.calibration_sources()), "recipe": int8.RECIPE,
                        "nncf_recipe": int8.NNCF_RECIPE if args.nncf else None},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'engine':40s} {'batch':>5s} {'img/s':>8s} {'img/cpu-s':>9s} {'x fp32':>6s}  agreement (n={len(photos)})")
    for r in rows:
        a = r.get("agreement")
        agree = (f"top1 {a['top1_equal']['mean']:.3f} {a['top1_equal']['ci95']}, top1∈top5 "
                 f"{a['fp32_top1_in_top5']['mean']:.3f}, cos {a['embedding_cosine']['mean']:.4f}") if a else ""
        ratio = f"{r['speedup_per_repeat_median']:6.2f}" if r["batch"] == 32 else " " * 6
        print(f"{r['engine']:40s} {r['batch']:5d} {r['img_per_s']:8.1f} {r['img_per_cpu_s']:9.1f} {ratio}  {agree}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
