"""The photo gate: does a picture look like the decoder's training images, or like a real photograph?

The fused hashtag list trusts the learned decoder only on pictures like the ones it learned from (by default
Tux Paint clip art). On a real photo its words (#cartoon, #mammal, #seasonal) are the clip-art corpus talking,
so fusion gives them no weight there. Deciding "like the training images" used to mean the cosine similarity
to the nearest training image; that signal separates Tux Paint validation images from the real-photo dev set
with ROC AUC 0.95 and lets about half of the dev photos through as clip-art-like.

``PhotoGate`` is a logistic regression on the encoder's pooled grid (mean and max over the 7 × 7 regions,
standardised): the decoder's training split is one class, the real-photo dev set (``bench/checksets/realphotos_dev.csv``,
photos that ship in PyPI and Debian packages) the other. Its probability is the gate score the ``FusionRule``
thresholds. Out-of-fold on the dev photos it reaches ROC AUC 0.99 against the validation images
(``python -m hashtag tune-fusion``, ``bench/results/hashtag_fusion_tuning.json``).

The dev photos are also where the fusion rule is chosen, so a dev photo is only ever scored by a gate that did
not see it (``out_of_fold``): the rule is chosen on honest gate scores, and ``python -m hashtag evaluate``
reports the dev table the same way. The validation and test splits are never among the gate's examples (only
the training split is), and neither are the held-out check photos.

The gate is part of the trained model: ``hashtag train`` fits it when it evaluates the finished model
(otherwise the first fused prediction does; about a second on top of encoding 45 photos) and writes
``photo_gate.npz`` with its manifest ``photo_gate.json`` beside the checkpoint, keyed by the checkpoint, C and
the photos it saw; stale or damaged files are refitted on first use. Without the dev photos (their packages
not installed) there is no gate and fusion falls back to the similarity rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from core.artifacts import ArtifactError, checksum_strings, load_arrays, save_arrays
from core.locks import build_lock

log = logging.getLogger(__name__)

GATE_STEM = "photo_gate"
KIND = "hashtag-photo-gate"
#: Deleting the files also works: the service refits a missing or stale gate on first use.
REBUILD_HINT = "python -m hashtag train"
#: Inverse L2 strength of the logistic regression; chosen in ``tune_gate`` (out-of-fold ROC AUC on the dev photos
#: against the validation split: 0.9915, flat within 0.002 from 0.0003 to 0.1; ties go to the stronger regularisation).
GATE_C = 0.003
#: Cross-fitting folds over the dev photos (each photo is scored by a gate fitted without its fold).
FOLDS = 5
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.1)


def gate_features(grids: np.ndarray) -> np.ndarray:
    """(N, C, h, w) grids → (N, 2C): the mean and the max over regions (flat clip-art colour shows in both)."""
    g = np.asarray(grids, np.float32)
    if g.ndim != 4:
        raise ValueError(f"expected (N, C, h, w) grids, got shape {g.shape}")
    return np.concatenate([g.mean(axis=(2, 3)), g.max(axis=(2, 3))], axis=1)


@dataclass(frozen=True)
class PhotoGate:
    """P(a picture is like the training images, not a real photo) from its grid: standardise, then a linear score."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    key: str = ""
    photos: tuple[str, ...] = ()

    @classmethod
    def fit(cls, training: np.ndarray, photos: np.ndarray, *, c: float = GATE_C, key: str = "",
            photo_ids: Sequence[str] = ()) -> "PhotoGate":
        """Fit on the training images' grids (class 1) and the real photos' grids (class 0), classes balanced.

        Balanced, because the photos are a few dozen against hundreds of training images: unweighted, the
        regression would call everything clip art.
        """
        # sklearn (with scipy, about 1,400 modules) loads only to fit a gate; a saved gate is applied with numpy
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if len(training) == 0 or len(photos) == 0:
            raise ValueError("the photo gate needs both training images and real photos")
        x = np.concatenate([gate_features(training), gate_features(photos)])
        y = np.r_[np.ones(len(training)), np.zeros(len(photos))]
        scaler = StandardScaler().fit(x)
        reg = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(scaler.transform(x), y)
        return cls(scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32),
                   reg.coef_[0].astype(np.float32), float(reg.intercept_[0]), key, tuple(photo_ids))

    def __call__(self, grids: np.ndarray) -> np.ndarray:
        """(N,) gate scores in [0, 1]: near 1 for pictures like the training images, near 0 for real photos."""
        if len(grids) == 0:
            return np.zeros(0, np.float32)
        z = ((gate_features(grids) - self.mean) / self.scale) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)

    # -- the artifact ------------------------------------------------------------------------------
    def save(self, folder: Path, manifest: Optional[dict] = None) -> Path:
        """Write ``photo_gate.npz`` and its manifest ``photo_gate.json`` (plain arrays: no pickle), atomically."""
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef,
                  "intercept": np.array([self.intercept], np.float32)}
        info = {"kind": KIND, "schema": 1, "key": self.key, "photos": list(self.photos),
                **(manifest or {})}
        return save_arrays(Path(folder) / GATE_STEM, arrays, info)

    @classmethod
    def load(cls, folder: Path, key: Optional[str] = None) -> "PhotoGate":
        """Read a saved gate (``key``: the one it must have been made for); damaged or stale is an ``ArtifactError``."""
        arrays, manifest = load_arrays(Path(folder) / GATE_STEM, kind=KIND,
                                       expect={"key": key} if key is not None else None, hint=REBUILD_HINT)
        try:
            gate = cls(arrays["mean"], arrays["scale"], arrays["coef"], float(arrays["intercept"][0]),
                       str(manifest["key"]), tuple(manifest.get("photos", ())))
        except (KeyError, IndexError, TypeError) as exc:
            raise ArtifactError(f"The photo gate in {folder} lacks {exc}. Rebuild it with `{REBUILD_HINT}`.") from exc
        if not (gate.mean.shape == gate.scale.shape == gate.coef.shape):
            raise ArtifactError(f"The photo gate in {folder} has inconsistent shapes. "
                                f"Rebuild it with `{REBUILD_HINT}`.")
        return gate


