"""What the job machinery itself costs: a job process's start, one job's round trip, the app's worker check.

    python bench/jobs_overhead.py [--repeats 5] [--jobs 10] [--out jobs_overhead]

Measures, in a temporary models folder and SQLite database:

- the CPU-seconds (user + system, from ``os.wait4``) of a Python process that imports what a job process
  imports (``core.jobs.handlers``) beside one that imports the database stack (``core.jobs.queue``), medians
  of ``--repeats`` alternating runs;
- ``--jobs`` trivial jobs (one progress report each) through one ``python -m core.jobs worker --once``: the
  wall time per job, from the first claim to the last ``done`` (worker start-up excluded);
- ``ensure_worker``: the first call (starts the worker, waits until it holds its lock) and the median of 20
  calls once it runs.

Writes ``bench/results/<out>.json`` with the machine's load average, because on a shared machine every number
here moves with it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_cpu(module: str, env: dict[str, str]) -> float:
    proc = subprocess.Popen([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"error: importing {module} failed")
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--out", default="jobs_overhead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recs-jobs-bench-"))
    os.environ.update(RECS_MODELS_DIR=str(tmp / "models"), RECS_DATABASE_URL=f"sqlite:///{tmp / 'jobs.sqlite3'}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sys.path.insert(0, str(ROOT))
    from core.jobs import JobQueue, ensure_worker  # after RECS_MODELS_DIR is set: it is read at import

    cpu: dict[str, list[float]] = {"core.jobs.handlers": [], "core.jobs.queue": []}
    for _ in range(args.repeats):
        for module in cpu:
            cpu[module].append(_import_cpu(module, env))

    queue = JobQueue()
    ids = [queue.submit("bench", "tests.job_handlers:count", f"job {i}", {"steps": 1, "sleep": 0})
           for i in range(args.jobs)]
    worker = subprocess.run([sys.executable, "-m", "core.jobs", "worker", "--once", "--no-lock", "--poll", "0.1"],
                            cwd=ROOT, env=env, capture_output=True, timeout=600)
    if worker.returncode:
        raise SystemExit("error: the worker failed: " + worker.stderr.decode(errors="replace")[-500:])
    views = [queue.get(i) for i in ids]
    if any(v.status != "done" for v in views):
        raise SystemExit("error: not every job finished: " + ", ".join(f"{v.id} {v.status}" for v in views))
    first = min(_dt.datetime.fromisoformat(v.started_at) for v in views)
    last = max(_dt.datetime.fromisoformat(v.finished_at) for v in views)

    t0 = time.perf_counter()
    started = ensure_worker()
    first_call = time.perf_counter() - t0
    again = []
    for _ in range(20):
        t0 = time.perf_counter()
        ensure_worker()
        again.append(time.perf_counter() - t0)
    job_id = queue.submit("bench", "tests.job_handlers:count", "stop", {"steps": 1, "sleep": 0})
    view = queue.wait(job_id, timeout=120)
    os.kill(int(view.worker.rsplit(":", 1)[1]), signal.SIGTERM)  # the worker we started, by its own pid

    result = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1_5_15": list(os.getloadavg()), "cpus": os.cpu_count(),
        "import_cpu_seconds_median": {m: round(statistics.median(v), 3) for m, v in cpu.items()},
        "import_cpu_seconds_runs": {m: [round(x, 3) for x in v] for m, v in cpu.items()},
        "jobs": args.jobs,
        "seconds_per_job": round((last - first).total_seconds() / args.jobs, 3),
        "ensure_worker_first_call_seconds": round(first_call, 3), "ensure_worker_started": started,
        "ensure_worker_running_ms_median": round(statistics.median(again) * 1000, 3),
    }
    out = ROOT / "bench" / "results" / f"{args.out}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
