"""int8 image encoding: when to use it, what it is calibrated on, building the quantized graph and what runs it.

Why int8: EfficientNet-Lite was designed to be quantized (ReLU6, no squeeze-excite), and the CPUs this runs on have
AVX-512 VNNI (int8 dot products in one instruction). ONNX Runtime's static QDQ quantization with per-channel
weights gives one int8 graph; OpenVINO runs it about 2x faster than ONNX Runtime fp32 at batch 32 (ONNX Runtime's
own int8 kernels about 1.8x). On 501 distinct real photos never calibrated or chosen on, the fp32 top-1 class is
always in the int8 top 5, the top-1 itself agrees on 91%, and pooled embeddings have cosine 0.994 to fp32 (numbers
and method: docs/encoders.md, bench/encoders.py). Without VNNI/AMX, int8 convolutions are emulated and gain
little, so ``auto`` keeps fp32 there.

    precision = resolve_precision()           # RECS_ENCODER_PRECISION = int8 | fp32 | auto (default fp32)
    engine = int8_engine()                    # RECS_INT8_ENGINE = auto (OpenVINO where installed) | onnxruntime
                                              #   | openvino | openvino-nncf
    recipe = int8_recipe()                    # RECS_INT8_RECIPE = ptq (default) | qat (fine-tuned for int8 first)
    quantize_encoder(fp32_onnx, out, batches)  # static QDQ, per-channel, calibrated on real photos
    quantize_nncf(fp32_onnx, xml, images, batch=32)  # NNCF's recipe (the openvino-nncf engine), OpenVINO files

``RECS_INT8_RECIPE=qat`` is an option, not the default: the weights fine-tuned for int8 first (``core.qat``) agree
with the original fp32 top-1 on 0.958 [0.940, 0.974] of the evaluation photos with ONNX Runtime and 0.950 [0.930,
0.968] with OpenVINO (cosine 0.998), against 0.910 for the shipped weights: better, still short of 0.97.

``openvino-nncf`` is an option, not the default: NNCF's mixed preset with full bias correction (the same layers fp32)
agreed with fp32's top-1 on more dev images than the QDQ recipe (0.925 against 0.888), short of the 0.97 the product
asks, and on the evaluation photos on fewer (0.897 against 0.938; docs/encoders.md, bench/encoders_nncf.py).

Calibration images are real photos that ship with the project's own dependencies (Debian wallpapers and
backgrounds, scikit-learn's sample photos) plus a share of Tux Paint clip art (what the clothes catalog holds);
the photos of the evaluation list (``bench/checksets/int8_eval.csv``) and the dev photos the recipe was chosen on
(OpenCV's and scikit-image's samples) are never among them.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from core.artifacts import atomic_path
from core.images import load_image

log = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp32", "auto")
#: How activation ranges are measured (onnxruntime.quantization's calibrators).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
#: The percentile the percentile calibrator keeps (outliers above it are clipped).
PERCENTILE = 99.999
#: What executes the int8 graph (``RECS_INT8_ENGINE``; ``auto`` = OpenVINO where the ``openvino`` package is
#: installed, which runs the same QDQ graph faster, else ONNX Runtime). ``openvino-nncf`` is OpenVINO running
#: NNCF's own quantization of the fp32 graph (``quantize_nncf``) instead of the QDQ graph.
INT8_ENGINES = ("onnxruntime", "openvino", "openvino-nncf")
#: CPU flags that give fast int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX int8 tiles).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Images per calibration run: 3 batches of 32 (min/max ranges settle on a few dozen images; not tuned further).
CALIBRATION_IMAGES = 96
#: Share of those that are Tux Paint clip art (the rest are photos).
CALIBRATION_CLIPART = 32
#: Names the quantization recipe below; a change rebuilds every cached int8 graph.
RECIPE = "qdq-u8s8-perchannel-minmax-fp32stem-v2"
#: Graph nodes kept in fp32, by name: the stem convolution and the first block (112 px, 32 channels: the most
#: sensitive layers and too narrow for int8 to pay) and the ImageNet head. On 64 held-out photos this raised the
#: pooled-embedding cosine to fp32 from 0.988 to 0.994 and top-1 agreement from 0.83 to 0.88, at no loss of speed
#: (docs/encoders.md has the variants measured).
EXCLUDE_PATTERNS: tuple[str, ...] = ("/conv_stem/", "/blocks.0/", "/classifier/", "/fc/")
#: Names NNCF's recipe (``quantize_nncf``, the ``openvino-nncf`` engine): mixed preset, full bias correction,
#: ``EXCLUDE_PATTERNS`` fp32, calibrated on ``NNCF_CALIBRATION_IMAGES``; a change rebuilds its cached graphs.
NNCF_RECIPE = "nncf-mixed-fullbc-fp32stem-v1"
NNCF_CALIBRATION_IMAGES = 288
NNCF_CALIBRATION_CLIPART = 96
#: How the weights the int8 graph is made from are obtained (``RECS_INT8_RECIPE``): ``ptq`` quantizes the shipped
#: fp32 weights as they are; ``qat`` first fine-tunes a copy of them for int8 (``core.qat``: the QDQ recipe simulated
#: in torch, distilled from the fp32 network on the calibration pool's unlabelled images; minutes once per machine),
#: then quantizes that copy with the same QDQ recipe. Measured in docs/encoders.md §2.
INT8_RECIPES = ("ptq", "qat")




def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def int8_flags() -> tuple[str, ...]:
    """The fast-int8 flags this CPU has (recorded in manifests and the encoder's spec)."""
    flags = cpu_flags()
    return tuple(f for f in INT8_FLAGS if f in flags)


def fast_int8() -> bool:
    """Whether int8 convolutions run natively here (VNNI or AMX); without them fp32 is the better default."""
    return bool(int8_flags())


#: What an unset ``RECS_ENCODER_PRECISION`` means. fp32: post-training int8 agrees with fp32's top-1 ImageNet class
#: on 0.910 [0.884, 0.934] of 501 held-out real photos (the product's bar is 0.97; no post-training recipe tried on
#: dev reached it; quantization-aware fine-tuning, ``RECS_INT8_RECIPE=qat``, reaches 0.950-0.958), so int8 is opt-in
#: (``auto`` = int8 where the CPU has VNNI/AMX) although every downstream number measured with it (fashion,
#: multimodal, own-catalog search, hashtag real photos) stayed within its tolerance.
DEFAULT_PRECISION = "fp32"


def resolve_precision(requested: Optional[str] = None) -> str:
    """``int8`` or ``fp32``: the argument, else ``RECS_ENCODER_PRECISION``, else ``DEFAULT_PRECISION``."""
    value = (requested or os.environ.get("RECS_ENCODER_PRECISION") or DEFAULT_PRECISION).strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"encoder precision must be one of {', '.join(PRECISIONS)}, not {value!r}")
    if value == "auto":
        return "int8" if fast_int8() else "fp32"
    return value


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported (it is the faster int8 engine where it is installed)."""

    return importlib.util.find_spec("openvino") is not None


def int8_engine(requested: Optional[str] = None) -> str:
    """What runs the int8 graph: the argument, else ``RECS_INT8_ENGINE``, else ``auto``.

    ``auto`` is OpenVINO where it is installed (it runs the same QDQ graph measurably faster than ONNX Runtime:
    docs/encoders.md) and ONNX Runtime otherwise; naming an engine forces it (``openvino-nncf``: NNCF's graph).
    """
    value = (requested or os.environ.get("RECS_INT8_ENGINE") or "auto").strip().lower()
    if value not in (*INT8_ENGINES, "auto"):
        raise ValueError(f"RECS_INT8_ENGINE must be one of {', '.join(INT8_ENGINES)}, auto, not {value!r}")
    if value == "auto":
        return "openvino" if openvino_available() else "onnxruntime"
    return value


def int8_recipe(requested: Optional[str] = None) -> str:
    """``ptq`` or ``qat``: the argument, else ``RECS_INT8_RECIPE``, else ``ptq`` (the shipped weights quantized as
    they are). ``qat`` applies to the QDQ graph (engines ``onnxruntime`` and ``openvino``), not to NNCF's."""
    value = (requested or os.environ.get("RECS_INT8_RECIPE") or "ptq").strip().lower()
    if value not in INT8_RECIPES:
        raise ValueError(f"RECS_INT8_RECIPE must be one of {', '.join(INT8_RECIPES)}, not {value!r}")
    return value


def convert_to_openvino(onnx_path: Path, xml_path: Path) -> dict[str, object]:
    """OpenVINO's own model files (``.xml`` + ``.bin``) for an int8 QDQ graph, so later starts skip the ONNX import.

    Both files are written under temporary names and renamed, the ``.bin`` first, so a reader never finds an
    ``.xml`` without its weights. Returns what the manifest records.
    """
    # optional: OpenVINO is installed where it runs int8 faster; ONNX Runtime runs the graph otherwise
    import openvino as ov

    save_openvino(ov.convert_model(str(onnx_path)), xml_path)
    return {"openvino": ov.__version__, "bytes": xml_path.with_suffix(".bin").stat().st_size}


def save_openvino(model: object, xml_path: Path) -> None:
    """Write an OpenVINO model's ``.xml``/``.bin`` under temporary names and rename them, the ``.bin`` first, so a
    reader never finds an ``.xml`` without its weights."""
    # optional: OpenVINO is installed where it runs int8 faster; ONNX Runtime runs the graph otherwise
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent) as work:
        tmp_xml = Path(work) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)


