"""Train every music model for one dataset into ``models/music/<dataset>/`` and load them back.

Why a bundle: the tab and the CLI need the three models of one dataset together (MF for
personal picks, genre for new listeners and thin histories, popularity as the fallback), plus
labels and the evaluation results, all from ``models/`` so the product never reads dataset files
at serving time. ``bundle.json`` records the dataset checksum: a fresh bundle is not retrained
unless forced, and a bundle whose files disagree with it raises ``ArtifactError``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from core.artifacts import ArtifactError, read_json, write_json
from core.training import check_finite_arrays
from music.mf import data as mfdata
from music.data import LABELS, MusicDataset, load_dataset, user_holdout_split
from music.data.dataset import check_trainable
from music.mf.baselines import GenreRecommender, Popularity
from music.mf.evaluate import results_path, val_ndcg
from music.mf.model import CatalogRecommender, KerasMF, mf_config
from music.mf.spark import fit_spark_mf

log = logging.getLogger(__name__)

#: Bump when the bundle layout or training recipe changes: older bundles are then retrained.
SCHEMA = 1

def bundle_dir(dataset: str) -> Path:
    return mfdata.music_dir() / dataset


@dataclass
class Bundle:
    """The trained models of one dataset, as the UI and CLI use them."""

    dataset: str
    manifest: dict[str, Any]
    models: dict[str, CatalogRecommender] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.manifest.get("label", LABELS.get(self.dataset, self.dataset)))

    @property
    def mf(self) -> CatalogRecommender:
        return self.models["mf"]

    @property
    def genre(self) -> GenreRecommender:
        return self.models["genre"]  # type: ignore[return-value]

    @property
    def popularity(self) -> CatalogRecommender:
        return self.models["popularity"]


def is_fresh(dataset: str, checksum: str, engine: str = "keras") -> bool:
    """True if a complete bundle built from data with this checksum, by this schema and engine, exists."""
    try:
        m = read_json(bundle_dir(dataset) / "bundle.json")
    except ArtifactError:
        return False
    files_ok = all((bundle_dir(dataset) / f"{n}.json").is_file() for n in m.get("models", []))
    return m.get("schema") == SCHEMA and m.get("dataset_checksum") == checksum and files_ok \
        and m.get("engine", "keras") == engine


def train(
    dataset: str = "simulated",
    path: str | Path | None = None,
    *,
    force: bool = False,
    data: MusicDataset | None = None,
    progress: Optional[Callable[[float, str], None]] = None,
    mf_params: dict[str, Any] | None = None,
    engine: str = "keras",
    master: str | None = None,
    label: str | None = None,
    **load_kwargs: Any,
) -> dict[str, Any]:
    """Train (or skip if fresh) popularity, genre and MF for ``dataset``; return the bundle manifest.

    ``dataset`` is also the bundle's name: a log trained under its own name passes its ``data`` and ``label``.
    The bundle is written into a hidden sibling folder and swapped in at the end, so a failed, cancelled or
    diverging run leaves the previous bundle (if any) untouched and never a half-written one.

    ``engine="spark"`` fits the MF factors with Spark MLlib ALS on ``master`` (default ``local[*]``) and saves
    them in the same artifact (``music.mf.spark``); ``mf_params`` are then ALS's (rank, reg, alpha, max_iter).
    """
    if engine not in ("keras", "spark"):
        raise ValueError(f"engine must be 'keras' or 'spark', not {engine!r}")
    data = data or load_dataset(dataset, path, **load_kwargs)
    checksum = data.checksum()
    out = bundle_dir(dataset)
    if not force and is_fresh(dataset, checksum, engine):
        log.info("%s: fresh models in %s; skipping (use --force to retrain)", dataset, out)
        m = read_json(out / "bundle.json")
        m["skipped"] = True
        return m
    check_trainable(data, dataset)
    t0 = time.time()
    if engine == "spark":  # ALS needs no early stopping: a fixed number of sweeps over all interactions

        mf: KerasMF = fit_spark_mf(data, master=master, params=mf_params)
        params = dict(mf.engine_params)
    else:
        params = mf_config(dataset, data.kind, mf_params)
        # Early stopping needs held-out data; carve it per user from the training log itself.
        split = user_holdout_split(data.interactions, test_fraction=0.05, min_items=10, seed=123)
        mf = KerasMF(**params)
        mf.fit(data, split.train, val=split.test, progress=_epoch_progress(progress, mf), validate=val_ndcg)
    models: dict[str, CatalogRecommender] = {"mf": mf, "genre": GenreRecommender().fit(data),
                                      "popularity": Popularity().fit(data)}
    # MF is served with every interaction as history (to exclude and explain), though fitted on 95 %.
    mf.catalog = models["genre"].catalog
    check_finite_arrays(f"{dataset} MF", **{k: getattr(mf, k, None) for k in ("P", "Q", "bu", "bi")})  # before anything is written
    manifest = {
        "kind": "music-bundle", "schema": SCHEMA, "dataset": dataset, "label": label or LABELS.get(dataset, dataset),
        "data_kind": data.kind, "dataset_checksum": checksum, "models": list(models), "engine": engine,
        "summary": data.summary(), "report": data.report, "mf_params": params,
        "mf_history": mf.history_, "train_seconds": round(time.time() - t0, 1),
        "source_path": str(path) if path else None,
    }
    _save_bundle(out, models, manifest)
    log.info("%s: trained %s in %.1fs -> %s", dataset, list(models), time.time() - t0, out)
    return manifest


def _epoch_progress(progress: Optional[Callable[[float, str], None]], mf: KerasMF
                    ) -> Optional[Callable[[float, str], None]]:
    """``progress`` with the epoch and its validation metric in the message, so a watcher sees learning happen."""
    if progress is None:
        return None

    def report(fraction: float, message: str) -> None:
        rec = mf.history_[-1] if mf.history_ else {}
        metric = next((f"{label} {rec[k]:.4f}" for k, label in (("val_ndcg", "validation NDCG@10"),
                       ("val_rmse", "validation RMSE"), ("val_loss", "validation loss")) if k in rec), "")
        loss = f"loss {rec['loss']:.4g}" if "loss" in rec else ""
        text = ", ".join(filter(None, (metric, loss)))
        progress(fraction, f"MF epoch {rec.get('epoch', '?')} of at most {mf.epochs}" + (f": {text}" if text else ""))

    return report


def _save_bundle(out: Path, models: dict[str, CatalogRecommender], manifest: dict[str, Any]) -> None:
    """Write every model and ``bundle.json`` into a hidden sibling of ``out``, then swap it in.

    Readers see the old bundle or the new one, never a mix: the old folder is moved aside and the new one renamed
    onto its name (a rename on one file system), and any failure or cancel before that swap puts the old one back.
    Hidden folders (``.name.*``) are never listed by ``trained_datasets``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    moved = swapped = False
    try:
        for name, model in models.items():
            model.save(work / name)
        write_json(work / "bundle.json", manifest)
        if out.exists():
            os.replace(out, old)
            moved = True
        os.replace(work, out)
        swapped = True
    except BaseException:
        if moved and not swapped:
            os.replace(old, out)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if swapped and moved:
            shutil.rmtree(old, ignore_errors=True)


