"""The background retrain: "retrain with imported photos" as a job the worker runs, never the app's server.

``retrain_job`` trains a new model version on the dataset plus every accepted tagged photo
(``hashtag.versions.retrain``) in the job's scratch folder, reports each epoch with its validation F1@5, and
serves the result only when it does not score worse than the serving version.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from core.artifacts import checksum_strings, write_json
from core.feedback import FeedbackStore
from core.jobs import Progress, job_handler
from core.jobs.uploads import is_upload
from core.locks import build_lock
from core.progress import ProgressFn
from hashtag.data import DEFAULT_DATASET, ensure_dataset
from hashtag.imports import import_zip
from hashtag.service import queue_retrain
from hashtag.train import TrainConfig, train
from hashtag.versions import move_into_place, serving_score, decide, new_version_id, set_serving, version_dir

log = logging.getLogger(__name__)

#: Training settings a job may override (tests and quick runs); everything else is ``make run``'s default.
OVERRIDABLE = ("epochs", "subset", "batch_size", "patience", "max_minutes", "flips", "seed")


@job_handler
def retrain_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``params`` = ``{"dataset", "images_dir", "config": {...}}``; returns the new version's summary.

    The feedback store is the job's database (``RECS_DATABASE_URL``, which the worker sets to its queue's).
    """
    allowed = {f.name for f in fields(TrainConfig)} & set(OVERRIDABLE)
    overrides = {k: v for k, v in dict(params.get("config") or {}).items() if k in allowed}
    store = FeedbackStore.open(images_dir=params.get("images_dir") or None)
    progress(0.0, "encoding the tagged photos")
    return retrain(params["dataset"], TrainConfig(**overrides), store=store, scratch=progress.scratch,
                   progress=progress)


@job_handler
def import_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``params`` = ``{"profile", "upload", "label", "reviewer", "dataset", "images_dir"}``: store the zip's tagged photos as
    one import; an administrator's (``reviewer`` set when it was queued) is accepted and queues a retrain."""
    upload = Path(str(params["upload"]))
    try:
        progress(0.05, "unpacking and checking the photos")
        store = FeedbackStore.open(images_dir=params.get("images_dir") or None)
        report = import_zip(store, str(params["profile"]), upload, label=str(params.get("label") or ""),
                            reviewer=params.get("reviewer"))
    finally:
        if is_upload(upload):
            upload.unlink(missing_ok=True)
    if report["review"] == "accepted":
        try:  # the administrator's permission was checked when the import was queued
            report["retrain_job"] = queue_retrain(params["dataset"], store=store, permission=(True, ""),
                                                  owner=str(params["profile"]))
        except ValueError as exc:
            report["retrain_error"] = str(exc)
    progress(1.0, "done")
    return report


def retrain(dataset_root: str | Path = DEFAULT_DATASET, config=None, *, store=None, scratch: Path,
            progress: Optional[ProgressFn] = None, encoder=None) -> dict[str, Any]:
    """Train a new version on the dataset plus every accepted tagged photo, keep it, and serve it unless worse.

    Builds in ``scratch`` and renames into ``versions/<id>`` at the end; returns the version's summary with
    ``served`` and ``reason``.
    """
    root = ensure_dataset(dataset_root).root
    version = new_version_id()
    work = Path(scratch) / version
    manifest = train(root, config or TrainConfig(), encoder=encoder, force=True, progress=progress, out=work,
                     evaluate_after=False, with_feedback=True, store=store)
    (work / "last.pt").unlink(missing_ok=True)  # the resumable state is only needed while training
    candidate = float(manifest["val"]["f1@5"])
    checksum = manifest["dataset"]["checksum"]
    with build_lock(f"hashtag-versions-{checksum_strings([str(root.resolve())])[:12]}"):
        parent, serving = serving_score(root, checksum)
        switch, reason = decide(candidate, serving)
        feedback = manifest.get("feedback", {})
        manifest["version"] = {
            "id": version, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset_checksum": checksum, "data_key": manifest["key"],
            "user_split": {"images": int(feedback.get("user_pairs", 0)), "imports": feedback.get("imports", []),
                           "checksum": feedback.get("checksum")},
            "val_f1@5": candidate, "compared_with": parent, "serving_val_f1@5": serving,
            "served": switch, "reason": reason,
        }
        write_json(work / "hashtag.json", manifest)
        move_into_place(work, version_dir(root, version))
        if switch:
            set_serving(root, version, reason=reason, by="retrain")
    log.info("hashtag model version %s: %s (%s)", version, "serving" if switch else "kept, not served", reason)
    if progress:
        progress(1.0, f"version {version}: {'now serving' if switch else 'kept, not served'} ({reason})")
    return {"version": version, "served": switch, "reason": reason, "val_f1@5": candidate,
            "serving_val_f1@5": serving, "compared_with": parent,
            "user_photos": int(feedback.get("user_pairs", 0)), "imports": feedback.get("imports", []),
            "seconds": manifest.get("train_seconds")}
