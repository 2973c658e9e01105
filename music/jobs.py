"""Training a listening log in the background: what the Data page calls, and the job a worker runs.

The page never trains in the server: ``queue_training`` checks what can be checked at once (the permission,
the name, the format, the chosen columns against the file's header), keeps the upload under a random name and
queues ``train_log_job``, which a worker process runs (``core.jobs``). The job trains with
``music.logs.train_log``: the bundle is swapped in only when complete, so a failed or cancelled job leaves the
previous bundle of that name (or none) in place, and the new one appears in the Music tab for every session.

Only the standard library and ``music.logs`` are imported here at load time (no Keras, no database stack):
the page loads fast and the job process starts fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

from core.jobs import job_handler
from core.jobs.uploads import is_upload, save_upload
from music.logs import (CSV_ROLES, HEAD_BYTES, RESERVED, SOURCES, WEIGHT_KINDS, LogError, check_name, read_header,
                        train_log)
from music.mf.train import trained_datasets

log = logging.getLogger(__name__)

KIND = "music.train-log"
HANDLER = "music.jobs:train_log_job"
#: The largest log the page takes (held in memory until written to disk for the job).
MAX_UPLOAD_MB = 200
#: The formats the page offers, with their labels.
PAGE_FORMATS = {"csv": "CSV or TSV with a header (choose the columns)",
                "lastfm-1k": "Last.fm-1K TSV (userid, timestamp, artist id, artist, track id, track)",
                "listenbrainz": "ListenBrainz listens dump (.tar.xz, .zip or folder of .listens files)"}

Permission = tuple[bool, str]

__all__ = ["CSV_ROLES", "KIND", "LogError", "MAX_UPLOAD_MB", "PAGE_FORMATS", "cancel", "jobs", "preview",
           "queue_training", "trained_logs"]


def preview(head: bytes) -> dict[str, Any]:
    """Columns, first rows and guessed roles of a CSV/TSV from its first bytes (``LogError`` if unreadable)."""
    return read_header(head[:HEAD_BYTES])


def _allowed(permission: Permission) -> None:
    allowed, why = permission
    if not allowed:
        raise LogError(why or "Only administrators may train models from logs.")


def _check_columns(columns: Mapping[str, str], header: list[str]) -> dict[str, str]:
    """The chosen columns, checked against the header now (not minutes later in the job)."""
    chosen = {role: col for role, col in columns.items() if col}
    unknown = sorted(set(chosen) - set(CSV_ROLES))
    if unknown:
        raise LogError(f"Unknown column role(s) {', '.join(unknown)}; the roles are {', '.join(CSV_ROLES)}.")
    for role in ("user", "item"):
        if role not in chosen:
            raise LogError(f"Choose the {role} column (the file has {', '.join(header)}).")
    lower = {h.lower() for h in header}
    for role, col in chosen.items():
        if col.strip().lower() not in lower:
            raise LogError(f"The file has no column {col!r} for the {role} (its columns are {', '.join(header)}).")
    if chosen["user"].lower() == chosen["item"].lower():
        raise LogError("The user and item columns must be two different columns.")
    return chosen


def queue_training(name: str, *, permission: Permission, upload: Optional[bytes] = None,
                   path: Optional[str] = None, source: str = "csv", columns: Optional[Mapping[str, str]] = None,
                   weight_kind: Optional[str] = None, label: str = "", owner: Optional[str] = None,
                   replace: bool = False, queue: Any = None) -> int:
    """Check the request, keep the upload, queue the training; returns the job id. ``LogError`` when refused.

    ``permission`` is ``core.identity.may_run_heavy`` for the person asking, taken at the moment they ask.
    """
    # the queue (SQLAlchemy) loads only where jobs are queued or listed: a job's own process imports this
    # module for its handler and needs neither
    from core.jobs import JobQueue, ensure_worker

    _allowed(permission)
    name = check_name(name)
    if source not in SOURCES:
        raise LogError(f"Unknown log format {source!r}; use one of {', '.join(SOURCES)}.")
    if weight_kind is not None and weight_kind not in WEIGHT_KINDS:
        raise LogError(f"The weight is 'plays' or 'rating', not {weight_kind!r}.")
    if name in trained_datasets() and not replace:
        raise LogError(f"A trained dataset named {name} already exists; tick 'replace' or choose another name.")
    queue = queue or JobQueue()
    if queue.waiting(KIND, name=name) is not None:
        raise LogError(f"A training of {name} is already queued or running; wait for it or cancel it.")
    if (upload is None) == (path is None):
        raise LogError("Give either an uploaded log or a file on the server.")
    if source == "csv" and columns is not None:
        header = read_header(upload[:HEAD_BYTES] if upload is not None else _head(Path(str(path)).expanduser()))
        columns = _check_columns(columns, header["columns"])
    params: dict[str, Any] = {"name": name, "source": source, "columns": dict(columns) if columns else None,
                              "weight_kind": weight_kind, "label": label[:200]}
    if upload is not None:
        if not upload:
            raise LogError("The uploaded file is empty.")
        if len(upload) > MAX_UPLOAD_MB * 1024 * 1024:
            raise LogError(f"The log is {len(upload) / 1e6:,.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
        params["upload"] = str(save_upload(upload, ".log"))
    else:
        file = Path(str(path)).expanduser()
        if not file.exists():
            raise LogError(f"There is no file or folder {file} on the server.")
        params["path"] = str(file.resolve())
    job = queue.submit(KIND, HANDLER, f"Train music log {name}", params, owner=owner)
    ensure_worker(queue.url)
    return job


def _head(file: Path) -> bytes:
    if not file.is_file():
        raise LogError(f"There is no file {file} on the server.")
    with open(file, "rb") as f:
        return f.read(HEAD_BYTES)


def jobs(limit: int = 20, queue: Any = None) -> list[Any]:
    """The latest log trainings, newest first: every session sees the same list."""
    from core.jobs import JobQueue  # the queue loads only where jobs are listed (see ``queue_training``)

    # Other kinds of job share the table: look further back than ``limit`` so theirs do not hide ours.
    return [j for j in (queue or JobQueue()).list(limit=max(5 * limit, 50)) if j.kind == KIND][:limit]


def cancel(job_id: int, *, permission: Permission, queue: Any = None) -> Any:
    from core.jobs import JobQueue  # the queue loads only where jobs are listed (see ``queue_training``)

    _allowed(permission)
    return (queue or JobQueue()).cancel(job_id)


def trained_logs() -> list[str]:
    """Names of trained bundles that are not built-in datasets (the logs people trained)."""
    return [n for n in trained_datasets() if n not in RESERVED]


@job_handler
def train_log_job(params: dict[str, Any], progress: Any) -> dict[str, Any]:
    """The queued training: ``params`` = ``{"name", "source", "upload" | "path", "columns", "weight_kind",
    "label"}``; an upload is deleted afterwards, however the job ends."""
    upload = params.get("upload")
    source = upload or params.get("path")
    if not source:
        raise LogError("The training job names no log file.")
    try:
        return train_log(params["name"], params.get("source", "csv"), source, columns=params.get("columns"),
                         weight_kind=params.get("weight_kind"), label=str(params.get("label") or ""),
                         progress=progress)
    finally:
        if upload and is_upload(upload):
            Path(upload).unlink(missing_ok=True)
