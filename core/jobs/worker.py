"""The worker: claims one job at a time and runs it in a child process it can stop.

Why a child process per job: a cancel must be able to stop a build that is deep inside a C library (the
worker sends SIGTERM, which the job turns into ``JobCancelled`` so its cleanup runs, and SIGKILL after a
grace period), and a crash or an out-of-memory kill in a job must not take the worker down. The child
runs in its own process group (so the group, with anything it started, can be killed) and dies with the
worker (Linux ``PR_SET_PDEATHSIG``): a worker killed mid-job never leaves a build running unsupervised
that could rename a result into place after its job was declared failed.

The child reports over a pipe (JSON lines: progress, then its outcome); the worker is the only writer of
the job's row. Once a second it writes the newest progress, or just a heartbeat; a job whose heartbeat is
older than ``stale_after`` seconds belongs to a dead worker, and ``recover_stale`` (run by every worker at
start and then periodically) marks it failed. The app starts one worker per database with
``ensure_worker``; a file lock decides which one lives, so racing app processes never run two on one machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout
from sqlalchemy.exc import SQLAlchemyError

from core import artifacts
from core.jobs.handlers import CHANNEL_ENV, SCRATCH_ENV
from core.jobs.queue import INTERRUPTED, JobError, JobQueue, JobView, worker_name
from core.locks import build_lock, lock_path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Optional[ctypes.CDLL] = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux/glibc: jobs then rely on the worker's own checks
    _LIBC = None


def _die_with_parent() -> None:
    """In the job's child process, before exec: be killed when the worker dies (Linux)."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def job_dir() -> Path:
    """Where job logs and scratch folders live (``<models>/jobs``)."""
    return artifacts.MODELS_DIR / "jobs"


def scratch_path(job_id: int) -> Path:
    """The job's private temporary folder (removed when the job ends, however it ends)."""
    return job_dir() / f"{int(job_id)}.work"


def log_path(job_id: int) -> Path:
    """The job process's own log (its stdout and stderr, tracebacks included)."""
    return job_dir() / f"{int(job_id)}.log"