class OpenVINOSession:
    """An int8 graph compiled by OpenVINO, called like an ONNX Runtime session (``run(None, {"x": x})``).

    One infer request per call: a compiled model's own request is not safe to share between request threads.
    fp32 inference precision is forced so OpenVINO does not silently switch the fp32 parts to bf16.
    """

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import openvino as ov  # optional: ONNX Runtime runs the same graph where it is missing
        except ImportError as exc:
            raise RuntimeError("RECS_INT8_ENGINE=openvino needs the openvino package "
                               "(`pip install openvino==2026.4.1`), or unset it to use ONNX Runtime.") from exc
        self._model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                                "INFERENCE_PRECISION_HINT": "f32"})

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = self._model.create_infer_request()
        request.infer({0: feeds["x"]})
        return [np.asarray(request.get_output_tensor(i).data).copy() for i in range(len(self._model.outputs))]


# ----------------------------------------------------------------------------------------------
# calibration images


#: The committed list of photos the int8 accuracy check reports on (never calibrated on, never chosen on).
EVALUATION_SET = Path(__file__).resolve().parent.parent / "bench" / "checksets" / "int8_eval.csv"


def evaluation_paths() -> set[str]:
    """The ``path`` column of the evaluation list: calibration leaves these photos out."""

    if not EVALUATION_SET.is_file():
        return set()
    with open(EVALUATION_SET, newline="", encoding="utf-8") as f:
        return {row["path"] for row in csv.DictReader(f)}