def trained_datasets() -> list[str]:
    """Datasets with a bundle on disk, the simulated default first."""
    root = mfdata.music_dir()
    names = sorted(p.parent.name for p in root.glob("*/bundle.json")
                   if not p.parent.name.startswith(".")) if root.is_dir() else []
    return sorted(names, key=lambda n: (n != "simulated", n))


def load_bundle(dataset: str) -> Bundle:
    """Load a trained bundle; ``ArtifactError`` with the command to run if missing, stale or corrupt."""
    d = bundle_dir(dataset)
    hint = f"python -m music train --dataset {dataset} --force"
    m = read_json(d / "bundle.json") if (d / "bundle.json").is_file() else None
    if m is None:
        raise ArtifactError(f"No trained music models for {dataset!r} in {d}. Build them with `{hint}`.")
    if m.get("schema") != SCHEMA:
        raise ArtifactError(f"The {dataset!r} models were built by an older version (schema {m.get('schema')}); "
                            f"rebuild with `{hint}`.")
    classes = {"mf": KerasMF, "genre": GenreRecommender, "popularity": Popularity}
    b = Bundle(dataset, m)
    for name in m.get("models", []):
        b.models[name] = classes[name].load(d / name, expect_checksum=m["dataset_checksum"])
    return b


def load_results(dataset: str) -> dict[str, Any] | None:
    """The saved evaluation results (``python -m music evaluate``) for ``dataset``, if any."""
    try:
        return read_json(results_path(dataset))
    except ArtifactError:
        return None


def evaluated_datasets() -> list[str]:
    root = mfdata.music_dir()
    return sorted(p.stem.removeprefix("evaluation-") for p in root.glob("evaluation-*.json")) if root.is_dir() else []
