"""Background jobs: heavy work (catalog builds, training) queued in the database and run by worker processes.

``JobQueue`` (queue.py) is the table: submit, watch, cancel. ``job_handler`` / ``Progress`` (handlers.py) is
what a job's function sees. ``Worker`` / ``ensure_worker`` (worker.py) run the jobs in child processes,
never in the app's server process. ``python -m core.jobs worker|list|show|cancel`` is the command line.

Names are loaded on first use: a job's own process imports only handlers.py (the standard library), not the
database stack the queue and the worker need, so it starts in a fraction of the time.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "JobCancelled": "handlers", "JobFailed": "handlers", "Progress": "handlers", "job_handler": "handlers",
    "ACTIVE": "queue", "INTERRUPTED": "queue", "STATUSES": "queue", "JobError": "queue", "JobQueue": "queue",
    "JobView": "queue", "Worker": "worker", "ensure_worker": "worker", "worker_running": "worker",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'core.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"core.jobs.{_WHERE[name]}"), name)
