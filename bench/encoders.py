"""Encoder throughput, side by side in one run: images/s at batch 1 and 32, 224 px, on this machine.

    python bench/encoders.py [--repeats 5] [--out bench/results/encoders.json]

Rows: EfficientNet-Lite0 and ResNet-50, each the plain way (fp32 eager PyTorch, one image at a
time), fp32 eager batched, bf16 autocast + channels_last, and ONNX Runtime fp32 (our default).
ResNet-50 runs with random weights (its ImageNet weights do not ship offline; speed does not depend
on them). Agreement: share of real images (Tux Paint stamps + scikit-image photos) whose fp32-eager
top-1 class is in the fast runtime's top 5, and the mean top-5 set overlap. Medians of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core.encoders import ImageEncoder  # noqa: E402


def real_images(n: int = 64) -> list:
    from PIL import Image
    from skimage import data

    from core.datasets import load_tuxpaint
    from core.images import load_any

    photos = [Image.fromarray(f()) for f in (data.chelsea, data.coffee, data.astronaut, data.rocket)]
    stamps = [s for s in load_tuxpaint() if s.image_path.suffix == ".png"][:: 13][: n - len(photos)]
    return photos + [load_any(s.image_path) for s in stamps]


def throughput(fn, batch: np.ndarray, repeats: int) -> float:
    fn(batch)  # warm-up (and ONNX export on first use)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def per_image(fn):
    return lambda batch: [fn(batch[i : i + 1]) for i in range(len(batch))]


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    ref_top1 = reference.argmax(1)
    top5 = np.argsort(-other, 1)[:, :5]
    ref5 = np.argsort(-reference, 1)[:, :5]
    return {
        "top1_in_top5": float(np.mean([r in t for r, t in zip(ref_top1, top5)])),
        "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref5, top5)])),
        "top1_equal": float(np.mean(ref_top1 == other.argmax(1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/encoders.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    images = real_images()
    rows = []
    for backbone in ("efficientnet_lite0", "resnet50"):
        weights = None
        if backbone == "resnet50":
            import torchvision

            weights = "/tmp/bench-resnet50-random.pth"
            torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
        encoders = {rt: ImageEncoder(backbone, runtime=rt, weights=weights) for rt in ("torch", "bf16", "onnx")}
        x = np.stack([encoders["torch"].preprocess(im) for im in images])
        x32 = x[:32]
        logits = {rt: enc._run(x, want_logits=True)[1] for rt, enc in encoders.items()}
        plain = lambda b, e=encoders["torch"]: e._run(b)  # noqa: E731
        eager_module = encoders["torch"].module.to(memory_format=torch.contiguous_format)

        def one_by_one(b, m=eager_module):
            with torch.no_grad():
                return m(torch.from_numpy(b))

        rows.append({"backbone": backbone, "runtime": "fp32 eager, per image", "batch": 1,
                     "img_per_s": throughput(per_image(one_by_one), x[:8], args.repeats)})
        rows.append({"backbone": backbone, "runtime": "fp32 eager, per image", "batch": 32,
                     "img_per_s": throughput(per_image(one_by_one), x32, max(1, args.repeats // 2))})
        for rt, label in (("torch", "fp32 eager channels_last"), ("bf16", "bf16 autocast channels_last"), ("onnx", "ONNX Runtime fp32 (default)")):
            enc = encoders[rt]
            row = {"backbone": backbone, "runtime": label}
            rows.append({**row, "batch": 1, "img_per_s": throughput(lambda b, e=enc: e._run(b), x[:1], args.repeats * 4)})
            rows.append({**row, "batch": 32, "img_per_s": throughput(lambda b, e=enc: e._run(b), x32, args.repeats),
                         **({} if rt == "torch" else agreement(logits["torch"], logits[rt]))})
        del plain
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_avg": os.getloadavg()},
        "images_for_agreement": len(images),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'backbone':20s} {'runtime':32s} {'batch':>5s} {'img/s':>8s}  agreement")
    for r in rows:
        agree = f"top1∈top5 {r['top1_in_top5']:.3f}, top5 overlap {r['top5_overlap']:.3f}" if "top1_in_top5" in r else ""
        print(f"{r['backbone']:20s} {r['runtime']:32s} {r['batch']:5d} {r['img_per_s']:8.1f}  {agree}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
