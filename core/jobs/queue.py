"""The job queue: heavy work (catalog builds, training) as rows in the project's database.

Why a table in the same database as the feedback store: every session and every app process must see the
same queue, progress must survive a page reload and an app restart, and on PostgreSQL workers on several
processes or machines claim work from one queue. Nothing here runs a job; ``worker.py`` does.

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled`` (a queued job may also go straight to
``cancelled``). Every move out of ``running`` is conditional on the row still being ``running``, so of two
writers that race (a job finishing while it is cancelled, a worker recovering a stale job) the first wins
and the second changes nothing.

Claiming is atomic: on SQLite the claim runs inside ``BEGIN IMMEDIATE`` (the database's single write lock),
on PostgreSQL the candidate row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of
workers can poll one queue and no job ever runs twice.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.feedback.models import NAME_LEN, Job, utcnow
from core.feedback.store import default_url, engine_for

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)

TITLE_LEN = 200
HANDLER_LEN = 200
MESSAGE_LEN = 1000
WORKER_LEN = 128
#: Params are a recipe (paths, names, options), never data; results are a summary.
MAX_PARAMS_BYTES = 64 * 1024
MAX_RESULT_BYTES = 256 * 1024

#: What a job whose worker vanished (killed, app restarted, machine rebooted) says afterwards.
INTERRUPTED = ("Interrupted: the worker stopped before the job finished (an app restart?); "
               "nothing half-built was kept.")

_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_HANDLER_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class JobError(ValueError):
    """A request the queue cannot carry out (bad input, unknown job); the message is safe to show."""


@dataclass(frozen=True)
class JobView:
    """One job as callers see it: plain data (never a live ORM row), times as ISO 8601 strings in UTC."""

    id: int
    kind: str
    title: str
    handler: str
    params: dict[str, Any]
    status: str
    progress: float
    message: Optional[str]
    eta_seconds: Optional[float]
    result: dict[str, Any]
    owner: Optional[str]
    cancel_requested: bool
    worker: Optional[str]
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]

    @property
    def active(self) -> bool:
        """Queued or running: the job may still change."""
        return self.status in ACTIVE


# ----------------------------------------------------------------------------------------------
# small helpers


def _aware(value: Optional[_dt.datetime]) -> Optional[_dt.datetime]:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value


def _iso(value: Optional[_dt.datetime]) -> Optional[str]:
    value = _aware(value)
    return value.isoformat(timespec="milliseconds") if value is not None else None


def clip_text(value: Any, limit: int) -> str:
    """One line of at most ``limit`` characters: control characters become spaces, the rest is cut with '…'."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _json_object(value: Any, what: str, limit: int) -> str:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise JobError(f"The job's {what} must be a JSON object (a dict), not {type(value).__name__}.")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise JobError(f"The job's {what} are not JSON ({exc}).") from exc
    if len(text.encode("utf-8")) > limit:
        raise JobError(f"The job's {what} take more than {limit // 1024} KiB as JSON; pass paths, not data.")
    return text


def _view(row: Job) -> JobView:
    return JobView(
        id=int(row.id), kind=row.kind, title=row.title, handler=row.handler, params=json.loads(row.params or "{}"),
        status=row.status, progress=float(row.progress or 0.0), message=row.message, eta_seconds=row.eta_seconds,
        result=json.loads(row.result) if row.result else {}, owner=row.owner,
        cancel_requested=bool(row.cancel_requested), worker=row.worker, created_at=_iso(row.created_at) or "",
        started_at=_iso(row.started_at), finished_at=_iso(row.finished_at))


def worker_name() -> str:
    """This process as a worker id: ``host:pid``."""
    return clip_text(f"{socket.gethostname()}:{os.getpid()}", WORKER_LEN)


# ----------------------------------------------------------------------------------------------
# the queue