def transparency(image) -> float:
    """The share of a picture's pixels that were see-through (``core.images`` records it when it composites an
    alpha channel onto white): 99 % of Tux Paint's stamps are cut-outs on a transparent background, none of the
    real-photo dev set is. 0 for a picture without an alpha channel."""
    return float(getattr(image, "info", {}).get("transparent", 0.0))


def gate_key(model_key: str, photo_ids: Sequence[str], c: float) -> str:
    """What a saved gate was made from: the checkpoint, the photos and C (a change in any makes it stale)."""
    return checksum_strings([model_key, f"C={c}", *photo_ids])


def out_of_fold(training: np.ndarray, photos: np.ndarray, *, c: float = GATE_C, folds: int = FOLDS,
                seed: int = 0) -> np.ndarray:
    """(len(photos),) each photo's gate score from a gate fitted without it (``folds``-fold cross-fitting).

    The photos are the gate's own negatives, so scoring them with the full gate would call every one a photo
    with more confidence than any new photo gets; the fusion rule is tuned and the dev table reported on
    these scores instead.
    """
    # sklearn (with scipy, about 1,400 modules) loads only to fit gates, not when the app imports the tab
    from sklearn.model_selection import KFold

    out = np.zeros(len(photos), np.float32)
    if len(photos) < 2:
        return out
    for fit_rows, score_rows in KFold(min(folds, len(photos)), shuffle=True, random_state=seed).split(photos):
        out[score_rows] = PhotoGate.fit(training, photos[fit_rows], c=c)(photos[score_rows])
    return out


def tune_gate(training: np.ndarray, validation: np.ndarray, photos: np.ndarray,
              grid: Sequence[float] = C_GRID) -> dict:
    """Choose C by out-of-fold ROC AUC: validation images (never fitted) against dev photos (cross-fitted)."""
    # sklearn (with scipy, about 1,400 modules) loads only when tuning, not when the app imports the tab
    from sklearn.metrics import roc_auc_score

    rows = []
    for c in grid:
        oof = out_of_fold(training, photos, c=c)
        val = PhotoGate.fit(training, photos, c=c)(validation)
        y = np.r_[np.ones(len(val)), np.zeros(len(oof))]
        rows.append({"C": c, "auc": round(float(roc_auc_score(y, np.r_[val, oof])), 4),
                     "dev_photos_above_0.5": int((oof > 0.5).sum()), "val_below_0.5": int((val < 0.5).sum())})
    best = max(rows, key=lambda r: (r["auc"], -r["C"]))
    return {"chosen_C": best["C"], "grid": rows, "dev_photos": len(photos), "val_images": len(validation),
            "training_images": len(training)}


def load_or_fit(folder: Path, model_key: str, training_grids: Callable[[], np.ndarray], photo_ids: Sequence[str],
                photo_grids: Callable[[], np.ndarray], *, c: float = GATE_C) -> PhotoGate:
    """The saved gate if it matches this checkpoint and these photos, else a freshly fitted (and saved) one.

    ``training_grids``/``photo_grids``: callables giving the two classes' grids, called only when fitting (the
    training grids are hundreds of megabytes in float32 and the photos take seconds to encode; a saved gate
    needs neither). Fitting runs under a build lock of this model folder, so two processes never write the
    files at once.
    """
    key = gate_key(model_key, photo_ids, c)
    folder = Path(folder)
    with build_lock(f"hashtag-gate-{checksum_strings([str(folder.resolve())])[:12]}"):
        if (folder / f"{GATE_STEM}.json").is_file():
            try:
                return PhotoGate.load(folder, key)
            except ArtifactError as exc:
                log.info("refitting the photo gate: %s", exc)
        training = training_grids()
        gate = PhotoGate.fit(training, photo_grids(), c=c, key=key, photo_ids=photo_ids)
        gate.save(folder, {"model_key": model_key, "C": c, "training_images": len(training)})
        return gate
