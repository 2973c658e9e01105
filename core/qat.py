"""Quantization-aware fine-tuning of the image encoder: the fp32 network learns to survive int8, distilled from itself.

Why: post-training int8 of EfficientNet-Lite0 keeps the fp32 top-1 ImageNet class within its top 5 on every real
photo measured, but agrees on the top-1 itself on only about 91% (docs/encoders.md §2); the loss is spread over the
whole network, so keeping single layers fp32 does not recover it. Here the weights move a little so that the int8
graph ONNX Runtime builds from them behaves like the original fp32 model:

    history = distill(student, images, calib, steps=120)  # installs QuantSim (ORT's QDQ recipe simulated in torch,
                                                          # straight-through), distils from a frozen fp32 copy of
                                                          # the student, and removes the simulation afterwards
    fine_tune_for_int8(module, preprocess, path)          # the product's recipe (QAT_SETTINGS), saved as safetensors

Measured (docs/encoders.md §2): the int8 graph of the weights fine-tuned by ``QAT_SETTINGS`` agrees with the original
fp32 top-1 on 0.958 [0.940, 0.974] of the 501 evaluation photos with ONNX Runtime (0.950 with OpenVINO), against
0.910 for the shipped weights quantized as they are.

What is simulated (``QuantSim``), matching the graph ``core.int8.quantize_encoder`` writes: every Conv weight not
kept fp32 by ``EXCLUDE_PATTERNS`` is rounded per output channel to symmetric int8 ([-127, 127], scale max|w|/127;
per-channel symmetric rounding commutes with folding BatchNorm into the convolution, so the unfolded weight lands on
the grid ORT uses after folding); the tensors ORT quantizes (every quantized convolution's input, each block's
projection output and input, so both sides of the residual addition; the grid and its average) are rounded to uint8
with asymmetric min/max ranges measured on calibration images by the fp32 network, as ORT's minmax calibrator does.
BatchNorm statistics stay frozen (eval mode) so folding stays exact.

Training data are unlabelled images only (``TrainingImages``: ``core.int8``'s calibration pool of Debian wallpapers,
scikit-learn's photos and Tux Paint stamps, with random crops, flips and colour changes), never the evaluation list
or the dev photos (``assert_disjoint``). Loss: KL divergence between the teacher's and the student's ImageNet
distributions at ``temperature`` plus ``embedding_weight`` × (1 − cosine) of the max-pooled grid, the vector the
product searches with.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from safetensors.torch import save_file
from torch.nn.utils import parametrize

from core import int8
from core.artifacts import atomic_path
from core.progress import ProgressFn, track

log = logging.getLogger(__name__)

#: The product's fine-tuning (``RECS_INT8_RECIPE=qat``), chosen on dev photos (docs/encoders.md §2): Adam at this
#: learning rate for this many steps of batch 16, temperature 1, ranges re-measured every 100 steps, seed 0, on the
#: calibration pool's distinct images (``TRAIN_IMAGES`` names, of which ``TRAIN_CLIPART`` stamps). A change here
#: (it names the recipe) rebuilds the fine-tuned weights.
QAT_SETTINGS = {"lr": 5e-6, "steps": 120, "batch": 16, "temperature": 1.0, "embedding_weight": 1.0,
                "recalibrate_every": 100, "seed": 0}
TRAIN_IMAGES, TRAIN_CLIPART = 400, 150
QAT_RECIPE = "qat-kd-lr{lr:g}-s{steps}-b{batch}-t{temperature:g}-v1".format(**QAT_SETTINGS)

#: Weight grid: symmetric signed int8 as ONNX Runtime quantizes weights (qmin = -127, not -128).
WEIGHT_QMAX = 127
#: Activation grid: unsigned 8 bits with a zero point.
ACT_QMIN, ACT_QMAX = 0, 255


def onnx_scope(module_name: str) -> str:
    """The node-name scope torch's ONNX export gives a timm module (``blocks.1.0.conv_pw`` →
    ``/blocks/blocks.1/blocks.1.0/conv_pw/``), so ``EXCLUDE_PATTERNS`` select the same layers here as in the graph."""
    scopes: list[str] = []
    for part in module_name.split("."):
        scopes.append(f"{scopes[-1]}.{part}" if part.isdigit() and scopes else part)
    return "/" + "/".join(scopes) + "/"


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale of symmetric int8 weights: max |w| / 127 (ONNX Runtime's ``compute_scale_zp``)."""
    absmax = weight.detach().abs().flatten(1).amax(dim=1)
    return torch.where(absmax > 0, absmax / WEIGHT_QMAX, torch.ones_like(absmax)).float()