def remove_scratch(job_id: int) -> None:
    """Delete a job's scratch folder (whatever a stopped job left half-built)."""
    shutil.rmtree(scratch_path(job_id), ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _lock_name(queue: JobQueue) -> str:
    return "jobs-worker-" + hashlib.sha256(queue.url.encode("utf-8")).hexdigest()[:16]


def worker_lock(queue: JobQueue, timeout: float = 0) -> FileLock:
    """The file lock the (single) worker for ``queue``'s database holds for its whole life, on this machine."""
    return build_lock(_lock_name(queue), timeout=timeout)


def worker_lock_path(queue: JobQueue) -> Path:
    """Where that lock lives (``<models>/.locks/jobs-worker-<hash of the URL>.lock``)."""
    return lock_path(_lock_name(queue))


def worker_running(queue: JobQueue) -> bool:
    """True when a worker on this machine holds the lock for this database."""
    lock = worker_lock(queue)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def child_env(queue: JobQueue, **extra: str) -> dict[str, str]:
    """The environment for a worker or job process: ours, plus the database, models folder and project path."""
    env = dict(os.environ)
    env["RECS_DATABASE_URL"] = queue.engine.url.render_as_string(hide_password=False)
    env["RECS_MODELS_DIR"] = str(artifacts.MODELS_DIR)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


class Worker:
    """Claims queued jobs one at a time and runs each in a child process; see the module docstring."""

    def __init__(self, url: Optional[str] = None, *, poll: float = 1.0, parent_pid: Optional[int] = None,
                 grace: float = 5.0, heartbeat: float = 1.0, stale_after: float = 30.0,
                 use_lock: bool = True) -> None:
        self.queue = JobQueue(url)
        self.poll, self.grace, self.heartbeat, self.stale_after = poll, grace, heartbeat, stale_after
        self.parent_pid, self.use_lock = parent_pid, use_lock
        self.id = worker_name()
        self._ppid_at_start = os.getppid()
        self._stop: Optional[str] = None

    # -- the loop -------------------------------------------------------------------------------
    def run(self, once: bool = False, held_lock: Optional[FileLock] = None) -> int:
        """Work until stopped (SIGTERM/SIGINT, or the parent process is gone); ``once``: until the queue is empty.

        ``held_lock`` is the worker lock when the caller has taken it already (the command line takes it
        before the database stack loads, so an app waiting in ``ensure_worker`` waits a moment only).
        """
        lock = held_lock or (worker_lock(self.queue) if self.use_lock else None)
        if lock is not None and not lock.is_locked:
            try:
                lock.acquire()
            except Timeout:
                log.info("another worker already serves %s on this machine; exiting", self.queue.url)
                return 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            log.info("worker %s serves %s", self.id, self.queue.url)
            self._loop(once)
        finally:
            if lock is not None:
                lock.release()
        log.info("worker %s stops: %s", self.id, self._stop or "the queue is empty")
        return 0

    def _loop(self, once: bool) -> None:
        next_recovery = 0.0
        while self._stop is None:
            if self._parent_gone():
                self._stop = f"the app process {self.parent_pid} is gone"
                break
            try:
                if time.monotonic() >= next_recovery:
                    self.recover()
                    next_recovery = time.monotonic() + self.stale_after
                job = self.queue.claim(self.id)
            except SQLAlchemyError as exc:  # the database is away for a moment: keep trying
                log.warning("the jobs database is not reachable (%s); retrying", type(exc).__name__)
                time.sleep(self.poll * 5)
                continue
            if job is not None:
                try:
                    self.run_one(job)
                except Exception:  # noqa: BLE001 - the worker outlives any one job
                    log.exception("job %s could not be run", job.id)
                    with contextlib.suppress(Exception):
                        self.queue.fail(job.id, "The worker could not run the job; the worker log has the details.")
            elif once:
                break
            else:
                time.sleep(self.poll)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop = f"signal {signal.Signals(signum).name}"

    def _parent_gone(self) -> bool:
        if self.parent_pid is None:
            return False
        if self._ppid_at_start == self.parent_pid:  # spawned by it: re-parenting means it died
            return os.getppid() != self.parent_pid
        return not pid_alive(self.parent_pid)

    def recover(self) -> None:
        """Fail jobs whose worker died, and delete scratch folders no running job owns."""
        for job_id in self.queue.recover_stale(self.stale_after):
            log.warning("job %s had no heartbeat for %.0f s: marked failed", job_id, self.stale_after)
        for folder in job_dir().glob("*.work"):
            if not folder.stem.isdigit():
                continue
            try:
                ended = not self.queue.get(int(folder.stem)).active
            except JobError:  # no such job in this database: perhaps another database's, leave it
                ended = False
            if ended:
                remove_scratch(int(folder.stem))

    # -- one job --------------------------------------------------------------------------------
    def run_one(self, job: JobView) -> None:
        """Run a claimed job in a child process, relay its progress, stop it on cancel, record how it ended."""
        job_dir().mkdir(parents=True, exist_ok=True)
        log.info("job %s (%s) claimed: %s", job.id, job.kind, job.title)
        read_fd, write_fd = os.pipe()
        try:
            with open(log_path(job.id), "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs", "run", str(job.id)], cwd=ROOT,
                    env=child_env(self.queue, **{CHANNEL_ENV: str(write_fd), SCRATCH_ENV: str(scratch_path(job.id))}),
                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                    start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            os.close(write_fd)  # the child holds the only write end: end of file means it is gone
        try:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(json.dumps({"handler": job.handler, "params": job.params}).encode("utf-8"))
                proc.stdin.close()
            outcome, stopped = self._watch(job, proc, read_fd)
        finally:
            os.close(read_fd)
        self._settle(job, proc.returncode, outcome, stopped)
        remove_scratch(job.id)

    def _watch(self, job: JobView, proc: subprocess.Popen, fd: int) -> tuple[Optional[dict], Optional[str]]:
        """Relay the child's reports until it exits: the latest progress (or a heartbeat) to the database each
        ``heartbeat`` seconds; a cancel or a stopping worker kills the child.

        Returns the child's outcome message (None if it sent none) and why the worker stopped it (or None).
        """
        messages = _Lines(fd)
        outcome: Optional[dict] = None
        stopped: Optional[str] = None
        latest: Optional[dict] = None
        next_tick = time.monotonic() + self.heartbeat
        while True:
            for message in messages.read(timeout=max(0.0, next_tick - time.monotonic())):
                if "progress" in message:
                    latest = message
                else:
                    outcome = message
            if messages.closed or proc.poll() is not None:
                proc.wait()
                for message in messages.read(timeout=0):  # whatever it sent just before exiting
                    outcome = message if "progress" not in message else outcome
                return outcome, stopped
            if time.monotonic() < next_tick:
                continue
            next_tick = time.monotonic() + self.heartbeat
            cancel = self._tick(job.id, latest)
            latest = None
            if stopped is None and self._stop is None and self._parent_gone():
                self._stop = f"the app process {self.parent_pid} is gone"
            if stopped is None and (cancel or self._stop is not None):
                stopped = "cancelled" if cancel else "interrupted"
                self._kill(proc)

    def _tick(self, job_id: int, latest: Optional[dict]) -> bool:
        """One database write per second: the newest progress report, or just a heartbeat. True on cancel."""
        try:
            if latest is not None:
                return self.queue.report(job_id, latest["progress"], latest.get("message") or None)
            return self.queue.heartbeat(job_id)
        except (SQLAlchemyError, JobError, KeyError, TypeError) as exc:
            log.warning("progress of job %s not written (%s: %s)", job_id, type(exc).__name__, exc)
            return False

    def _kill(self, proc: subprocess.Popen) -> None:
        """SIGTERM the job's process group, SIGKILL it after the grace period."""
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
                if sig == signal.SIGTERM:  # the job itself is gone; take anything it left in its group too
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            except subprocess.TimeoutExpired:
                log.warning("job process %s ignored SIGTERM for %.0f s; killing it", proc.pid, self.grace)
            except ProcessLookupError:
                return

    def _settle(self, job: JobView, returncode: int, outcome: Optional[dict], stopped: Optional[str]) -> None:
        """Record how the job ended. A finished result wins over a late cancel (the work is complete)."""
        outcome = outcome or {}
        if "done" in outcome:
            try:
                self.queue.finish(job.id, outcome["done"])
            except JobError as exc:
                self.queue.fail(job.id, str(exc))
        elif stopped == "cancelled":
            self.queue.mark_cancelled(job.id)
        elif stopped == "interrupted":
            self.queue.fail(job.id, INTERRUPTED)
        elif "failed" in outcome:
            self.queue.fail(job.id, str(outcome["failed"]))
        elif "cancelled" in outcome:
            self.queue.fail(job.id, f"The job's process was stopped from outside ({outcome['cancelled']}); "
                                    "nothing half-built was kept.")
        elif returncode < 0:
            self.queue.fail(job.id, f"The job's process was killed by {signal.Signals(-returncode).name} "
                                    "(out of memory?); nothing half-built was kept.")
        else:
            self.queue.fail(job.id, f"The job's process stopped with exit status {returncode} before it "
                                    "reported a result; the worker log has the details.")
        state = self.queue.get(job.id)
        log.info("job %s %s: %s (its log: %s)", job.id, state.status, state.message, log_path(job.id))


class _Lines:
    """JSON lines from the job's pipe, read without blocking past a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd, self.closed, self._buffer = fd, False, b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)

    def read(self, timeout: float) -> list[dict]:
        out: list[dict] = []
        while not self.closed and self._selector.select(timeout):
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
                self._selector.close()
                break
            self._buffer += chunk
            timeout = 0  # take what is there now, then return
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("job process sent a line that is not JSON: %r", line[:200])
                continue
            if isinstance(message, dict):
                out.append(message)
        return out


# ----------------------------------------------------------------------------------------------
# starting the worker from the app

_SPAWNED: list[subprocess.Popen] = []


def ensure_worker(url: Optional[str] = None, *, wait: float = 20.0) -> bool:
    """Start a worker for the database at ``url`` unless one already runs on this machine; True if started.

    Called by the app (cheap when a worker runs: one file-lock probe). The worker is detached (its own
    session) but watches this process and exits when it is gone. A second lock serialises racing callers,
    and each waits until the worker it started holds the worker lock, so two callers never start two.
    """
    queue = JobQueue(url)
    for proc in list(_SPAWNED):  # reap workers that have exited
        if proc.poll() is not None:
            _SPAWNED.remove(proc)
    with build_lock(_lock_name(queue) + "-spawn", timeout=wait + 10):
        if worker_running(queue):
            return False
        job_dir().mkdir(parents=True, exist_ok=True)
        with open(job_dir() / "worker.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.jobs", "worker", "--parent-pid", str(os.getpid()),
                 "--lock-file", str(worker_lock_path(queue))], cwd=ROOT,
                env=child_env(queue), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        _SPAWNED.append(proc)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if worker_running(queue):
                log.info("started the jobs worker (pid %s) for %s", proc.pid, queue.url)
                return True
            if proc.poll() is not None:
                log.warning("the jobs worker exited at once (status %s); see %s", proc.returncode,
                            job_dir() / "worker.log")
                return False
            time.sleep(0.05)
        log.warning("the jobs worker (pid %s) did not start within %.0f s", proc.pid, wait)
        return True