def calibration_sources(limit: Optional[int] = None, clipart: Optional[int] = None) -> list[str]:
    """Names of the calibration images on this machine, deterministic: photos first, then Tux Paint stamps.

    Photos: Debian wallpapers and backgrounds (``/usr/share/backgrounds``: mate-backgrounds, lomiri-wallpapers) and
    scikit-learn's two sample photos. About 40 are installed, so the photo share is filled with seeded crops of
    them (``PATH#crop3``: a crop is a new framing and scale, as users' photos are); stamps: every k-th PNG of
    ``tuxpaint-stamps-default``. Where no photo or stamp is installed calibration refuses: random tensors give
    useless ranges.
    """
    limit = CALIBRATION_IMAGES if limit is None else limit
    clipart = CALIBRATION_CLIPART if clipart is None else clipart
    photos = [f"sklearn:{name}" for name in ("china.jpg", "flower.jpg")]
    root = Path("/usr/share/backgrounds")
    if root.is_dir():
        held_out = evaluation_paths()
        photos += sorted(str(p) for p in root.rglob("*.jpg") if p.stat().st_size > 0 and str(p) not in held_out)
    stamps_root = Path("/usr/share/tuxpaint/stamps")
    stamps = sorted(str(p) for p in stamps_root.rglob("*.png")) if stamps_root.is_dir() else []
    want_photos = limit - min(clipart, len(stamps)) if photos else 0
    photo_set = [photos[i] if i < len(photos) else f"{photos[i % len(photos)]}#crop{i}" for i in range(want_photos)]
    want = limit - len(photo_set)
    stamps = stamps[:: max(1, len(stamps) // want)][:want] if stamps and want > 0 else []
    sources = photo_set + stamps
    if len(sources) < min(8, limit):
        raise RuntimeError("int8 calibration needs real images: install mate-backgrounds or tuxpaint-stamps-default "
                           "(scripts/system-packages.sh), or set RECS_ENCODER_PRECISION=fp32.")
    return sources


def load_calibration_image(source: str):
    """One calibration image as a PIL RGB image (``sklearn:NAME`` or a file path, optionally ``#cropK``)."""
    source, _, crop = source.partition("#crop")
    if source.startswith("sklearn:"):
        # scikit-learn loads in about a second; only its sample images are read here
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image(source.split(":", 1)[1])).convert("RGB")
    elif source.lower().endswith((".jpg", ".jpeg")):
        with Image.open(source) as raw:
            raw.draft("RGB", (640, 640))  # wallpapers are 2-6k px wide: let JPEG decode at a fraction of the size
            img = raw.convert("RGB")
    else:  # clip art: transparency flattened exactly as encoding does it
        img = load_image(source).convert("RGB")
    if crop:
        rng = np.random.default_rng(int(crop))
        w, h = img.size
        side = rng.uniform(0.35, 0.8)
        cw, ch = max(16, int(w * side)), max(16, int(h * side))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((left, top, left + cw, top + ch))
    return img


def calibration_batches(preprocess: Callable[[object], np.ndarray], sources: Sequence[str],
                        batch: int) -> list[np.ndarray]:
    """The calibration images preprocessed exactly as encoding does, in static-shape batches (last one padded
    by repeating images, never with blank tensors)."""
    arrays = [preprocess(load_calibration_image(s)) for s in sources]
    out = []
    for start in range(0, len(arrays), batch):
        chunk = arrays[start : start + batch]
        chunk += arrays[: batch - len(chunk)] if len(chunk) < batch else []
        out.append(np.stack(chunk[:batch]).astype(np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# quantization


class _Reader:
    """ONNX Runtime's calibration interface over preprocessed batches."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str = "x") -> None:
        self._it: Iterator[np.ndarray] = iter(batches)
        self._name = input_name

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        nxt = next(self._it, None)
        return None if nxt is None else {self._name: nxt}


def quantize_encoder(fp32_path: Path, out_path: Path, batches: Sequence[np.ndarray], *,
                     activation: str = "u8", exclude: Sequence[str] = EXCLUDE_PATTERNS, method: str = "minmax",
                     symmetric: bool = False, calibration_cache: Optional[Path] = None,
                     op_types: Optional[Sequence[str]] = None, depthwise_fp32: bool = False) -> dict[str, object]:
    """Static QDQ quantization of an exported encoder: per-channel int8 weights, ``activation`` u8 or s8.

    The graph is pre-processed (shape inference, fusions) first, as ONNX Runtime recommends, then calibrated on
    ``batches`` with ``method`` (minmax, percentile or entropy ranges; ``symmetric`` centres activation ranges on
    zero). ``op_types`` limits which operators are quantized (``("Conv", "Gemm")`` keeps the residual additions in
    fp32); ``depthwise_fp32`` keeps every depthwise convolution fp32. ``calibration_cache`` keeps the measured ranges in a JSON file, so variants that differ only in which
    nodes stay fp32 are calibrated once. Written atomically; returns what the manifest records.
    """
    import onnx  # onnx and the quantizer load only to build an int8 graph (once per machine)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not batches and calibration_cache is None:
        raise ValueError("calibration needs at least one batch")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}")
    act = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[activation]
    calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}[method]
    extra = {"ActivationSymmetric": symmetric}
    if method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as work, atomic_path(out_path) as tmp:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        kept = [n.name for n in nodes if any(p in n.name for p in exclude)
                or (depthwise_fp32 and n.op_type == "Conv" and _groups(n) > 1)]
        quantize_static(
            str(pre), str(tmp), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=act, weight_type=QuantType.QInt8, calibrate_method=calib,
            nodes_to_exclude=kept, extra_options=extra, op_types_to_quantize=list(op_types) if op_types else None,
            calibration_cache_path=str(calibration_cache) if calibration_cache else None,
        )
    return {"format": "QDQ", "per_channel": True, "activations": activation, "weights": "s8",
            "calibration_method": method, "activation_symmetric": symmetric, "fp32_patterns": list(exclude),
            "fp32_nodes": len(kept), "op_types": list(op_types) if op_types else "all",
            "depthwise_fp32": depthwise_fp32}


def _groups(node) -> int:
    """A Conv node's ``group`` attribute (1 when absent)."""
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def quantize_nncf(fp32_path: Path, xml_path: Path, images: Sequence[np.ndarray], *, batch: int,
                  ignored: Sequence[str] = EXCLUDE_PATTERNS, mixed: bool = True,
                  full_bias_correction: bool = True) -> dict[str, object]:
    """NNCF's post-training int8 quantization of an fp32 export, straight into OpenVINO's model files.

    ``images`` are single preprocessed calibration images (NNCF's range statistics are per sample); the mixed preset
    (symmetric weights, asymmetric activations) and full bias correction, each layer whose name contains one of
    ``ignored`` kept fp32. The model is quantized with a dynamic batch and saved at the static ``batch`` the encoder
    runs. Both files are written under temporary names and renamed (``.bin`` first). Returns what the manifest records.
    """
    # NNCF and OpenVINO load only to build this graph (once per machine); ONNX Runtime serves fp32 without them
    import nncf
    import openvino as ov

    if not images:
        raise ValueError("calibration needs at least one image")
    model = ov.convert_model(str(fp32_path))
    size = list(model.input(0).get_partial_shape().to_shape())[1:]
    model.reshape([-1, *size])
    scope = nncf.IgnoredScope(patterns=[f".*{p.replace('.', '[.]')}.*" for p in ignored], validate=False)
    preset = nncf.QuantizationPreset.MIXED if mixed else nncf.QuantizationPreset.PERFORMANCE
    quantized = nncf.quantize(model, nncf.Dataset(list(images), lambda a: a[None]), preset=preset,
                              subset_size=len(images), fast_bias_correction=not full_bias_correction,
                              ignored_scope=scope)
    quantized.reshape([batch, *size])
    save_openvino(quantized, xml_path)
    return {"quantizer": "nncf", "nncf": nncf.__version__, "openvino": ov.__version__,
            "preset": "mixed" if mixed else "performance", "full_bias_correction": full_bias_correction,
            "fp32_patterns": list(ignored), "calibration_images": len(images),
            "bytes": xml_path.with_suffix(".bin").stat().st_size}
