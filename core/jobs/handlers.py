"""What a job runs: functions marked ``@job_handler``, called with their params and a ``Progress``.

A handler is ``def build(params: dict, progress: Progress) -> dict``. It runs in its own process (the worker
starts ``python -m core.jobs run JOB_ID``), so it may use all the memory and CPU it likes, and a crash in it
never touches the worker or the app. ``progress(fraction, message)`` reports to the worker, which writes the
latest report to the database about once a second. A cancel reaches the handler as ``JobCancelled``, raised
wherever it is when the worker's SIGTERM arrives (the worker SIGKILLs it after a grace period), so cleanup in
``finally`` blocks runs. A handler builds in ``progress.scratch`` (the worker deletes that folder when the job
ends, however it ends) and renames into place only at the end, so a cancelled, failed or killed job never
leaves a half-built thing where readers look.

The job process talks to its worker over a pipe, not to the database: it starts without the database stack
(about 1.5 CPU-seconds saved per job on a small machine), holds no connection, and the worker stays the
only writer of its job's row. Only marked functions run: a job's ``handler`` comes from the database, and
whoever can write a row there must not be able to call an arbitrary function of the project.

This module imports only the standard library, so that the job process starts fast.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

log = logging.getLogger(__name__)

_MARK = "__recs_job_handler__"
#: The environment variables through which the worker tells its job process where to report and build.
CHANNEL_ENV, SCRATCH_ENV = "RECS_JOB_CHANNEL_FD", "RECS_JOB_SCRATCH"
_MESSAGE_LEN = 500


class JobCancelled(BaseException):
    """The job was cancelled (or its worker is stopping); a handler lets it through after its own cleanup.

    A ``BaseException`` like ``KeyboardInterrupt``, so a handler's ``except Exception`` (skipping one bad
    image, say) does not swallow a cancel.
    """


class JobFailed(RuntimeError):
    """A handler's way to fail with a message a person can act on (any ValueError/RuntimeError subclass works)."""


Handler = Callable[[dict, "Progress"], dict]


def job_handler(fn: Handler) -> Handler:
    """Mark ``fn`` as a job handler: only marked functions may run as jobs."""
    setattr(fn, _MARK, True)
    return fn


def resolve_handler(spec: str) -> Handler:
    """``module:function`` → the marked function; anything else raises ``JobFailed`` with the reason."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobFailed(f"The job handler {spec!r} cannot be loaded ({exc}).") from exc
    fn = getattr(module, name, None)
    if not callable(fn) or getattr(fn, _MARK, False) is not True:
        raise JobFailed(f"{spec!r} is not a job handler; only functions marked @job_handler may run as jobs.")
    return fn


class Progress:
    """``progress(fraction, message)`` for a handler: one JSON line to the worker at most every ``interval`` s.

    Why throttled: a handler may call it for every image; the worker needs a few reports a second, and it
    writes at most one a second to the database. The latest report is never lost: a skipped one is sent by
    the next report or by ``flush``; a fraction of 1.0 is always sent at once.
    """

    def __init__(self, channel: Optional[TextIO], scratch: Path, *, interval: float = 0.2) -> None:
        self.channel, self._scratch, self.interval = channel, Path(scratch), float(interval)
        self._last = float("-inf")
        self._pending: Optional[tuple[float, str]] = None

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = float(fraction)
        if math.isnan(fraction):
            raise ValueError("Progress must be a number between 0 and 1.")
        self._pending = (min(1.0, max(0.0, fraction)), str(message)[:_MESSAGE_LEN])
        if time.monotonic() - self._last >= self.interval or fraction >= 1.0:
            self.flush()

    def flush(self) -> None:
        """Send the latest unsent report now."""
        if self._pending is not None:
            fraction, message = self._pending
            self._pending, self._last = None, time.monotonic()
            send(self.channel, {"progress": fraction, "message": message})

    @property
    def scratch(self) -> Path:
        """This job's private temporary folder; build here, then rename into place."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch


def send(channel: Optional[TextIO], message: dict[str, Any]) -> None:
    """One JSON line to the worker (nowhere when the handler runs without one, e.g. in a test)."""
    if channel is not None:
        channel.write(json.dumps(message, allow_nan=False, default=str) + "\n")
        channel.flush()


def failure_message(exc: BaseException) -> str:
    """The one sentence a failed job shows: the error's own words for an expected error, else an error id.

    Expected errors are the project's own ValueError/RuntimeError subclasses (bad input, a missing artifact),
    whose messages are written for people; anything else (a KeyError, a bare library error) is a bug whose
    text would mean nothing to the user, so it gets an id that the job's log (and the worker's) repeats
    beside the traceback.
    """
    expected = isinstance(exc, (ValueError, RuntimeError)) and type(exc).__module__ != "builtins"
    text = " ".join(str(exc).split())[:_MESSAGE_LEN]
    if expected and text:
        return text
    error_id = uuid.uuid4().hex[:8]
    log.error("error id %s: %s", error_id, "".join(traceback.format_exception(exc)).rstrip())
    return f"The job failed unexpectedly (error id {error_id}); the worker log has the details."


def _raise_cancelled(signum: int, _frame: object) -> None:
    raise JobCancelled(f"stopped by signal {signal.Signals(signum).name}")


def execute(handler: str, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Run one job's handler and say how it ended: ``{"done": result}``, ``{"failed": message}`` or
    ``{"cancelled": reason}``. Never raises (except on a second signal while cleaning up)."""
    stop_on_term = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if stop_on_term:  # the worker's SIGTERM becomes JobCancelled, so the handler's cleanup runs
        signal.signal(signal.SIGTERM, _raise_cancelled)
    try:
        result = resolve_handler(handler)(dict(params), progress)
        if stop_on_term:  # the work is in place: a late cancel must not report it as cancelled
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not isinstance(result, dict):
            raise JobFailed(f"The job handler returned {type(result).__name__}, not a result dict.")
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JobFailed(f"The job's result is not JSON ({exc}).") from exc
        return {"done": result}
    except JobCancelled as exc:
        return {"cancelled": str(exc)}
    except Exception as exc:  # noqa: BLE001 - every failure becomes the job's message, never a dead worker
        return {"failed": failure_message(exc)}
    finally:
        if stop_on_term:
            signal.signal(signal.SIGTERM, previous)


def run_child(job_id: int) -> int:
    """The job process: read the job from stdin, run it, send the outcome on the worker's pipe."""
    spec = json.loads(sys.stdin.read())
    fd = os.environ.get(CHANNEL_ENV)
    channel = os.fdopen(int(fd), "w", encoding="utf-8") if fd else None
    progress = Progress(channel, Path(os.environ.get(SCRATCH_ENV) or f"job-{job_id}.work"))
    log.info("job %s starts: %s %s", job_id, spec["handler"], spec["params"])
    outcome = execute(spec["handler"], spec["params"], progress)
    send(channel, outcome)
    log.info("job %s ended: %s", job_id, outcome)
    return 0