def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight rounded to per-channel symmetric int8 and back (gradients pass straight through)."""
    scale = weight_scale(weight)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of a uint8 asymmetric range, as ONNX Runtime computes them (zero always representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / (ACT_QMAX - ACT_QMIN)
    if scale <= 0:
        return 1.0, 0
    return float(np.float32(scale)), int(np.clip(round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))


class _WeightFakeQuant(torch.nn.Module):
    """A parametrization: the conv weight as the int8 graph will see it, while the simulation is on."""

    def __init__(self, sim: "QuantSim") -> None:
        super().__init__()
        self._sim = [sim]  # a list, so the simulation is not registered as a submodule of every conv

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(weight) if self._sim[0].mode == "quant" else weight


class QuantSim:
    """Hooks that make a timm EfficientNet-Lite (``core.encoders._TimmFeatures``) compute what the QDQ graph computes.

    ``mode``: ``off`` (plain fp32), ``observe`` (fp32, recording each quantized tensor's min/max) or ``quant`` (weights
    and recorded tensors fake-quantized). ``exclude`` are ONNX node-name patterns kept fp32.
    """

    def __init__(self, module: torch.nn.Module, exclude: Sequence[str] = int8.EXCLUDE_PATTERNS) -> None:
        self.module = module
        self.mode = "off"
        self.ranges: dict[str, list[float]] = {}
        self.quantized_convs: list[str] = []
        self._handles: list = []
        net = module.model if hasattr(module, "model") else module

        def kept(name: str) -> bool:
            return any(p in onnx_scope(name) for p in exclude)

        for name, sub in net.named_modules():
            if isinstance(sub, torch.nn.Conv2d) and not kept(name):
                parametrize.register_parametrization(sub, "weight", _WeightFakeQuant(self))
                self._handles.append(sub.register_forward_pre_hook(self._pre(f"{name}:in")))
                self.quantized_convs.append(name)
            elif name.count(".") == 2 and name.startswith("blocks.") and not kept(name):
                # a block's input is also its residual shortcut: ORT quantizes it once for both uses
                self._handles.append(sub.register_forward_pre_hook(self._pre(f"{name}:in")))
                if hasattr(sub, "bn3"):  # the projection's output, the residual addition's other input
                    self._handles.append(sub.bn3.register_forward_hook(self._post(f"{name}.bn3:out")))
        if "conv_head" in self.quantized_convs:  # the grid (a graph output) and its average are quantized too
            self._handles.append(net.bn2.register_forward_hook(self._post("bn2:out")))
            self._handles.append(net.global_pool.register_forward_hook(self._post("global_pool:out")))

    def _fq(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "observe":
            lo, hi = float(x.detach().min()), float(x.detach().max())
            old = self.ranges.get(key)
            self.ranges[key] = [min(lo, old[0]), max(hi, old[1])] if old else [lo, hi]
        elif self.mode == "quant":
            scale, zero = activation_qparams(*self.ranges[key])
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, ACT_QMIN, ACT_QMAX)
        return x

    def _pre(self, key: str) -> Callable:
        return lambda _module, args: (self._fq(key, args[0]), *args[1:])

    def _post(self, key: str) -> Callable:
        return lambda _module, _args, out: self._fq(key, out)

    @torch.no_grad()
    def calibrate(self, batches: Sequence[np.ndarray]) -> None:
        """Measure every quantized tensor's min/max with the fp32 network on ``batches`` (ORT's minmax ranges)."""
        self.ranges.clear()
        self.mode = "observe"
        try:
            for b in batches:
                self.module(torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))
        finally:
            self.mode = "off"

    def remove(self) -> None:
        """Take the hooks and weight rounding off, leaving the trained fp32 weights in place."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        net = self.module.model if hasattr(self.module, "model") else self.module
        for name in self.quantized_convs:
            parametrize.remove_parametrizations(net.get_submodule(name), "weight", leave_parametrized=False)
        self.mode = "off"