class JobQueue:
    """The shared queue in the database at ``url`` (default: the feedback store's, ``RECS_DATABASE_URL``).

    Every method is one short transaction, so a queue object may be shared by threads and sessions.
    """

    def __init__(self, url: Optional[str] = None) -> None:
        try:
            self.engine = engine_for(url or default_url())
        except SQLAlchemyError as exc:
            raise JobError(f"The jobs database could not be opened ({type(exc).__name__}: {exc}).") from exc
        except Exception as exc:  # noqa: BLE001 - a malformed URL raises ArgumentError/ValueError/ImportError
            raise JobError(f"The jobs database URL is not usable ({exc}).") from exc
        self._writer = self.engine.execution_options(feedback_write=True)  # BEGIN IMMEDIATE on SQLite

    @property
    def url(self) -> str:
        """The database URL without its password (for logs and lock names)."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    # -- asking for work ------------------------------------------------------------------------
    def submit(self, kind: str, handler: str, title: str, params: Optional[dict[str, Any]] = None,
               owner: Optional[str] = None) -> int:
        """Queue a job; returns its id. ``handler`` is ``module:function`` of a ``@job_handler`` function."""
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise JobError("A job kind is 1-64 characters of lower-case letters, digits, '_', '-' or '.'.")
        if not isinstance(handler, str) or len(handler) > HANDLER_LEN or not _HANDLER_RE.match(handler):
            raise JobError("A job handler is written 'package.module:function'.")
        title = clip_text(title, TITLE_LEN) if title is not None else ""
        if not title:
            raise JobError("A job needs a title (what a person sees in the queue).")
        if owner is not None and (not isinstance(owner, str) or not owner.strip() or len(owner) > NAME_LEN):
            raise JobError(f"A job's owner is 1-{NAME_LEN} characters.")
        params_json = _json_object(params, "parameters", MAX_PARAMS_BYTES)
        with self._write() as s:
            return int(s.execute(insert(Job).values(
                kind=kind, handler=handler, title=title, params=params_json, owner=owner, status=QUEUED,
                progress=0.0, cancel_requested=False, created_at=utcnow()).returning(Job.id)).scalar_one())

    def get(self, job_id: int) -> JobView:
        """The job's current state; an unknown id raises ``JobError``."""
        with self._read() as s:
            row = s.get(Job, int(job_id))
            if row is None:
                raise JobError(f"There is no job {job_id}.")
            return _view(row)

    def list(self, limit: int = 50, statuses: Optional[Sequence[str]] = None) -> list[JobView]:
        """The newest ``limit`` jobs (optionally only those in ``statuses``), newest first."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(max(1, int(limit)))
        if statuses:
            unknown = [st for st in statuses if st not in STATUSES]
            if unknown:
                raise JobError(f"Unknown job status {unknown[0]!r}; use one of {', '.join(STATUSES)}.")
            query = query.where(Job.status.in_(list(statuses)))
        with self._read() as s:
            return [_view(row) for row in s.scalars(query)]

    def waiting(self, kind: str, **params: Any) -> Optional[JobView]:
        """The newest queued or running ``kind`` job whose params include ``params``, or None.

        What a button that builds one shared thing asks first, so ten people clicking it make one job.
        """
        return next((j for j in self.list(limit=50, statuses=ACTIVE) if j.kind == kind
                     and all(j.params.get(key) == value for key, value in params.items())), None)

    def cancel(self, job_id: int) -> JobView:
        """Cancel: a queued job becomes ``cancelled`` at once; a running one is flagged and its worker stops it.

        A job that already ended is left as it is (cancelling twice, or too late, is not an error).
        """
        now = utcnow()
        with self._write() as s:
            row = s.get(Job, int(job_id))
            if row is None:
                raise JobError(f"There is no job {job_id}.")
            if row.status == QUEUED:
                row.status, row.finished_at, row.message = CANCELLED, now, "Cancelled before it started."
                row.eta_seconds = None
            elif row.status == RUNNING:
                row.cancel_requested = True
            return _view(row)

    def wait(self, job_id: int, timeout: float = 60.0, poll: float = 0.2) -> JobView:
        """Poll until the job is no longer active or ``timeout`` seconds pass; returns its last state."""
        deadline = time.monotonic() + timeout
        view = self.get(job_id)
        while view.active and time.monotonic() < deadline:
            time.sleep(poll)
            view = self.get(job_id)
        return view

    # -- the worker's side ----------------------------------------------------------------------
    def claim(self, worker_id: str) -> Optional[JobView]:
        """Atomically take the oldest queued job for ``worker_id`` (it becomes ``running``); None when none waits."""
        with self._read() as s:  # an idle worker polls: look first, so SQLite's write lock is taken only for work
            if s.scalar(select(Job.id).where(Job.status == QUEUED).limit(1)) is None:
                return None
        now = utcnow()
        with self._write() as s:
            job_id = s.scalar(select(Job.id).where(Job.status == QUEUED)
                              .order_by(Job.created_at, Job.id).limit(1)
                              .with_for_update(skip_locked=True))  # FOR UPDATE is left out on SQLite
            if job_id is None:
                return None
            taken = s.execute(update(Job).where(Job.id == job_id, Job.status == QUEUED).values(
                status=RUNNING, worker=clip_text(worker_id, WORKER_LEN), started_at=now, heartbeat_at=now,
                progress=0.0, message="Starting…", eta_seconds=None)).rowcount
            if not taken:
                return None
            return _view(s.get(Job, job_id))

    def heartbeat(self, job_id: int) -> bool:
        """Mark the running job alive; returns True when a cancel was asked for."""
        with self._write() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(heartbeat_at=utcnow()))
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def report(self, job_id: int, fraction: float, message: Optional[str] = None) -> bool:
        """Record progress (0..1), the stage and an ETA from the time so far; returns True when cancel was asked.

        The ETA assumes the rest goes at the pace so far: ``elapsed * (1 - f) / f``, none before 1 %.
        """
        fraction = float(fraction)
        if math.isnan(fraction):
            raise JobError("Progress must be a number between 0 and 1.")
        fraction = min(1.0, max(0.0, fraction))
        now = utcnow()
        with self._write() as s:
            row = s.get(Job, int(job_id))
            if row is None or row.status != RUNNING:
                return bool(row is not None and row.cancel_requested)
            started = _aware(row.started_at) or now
            elapsed = max(0.0, (now - started).total_seconds())
            row.progress, row.heartbeat_at = fraction, now
            row.eta_seconds = round(elapsed * (1.0 - fraction) / fraction, 1) if fraction >= 0.01 else None
            if message is not None:
                row.message = clip_text(message, MESSAGE_LEN)
            return bool(row.cancel_requested)

    def _end(self, job_id: int, status: str, message: Optional[str], **values: Any) -> bool:
        """Move a running job to a final state; False when it was no longer running (someone else ended it)."""
        with self._write() as s:
            return bool(s.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(
                status=status, message=clip_text(message, MESSAGE_LEN) if message else None, eta_seconds=None,
                finished_at=utcnow(), **values)).rowcount)

    def finish(self, job_id: int, result: Optional[dict[str, Any]] = None) -> bool:
        """The job succeeded with ``result`` (a JSON object); progress becomes 1.0."""
        return self._end(job_id, DONE, "Done.", progress=1.0,
                         result=_json_object(result, "result", MAX_RESULT_BYTES))

    def fail(self, job_id: int, message: str) -> bool:
        """The job failed; ``message`` (one sentence a person can act on) is what the queue shows."""
        return self._end(job_id, FAILED, message or "The job failed.")

    def mark_cancelled(self, job_id: int,
                       message: str = "Cancelled while running; nothing half-built was kept.") -> bool:
        """A running job was stopped because a cancel was asked for."""
        return self._end(job_id, CANCELLED, message)

    def recover_stale(self, max_age_s: float = 30.0) -> list[int]:
        """Fail running jobs whose heartbeat is older than ``max_age_s`` (their worker is gone); returns their ids."""
        cutoff = utcnow() - _dt.timedelta(seconds=max_age_s)
        with self._write() as s:
            ids = list(s.scalars(select(Job.id).where(Job.status == RUNNING, Job.heartbeat_at < cutoff)
                                 .with_for_update(skip_locked=True)))
            if ids:
                s.execute(update(Job).where(Job.id.in_(ids), Job.status == RUNNING).values(
                    status=FAILED, message=INTERRUPTED, eta_seconds=None, finished_at=utcnow()))
        return [int(i) for i in ids]
