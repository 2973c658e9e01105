"""The job queue and its workers: states, progress, failures, cancel, a killed worker, racing workers.

Workers run as real processes (``python -m core.jobs worker``) and jobs in their child processes, exactly as
the app runs them; the handlers are in tests/job_handlers.py. The racing tests run on SQLite and on a real
PostgreSQL server (tests/pg_fixture.py).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from core import artifacts
from core.feedback.store import close_engine
from core.jobs import INTERRUPTED, JobError, JobQueue, Worker, ensure_worker, worker_running
from core.jobs import __main__ as jobs_cli
from core.jobs.handlers import Progress, execute
from core.jobs.worker import child_env, log_path, pid_alive, scratch_path
from tests.pg_fixture import postgres_server  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
H = "tests.job_handlers:"


@pytest.fixture(autouse=True)
def models(tmp_path, monkeypatch) -> Path:
    """A private models folder per test: job logs, scratch folders and the worker lock live there."""
    folder = tmp_path / "models"
    monkeypatch.setattr(artifacts, "MODELS_DIR", folder)
    return folder


@pytest.fixture()
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    yield url
    close_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path) -> str:
    url = (f"sqlite:///{tmp_path / 'jobs.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_server").database())
    yield url
    close_engine(url)


def start_worker(url: str, *args: str) -> subprocess.Popen:
    """``python -m core.jobs worker ARGS`` as its own process, on ``url``."""
    return subprocess.Popen([sys.executable, "-m", "core.jobs", "worker", "--poll", "0.2", *args], cwd=ROOT,
                            env=child_env(JobQueue(url)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_pid(path: Path) -> int:
    return int(wait_for(lambda: path.is_file() and path.read_text().strip(), what=f"{path.name}"))


# ----------------------------------------------------------------------------------------------
# the queue on its own


def test_submit_refuses_bad_jobs_with_one_sentence(sqlite_url):
    q = JobQueue(sqlite_url)
    bad = [
        dict(kind="Catalog Build!", handler=H + "count", title="t"),
        dict(kind="build", handler="tests.job_handlers.count", title="t"),
        dict(kind="build", handler=H + "count", title="   "),
        dict(kind="build", handler=H + "count", title="t", params={"files": {1, 2}}),
        dict(kind="build", handler=H + "count", title="t", params={"x": float("nan")}),
        dict(kind="build", handler=H + "count", title="t", params=["not", "a", "dict"]),
        dict(kind="build", handler=H + "count", title="t", params={"blob": "x" * 70_000}),
        dict(kind="build", handler=H + "count", title="t", owner="o" * 65),
    ]
    for kwargs in bad:
        with pytest.raises(JobError) as err:
            q.submit(**kwargs)
        assert "\n" not in str(err.value) and str(err.value).endswith(".")
    assert q.list() == []
    job = q.get(q.submit("build", H + "count", "line one\nline two " + "x" * 300, {"steps": 1}))
    assert "\n" not in job.title and len(job.title) == 200 and job.title.endswith("…")
    with pytest.raises(JobError, match="no job 999"):
        q.get(999)
    with pytest.raises(JobError, match="Unknown job status"):
        q.list(statuses=["finished"])


def test_queued_job_cancels_at_once_and_is_never_claimed(sqlite_url):
    q = JobQueue(sqlite_url)
    first = q.submit("build", H + "count", "first")
    second = q.submit("build", H + "count", "second")
    view = q.cancel(first)
    assert (view.status, view.active, view.finished_at is not None) == ("cancelled", False, True)
    claimed = q.claim("w1")
    assert claimed.id == second and claimed.status == "running" and claimed.worker == "w1"
    assert q.claim("w2") is None
    assert [v.id for v in q.list()] == [second, first]  # newest first
    assert [v.id for v in q.list(statuses=["cancelled"])] == [first]
    assert q.finish(second, {"ok": True}) and q.cancel(second).status == "done"  # too late to cancel: stays done


def test_report_sets_progress_eta_and_heartbeat_and_ends_are_final(sqlite_url):
    q = JobQueue(sqlite_url)
    job_id = q.submit("build", H + "count", "t")
    q.claim("w")
    time.sleep(0.3)
    assert q.report(job_id, 0.25, "encoding") is False
    view = q.get(job_id)
    assert view.progress == 0.25 and view.message == "encoding"
    assert view.eta_seconds is not None and view.eta_seconds >= 0.8  # 3x the time so far (>= 0.3 s)
    q.cancel(job_id)
    assert q.report(job_id, 0.5, "still going") is True  # the job learns of the cancel from its report
    assert q.fail(job_id, "boom.") and not q.finish(job_id, {})  # the first end wins
    assert q.get(job_id).status == "failed"


def test_claim_is_atomic_under_racing_threads(any_url):
    q = JobQueue(any_url)
    ids = [q.submit("race", H + "count", f"job {i}") for i in range(60)]
    got: list[list[int]] = [[] for _ in range(6)]
    start = threading.Barrier(6)

    def claimer(k: int) -> None:
        mine = JobQueue(any_url)
        start.wait()
        while (job := mine.claim(f"w{k}")) is not None:
            got[k].append(job.id)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for chunk in got for i in chunk]
    assert sorted(claimed) == ids  # every job once, none twice


def test_recover_stale_fails_only_jobs_without_a_recent_heartbeat(sqlite_url):
    q = JobQueue(sqlite_url)
    old, fresh = q.submit("b", H + "count", "old"), q.submit("b", H + "count", "fresh")
    q.claim("w"), q.claim("w")
    time.sleep(1.2)
    q.heartbeat(fresh)
    assert q.recover_stale(max_age_s=1.0) == [old]
    assert q.get(old).status == "failed" and q.get(old).message == INTERRUPTED
    assert q.get(fresh).status == "running"


# ----------------------------------------------------------------------------------------------
# the worker


@pytest.mark.slow(reason="worker processes")
def test_worker_runs_a_job_to_done_and_survives_a_crash_and_a_killed_job(sqlite_url):
    q = JobQueue(sqlite_url)
    ok = q.submit("build", H + "count", "count", {"steps": 3, "sleep": 0.2}, owner="ann")
    crashed = q.submit("build", H + "crash", "crash")
    killed = q.submit("build", H + "die", "die")
    after = q.submit("build", H + "count", "after the crashes", {"steps": 1})
    worker = start_worker(sqlite_url, "--once")
    assert worker.wait(timeout=120) == 0
    stop(worker)
    done = q.get(ok)
    assert (done.status, done.progress, done.result, done.owner) == ("done", 1.0, {"steps": 3, "tag": None}, "ann")
    assert done.started_at <= done.finished_at and not done.active
    crash = q.get(crashed)
    assert crash.status == "failed" and "failed unexpectedly (error id " in crash.message
    error_id = crash.message.split("error id ")[1][:8]
    job_log = log_path(crashed).read_text()
    assert error_id in job_log and "KeyError" in job_log
    died = q.get(killed)
    assert died.status == "failed" and "killed by SIGKILL" in died.message
    assert q.get(after).status == "done"  # the worker outlived both


@pytest.mark.parametrize("handler, params, expected", [
    ("refuse", {"message": "The zip holds no image (3 files skipped)."}, "The zip holds no image (3 files skipped)."),
    ("unmarked", {}, "'tests.job_handlers:unmarked' is not a job handler; only functions marked @job_handler"),
    ("nothing_here", {}, "is not a job handler"),
])
def test_failed_job_says_why_in_one_sentence(tmp_path, handler, params, expected):
    outcome = execute(H + handler, params, Progress(None, tmp_path / "scratch"))
    assert list(outcome) == ["failed"] and expected in outcome["failed"] and "\n" not in outcome["failed"]
    missing = execute("tests.no_such_module:build", {}, Progress(None, tmp_path / "scratch"))
    assert "cannot be loaded" in missing["failed"]


def test_progress_is_throttled_but_the_last_report_is_never_lost(tmp_path):
    channel = io.StringIO()
    progress = Progress(channel, tmp_path / "scratch", interval=60)
    for i in range(1, 101):
        progress(i / 200, f"step {i}")
    progress.flush()
    progress(1.0, "finished")
    sent = [json.loads(line) for line in channel.getvalue().splitlines()]
    assert sent == [{"progress": 0.005, "message": "step 1"}, {"progress": 0.5, "message": "step 100"},
                    {"progress": 1.0, "message": "finished"}]
    with pytest.raises(ValueError):
        progress(float("nan"))


@pytest.mark.slow(reason="worker processes")
def test_two_sessions_and_a_terminal_see_the_same_progress(sqlite_url):
    a, b = JobQueue(sqlite_url), JobQueue(sqlite_url)
    job_id = a.submit("build", H + "count", "slow count", {"steps": 8, "sleep": 0.5})
    worker = start_worker(sqlite_url, "--once")
    try:
        def mid_progress():
            va, vb = a.get(job_id), b.get(job_id)
            return (va, vb) if va.status == "running" and 0 < va.progress < 1 and va == vb else None

        va, vb = wait_for(mid_progress, what="progress between 0 and 1")
        assert va.message.startswith("step ") and va.eta_seconds is not None
        shown = subprocess.run([sys.executable, "-m", "core.jobs", "show", str(job_id), "--json"], cwd=ROOT,
                               env=child_env(a), capture_output=True, text=True, timeout=60)
        other = json.loads(shown.stdout)[0]
        assert other["id"] == job_id and other["status"] in ("running", "done") and other["progress"] >= va.progress
        assert worker.wait(timeout=60) == 0
    finally:
        stop(worker)
    assert a.get(job_id).progress == b.get(job_id).progress == 1.0


@pytest.mark.slow(reason="worker processes")
@pytest.mark.parametrize("handler", ["build_folder", "stubborn"])
def test_cancel_running_job_stops_its_process_and_builds_nothing(sqlite_url, tmp_path, handler):
    q = JobQueue(sqlite_url)
    target, pid_file, cleanup = tmp_path / "catalog", tmp_path / "job.pid", tmp_path / "cleanup"
    job_id = q.submit("build", H + handler, "long build", {"target": str(target), "steps": 100, "sleep": 0.2,
                                                           "pid_file": str(pid_file), "cleanup_file": str(cleanup)})
    worker = start_worker(sqlite_url, "--once", "--grace", "3")
    try:
        pid = read_pid(pid_file)
        wait_for(lambda: q.get(job_id).progress > 0, what="first progress")
        assert q.cancel(job_id).cancel_requested
        view = q.wait(job_id, timeout=30)
        assert worker.wait(timeout=30) == 0
    finally:
        stop(worker)
    assert view.status == "cancelled" and "Cancelled" in view.message
    assert not pid_alive(pid) and not target.exists() and not scratch_path(job_id).exists()
    # build_folder's `finally` ran (SIGTERM became JobCancelled, past its `except Exception`); stubborn needed SIGKILL
    assert cleanup.exists() == (handler == "build_folder")


@pytest.mark.slow(reason="worker processes")
def test_killed_worker_leaves_a_failed_job_and_no_half_built_folder(sqlite_url, tmp_path):
    q = JobQueue(sqlite_url)
    target, pid_file = tmp_path / "catalog", tmp_path / "job.pid"
    job_id = q.submit("build", H + "build_folder", "long build",
                      {"target": str(target), "steps": 100, "sleep": 0.1, "pid_file": str(pid_file)})
    worker = start_worker(sqlite_url)
    try:
        pid = read_pid(pid_file)
        wait_for(lambda: q.get(job_id).progress > 0.02, what="some progress")
        assert scratch_path(job_id).is_dir()  # half-built, in the scratch folder only
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop(worker)
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the job process to die with its worker")
    assert q.get(job_id).status == "running"  # nobody has noticed yet
    time.sleep(1.2)
    Worker(sqlite_url, stale_after=1.0).recover()  # what the next worker does at start
    view = q.get(job_id)
    assert (view.status, view.message) == ("failed", INTERRUPTED)
    assert not target.exists() and not scratch_path(job_id).exists()


@pytest.mark.slow(reason="worker processes")
def test_racing_workers_run_each_of_twenty_jobs_once(any_url, tmp_path):
    q = JobQueue(any_url)
    ledger = tmp_path / "ledger.txt"
    ids = [q.submit("race", H + "count", f"job {i}", {"steps": 1, "sleep": 0.0, "ledger": str(ledger), "tag": i})
           for i in range(20)]
    workers = [start_worker(any_url, "--once", "--no-lock") for _ in range(2)]
    try:
        for w in workers:
            assert w.wait(timeout=120) == 0
    finally:
        for w in workers:
            stop(w)
    runs = Counter(int(line.split()[0]) for line in ledger.read_text().splitlines())
    assert runs == Counter(range(20))  # each job ran exactly once
    views = [q.get(i) for i in ids]
    assert all(v.status == "done" for v in views)
    assert len({v.worker for v in views}) == 2  # both workers took part


def test_a_second_locked_worker_exits_quietly(sqlite_url):
    first = start_worker(sqlite_url)
    try:
        wait_for(lambda: worker_running(JobQueue(sqlite_url)), what="the worker lock")
        second = start_worker(sqlite_url)
        assert second.wait(timeout=60) == 0
        assert b"another worker already serves" in second.stderr.read()
        stop(second)
    finally:
        stop(first)


# ----------------------------------------------------------------------------------------------
# the app's side


def test_ensure_worker_starts_one_worker_that_runs_jobs(sqlite_url):
    q = JobQueue(sqlite_url)
    started: list[bool] = []
    callers = [threading.Thread(target=lambda: started.append(ensure_worker(sqlite_url))) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert sorted(started) == [False, True] and ensure_worker(sqlite_url) is False
    job_id = q.submit("build", H + "count", "count", {"steps": 2})
    view = q.wait(job_id, timeout=60)
    assert view.status == "done"
    worker_pid = int(view.worker.rsplit(":", 1)[1])
    os.kill(worker_pid, signal.SIGTERM)
    wait_for(lambda: not worker_running(q), timeout=20, what="the worker to stop")
    assert (artifacts.MODELS_DIR / "jobs" / "worker.log").is_file()


@pytest.mark.slow(reason="worker processes")
def test_worker_exits_when_its_parent_process_is_gone(sqlite_url):
    parent = subprocess.Popen(["sleep", "60"])
    worker = start_worker(sqlite_url, "--parent-pid", str(parent.pid))
    try:
        wait_for(lambda: worker_running(JobQueue(sqlite_url)), what="the worker lock")
        parent.kill()
        assert worker.wait(timeout=20) == 0
        assert b"is gone" in worker.stderr.read()
    finally:
        stop(worker)
        parent.wait()


def test_cli_errors_are_one_line(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("RECS_DATABASE_URL", sqlite_url)
    for args in (["show", "12345"], ["cancel", "nope"], ["list", "--status", "finished"], ["worker", "--poll", "0"]):
        try:
            status = jobs_cli.main(args)
        except SystemExit as exc:  # argparse's own complaints exit through Parser.error
            status = exc.code
        assert status == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
    job_id = JobQueue(sqlite_url).submit("build", H + "count", "listed")
    assert jobs_cli.main(["list", "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)] == [job_id]


def test_waiting_finds_the_active_job_of_a_kind_and_params_only(sqlite_url):
    queue = JobQueue(sqlite_url)
    first = queue.submit("demo.build", "tests.job_handlers:count", "Build a", {"catalog": "a"})
    queue.submit("demo.build", "tests.job_handlers:count", "Build b", {"catalog": "b"})
    queue.submit("demo.other", "tests.job_handlers:count", "Other a", {"catalog": "a"})
    assert queue.waiting("demo.build", catalog="a").id == first
    assert queue.waiting("demo.build", catalog="c") is None
    queue.cancel(first)  # an ended job no longer waits: the next click queues a new one
    assert queue.waiting("demo.build", catalog="a") is None
    assert queue.waiting("demo.build").params["catalog"] == "b"