# ----------------------------------------------------------------------------------------------
# unlabelled training images


def _base(source: str) -> str:
    return source.partition("#crop")[0]


def assert_disjoint(sources: Sequence[str], forbidden: Sequence[str]) -> None:
    """Refuse training sources that are (or come from) a forbidden photo: the evaluation list or the dev photos.

    ``forbidden`` entries may be plain paths, names or package specs (``deb:PKG!usr/share/x.jpg``): a source matches
    when its file path equals one or ends with the path inside the package.
    """
    members = {f.rsplit("!", 1)[-1].lstrip("/") for f in forbidden}
    plain = set(forbidden)
    for s in sources:
        base = _base(s)
        if base in plain or base.lstrip("/") in members or any(base.endswith("/" + m) for m in members if "/" in m):
            raise ValueError(f"training image {s} is an evaluation or dev photo; it must stay held out")


class TrainingImages:
    """Unlabelled images for distillation, loaded once, served as random crops, flips and colour changes.

    ``sources`` are names ``core.int8.load_calibration_image`` reads (distinct photos and stamps are loaded once each;
    the ``#cropK`` framings of the calibration pool are left to the random crops here).
    """

    def __init__(self, sources: Sequence[str], preprocess: Callable[[Image.Image], np.ndarray],
                 max_side: int = 640) -> None:
        self.sources = sorted({_base(s) for s in sources})
        self.preprocess = preprocess
        self.images = []
        for s in self.sources:
            img = int8.load_calibration_image(s)
            img.thumbnail((max_side, max_side))
            self.images.append(img)

    def sample(self, rng: np.random.Generator) -> Image.Image:
        """One random view: 25-100% of the area at aspect 3:4-4:3, mirrored half the time, ±20% brightness,
        contrast and saturation."""
        img = self.images[int(rng.integers(len(self.images)))]
        w, h = img.size
        area, aspect = rng.uniform(0.25, 1.0), math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = max(16, min(w, round(math.sqrt(area * w * h * aspect))))
        ch = max(16, min(h, round(math.sqrt(area * w * h / aspect))))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        view = img.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            view = enhance(view).enhance(float(rng.uniform(0.8, 1.2)))
        return view

    def batch(self, rng: np.random.Generator, n: int, mixup: float = 0.0) -> np.ndarray:
        """``n`` random views, preprocessed exactly as encoding does.

        With ``mixup`` > 0 each view is blended with another view of the batch, weight λ ~ Beta(mixup, mixup): with
        few distinct training photos, blends show the student inputs between them, where teacher and student must
        also agree ("function matching", Beyer et al. 2022). Preprocessing is affine, so blending preprocessed
        views equals preprocessing the blended pixels.
        """
        x = np.stack([self.preprocess(self.sample(rng)) for _ in range(n)]).astype(np.float32)
        if mixup > 0:
            lam = rng.beta(mixup, mixup, size=(n, 1, 1, 1)).astype(np.float32)
            x = lam * x + (1 - lam) * x[rng.permutation(n)]
        return x


# ----------------------------------------------------------------------------------------------
# distillation


