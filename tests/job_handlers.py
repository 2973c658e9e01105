"""Tiny job handlers for tests/core/test_core_jobs.py: counting, failing, crashing, and an atomic folder build.

Each writes its own process id to ``params["pid_file"]`` when given, so a test can check that a stopped
job's process is really gone, and appends to ``params["ledger"]`` when given, so a test can count how
many times a job ran.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from core.jobs import JobFailed, Progress, job_handler


def _note(params: dict) -> None:
    if params.get("pid_file"):
        Path(params["pid_file"]).write_text(str(os.getpid()))
    if params.get("ledger"):
        with open(params["ledger"], "a") as f:  # one short append per run: atomic on Linux
            f.write(f"{params['tag']} {os.getpid()}\n")


@job_handler
def count(params: dict, progress: Progress) -> dict:
    """Report ``steps`` times, ``sleep`` seconds apart."""
    _note(params)
    steps = int(params.get("steps", 3))
    for i in range(steps):
        time.sleep(float(params.get("sleep", 0.05)))
        progress((i + 1) / steps, f"step {i + 1} of {steps}")
    return {"steps": steps, "tag": params.get("tag")}


@job_handler
def refuse(params: dict, progress: Progress) -> dict:
    """Fail the way a build fails on bad input: with a sentence for the user."""
    raise JobFailed(params.get("message", "The catalog has no readable image."))


@job_handler
def crash(params: dict, progress: Progress) -> dict:
    """Fail the way a bug does."""
    return {"value": {}["missing"]}


@job_handler
def die(params: dict, progress: Progress) -> dict:
    """Die the way the kernel's out-of-memory killer ends a process: SIGKILL, no goodbye."""
    progress(0.3, "about to die")
    progress.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@job_handler
def build_folder(params: dict, progress: Progress) -> dict:
    """Write ``steps`` files into the scratch folder, then rename it onto ``params["target"]``."""
    _note(params)
    target = Path(params["target"])
    work = progress.scratch / "build"
    work.mkdir()
    steps = int(params.get("steps", 5))
    try:
        for i in range(steps):
            try:  # a build skips a bad item and goes on; a cancel must still get through
                (work / f"part-{i}.txt").write_text(f"part {i}\n")
                time.sleep(float(params.get("sleep", 0.1)))
            except Exception:  # noqa: BLE001
                continue
            progress((i + 1) / steps, f"wrote part {i + 1} of {steps}")
        os.replace(work, target)
    finally:
        if params.get("cleanup_file"):
            Path(params["cleanup_file"]).write_text("cleaned up")
    return {"target": str(target), "parts": steps}


@job_handler
def stubborn(params: dict, progress: Progress) -> dict:
    """Ignore SIGTERM and never report: only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _note(params)
    progress(0.5, "busy")
    time.sleep(60)
    return {}


def unmarked(params: dict, progress: Progress) -> dict:
    """Not a job handler: the worker must refuse to run it."""
    return {"ran": True}
