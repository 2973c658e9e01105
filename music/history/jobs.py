"""A listening-history import as a background job: the page queues it, a worker process reads and stores it.

Why a job and not the click: a heavy listener's ten-year Spotify export is 2 million plays, about a minute of
JSON parsing and a gigabyte of memory (``bench/results/history_read_2m.json``); that must not run in the app's
request thread or process. The uploads are kept under random names (the file names people gave are passed
along only as text, because the readers name files in their messages), the job reads them whole, stores
every play in one transaction (``FeedbackStore.add_plays``: all or nothing, nothing twice) and deletes them.
Only the person who asked sees the job and its report (``jobs_of``): the report names artists they played.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from core import artifacts
from core.feedback.store import FeedbackStore
from core.jobs import JobQueue, JobView
from core.jobs import worker as job_worker  # called through its module: tests replace worker.ensure_worker
from core.jobs.handlers import job_handler
from core.jobs.uploads import uploads_dir
from music.history.formats import HistoryError, read_exports
from music.history.service import import_history
from music.mf.train import load_bundle

log = logging.getLogger(__name__)

KIND = "music.history-import"
HANDLER = "music.history.jobs:import_job"
#: All files of one import together (a decade of Spotify extended history is about 150 MB).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_FILES = 100
_NAME_LEN = 200


def _save(files: Sequence[tuple[str, bytes]]) -> tuple[Path, list[str]]:
    """Keep the uploads under random names in a fresh folder; returns the folder and the shown names."""
    folder = uploads_dir() / f"history-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    for i, (_, data) in enumerate(files):
        with artifacts.atomic_path(folder / f"{i:03d}.upload") as tmp:
            tmp.write_bytes(data)
    return folder, [Path(str(name)).name[:_NAME_LEN] or f"file {i + 1}" for i, (name, _) in enumerate(files)]


def queue_import(profile: str, files: Sequence[tuple[str, bytes]], dataset: Optional[str] = None,
                 queue: Optional[JobQueue] = None) -> int:
    """Check the sizes, keep the uploads, queue the import for ``profile`` (a key, never a typed name)."""
    if not files:
        raise HistoryError("Choose the export file(s) first.")
    if len(files) > MAX_FILES:
        raise HistoryError(f"{len(files)} files at once is more than the {MAX_FILES} one import takes; "
                           "upload the .zip the service sent instead.")
    total = sum(len(data) for _, data in files)
    if total > MAX_UPLOAD_BYTES:
        raise HistoryError(f"The files add up to {total / 1e6:,.0f} MB; one import takes at most "
                           f"{MAX_UPLOAD_BYTES / 1e6:,.0f} MB (import the years in several parts).")
    folder, names = _save(files)
    queue = queue or JobQueue()
    params = {"profile": profile, "folder": folder.name, "names": names, "dataset": dataset}
    job = queue.submit(KIND, HANDLER, "Import a listening history", params, owner=profile)
    job_worker.ensure_worker(queue.url)
    return job


def jobs_of(profile: str, limit: int = 5, queue: Optional[JobQueue] = None) -> list[JobView]:
    """This person's latest imports, newest first (nobody else's)."""
    if not profile:
        return []
    return [j for j in (queue or JobQueue()).list(limit=50) if j.kind == KIND and j.owner == profile][:limit]


@job_handler
def import_job(params: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Read the kept uploads, store their plays under the profile, report how they match the dataset."""
    folder = uploads_dir() / Path(str(params["folder"])).name  # a folder this module named, never a path given
    try:
        progress(0.05, "reading the export")
        uploads = sorted(folder.glob("*.upload"))
        names = list(params.get("names") or [])
        history = read_exports([(names[i] if i < len(names) else p.name, p.read_bytes())
                                for i, p in enumerate(uploads)])
        progress(0.5, f"storing {len(history.plays):,} plays")
        bundle = _bundle(params.get("dataset"))
        report = import_history(FeedbackStore.open(), str(params["profile"]), history, bundle)
        progress(1.0, "done")
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bundle(dataset: Optional[str]) -> Any:
    """The dataset to match against, when one was chosen and is still there (the plays are kept either way)."""
    if not dataset:
        return None

    try:
        return load_bundle(str(dataset))
    except artifacts.ArtifactError as exc:
        log.warning("import not matched: %s", exc)
        return None


__all__ = ["KIND", "MAX_UPLOAD_BYTES", "import_job", "jobs_of", "queue_import"]