def distillation_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, s_grid: torch.Tensor, t_grid: torch.Tensor,
                      temperature: float, embedding_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(teacher ‖ student) of the ImageNet distributions at ``temperature`` (scaled by T², as in Hinton et al.)
    plus ``embedding_weight`` × mean (1 − cosine) of the max-pooled grids; also the two parts for the log."""
    t = temperature
    kl = F.kl_div(F.log_softmax(s_logits / t, 1), F.log_softmax(t_logits / t, 1), log_target=True,
                  reduction="batchmean") * t * t
    cos = F.cosine_similarity(s_grid.amax(dim=(2, 3)), t_grid.amax(dim=(2, 3)), dim=1).mean()
    loss = kl + embedding_weight * (1 - cos)
    return loss, {"kl": float(kl.detach()), "cosine": float(cos.detach())}


def distill(student: torch.nn.Module, images: TrainingImages, calib: Sequence[np.ndarray], *, steps: int,
            lr: float = 2e-5, batch: int = 16, temperature: float = 1.0, embedding_weight: float = 1.0,
            mixup: float = 0.0, exclude: Sequence[str] = int8.EXCLUDE_PATTERNS, recalibrate_every: int = 50,
            seed: int = 0, log_every: int = 10, on_step: Optional[Callable[[int, torch.nn.Module], None]] = None,
            progress: Optional[ProgressFn] = None) -> list[dict]:
    """Fine-tune ``student`` in place so its int8 simulation matches a frozen fp32 copy of it; returns the loss log.

    Activation ranges are re-measured on ``calib`` every ``recalibrate_every`` steps (the weights move, and ORT
    calibrates the final weights). A non-finite loss stops training with ``FloatingPointError`` before the weights
    are touched. ``on_step(step, student)`` runs after each step with the simulation off (for checkpoints).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    student.eval()  # frozen BatchNorm statistics (and no dropout): folding stays exact
    sim = QuantSim(student, exclude)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    history: list[dict] = []
    try:
        for step in track(range(1, steps + 1), desc="fine-tuning the encoder for int8", progress=progress,
                          unit="step"):
            if (step - 1) % recalibrate_every == 0:
                sim.calibrate(calib)
            x = torch.from_numpy(images.batch(rng, batch, mixup))
            with torch.no_grad():
                t_grid, t_logits = teacher(x)
            sim.mode = "quant"
            s_grid, s_logits = student(x)
            loss, parts = distillation_loss(s_logits, t_logits, s_grid, t_grid, temperature, embedding_weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"distillation loss is {float(loss.detach())} at step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sim.mode = "off"
            if step % log_every == 0 or step in (1, steps):
                history.append({"step": step, "loss": round(float(loss.detach()), 5), **{k: round(v, 5) for k, v in
                                                                                 parts.items()}})
                log.info("QAT step %d/%d: loss %.5f (KL %.5f, cosine %.5f)", step, steps, float(loss.detach()), parts["kl"],
                         parts["cosine"])
            if on_step is not None:
                on_step(step, student)
    finally:
        sim.remove()
    return history


def plain_state_dict(state: dict) -> dict:
    """A state dict in timm's own names: a checkpoint taken while the simulation is installed stores each quantized
    conv's trainable weight as ``....parametrizations.weight.original``."""
    return {k.replace(".parametrizations.weight.original", ".weight"): v.detach().contiguous() for k, v in state.items()}


def save_weights(module: torch.nn.Module, path: Path) -> None:
    """The fine-tuned state dict (timm's names) as safetensors, written under a temporary name and renamed."""
    net = module.model if hasattr(module, "model") else module
    state = plain_state_dict(net.state_dict())
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def fine_tune_for_int8(module: torch.nn.Module, preprocess: Callable[[Image.Image], np.ndarray], path: Path,
                       progress: Optional[ProgressFn] = None) -> dict[str, object]:
    """The product's QAT recipe (``QAT_SETTINGS``) applied to ``module`` in place, its weights saved to ``path``
    (safetensors, atomically); returns what the manifest records (settings, training images, loss log)."""
    sources = int8.calibration_sources(limit=TRAIN_IMAGES, clipart=TRAIN_CLIPART)
    assert_disjoint(sources, sorted(int8.evaluation_paths()))
    images = TrainingImages(sources, preprocess)
    calib = int8.calibration_batches(preprocess, int8.calibration_sources(), 32)
    history = distill(module, images, calib, progress=progress, **QAT_SETTINGS)
    save_weights(module, path)
    return {"recipe": QAT_RECIPE, "settings": QAT_SETTINGS, "fp32_patterns": list(int8.EXCLUDE_PATTERNS),
            "training_images": images.sources, "calibration_images": len(calib) * 32, "history": history}
