"""``python -m core.jobs <verb>``: the job queue from a terminal, and the worker the app starts.

    python -m core.jobs worker [--once] [--poll 1.0] [--parent-pid PID] [--grace 5] [--lock-file F | --no-lock]
    python -m core.jobs list [--limit 50] [--status running ...] [--json]
    python -m core.jobs show ID [--json]
    python -m core.jobs cancel ID [--json]
    python -m core.jobs run ID        # what the worker runs in a child process for one claimed job

The database is ``RECS_DATABASE_URL`` (default: the feedback store's SQLite file).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from core.cli import Parser, fail

if TYPE_CHECKING:
    from core.jobs.queue import JobView

# the queue and the worker (SQLAlchemy, numpy) are imported inside the verbs that use them: the job process
# (`run`) needs neither, and starting it without them saves about 1.5 CPU-seconds per job


def _line(view: JobView) -> str:
    eta = f" ~{view.eta_seconds:.0f}s left" if view.status == "running" and view.eta_seconds is not None else ""
    return (f"{view.id:>5}  {view.status:9s} {view.progress:4.0%}{eta}  {view.title}"
            + (f"  — {view.message}" if view.message else ""))


def _print(views: list[JobView], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(v) for v in views], indent=2, ensure_ascii=False))
    else:
        for view in views:
            print(_line(view))


def _worker(args: argparse.Namespace) -> int:
    if args.poll <= 0 or args.grace < 0:
        return fail("--poll must be above 0 and --grace at least 0.")
    lock = None
    if args.lock_file and not args.no_lock:  # taken before the database stack loads: the app waits a moment only
        lock = FileLock(args.lock_file, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            logging.getLogger("core.jobs.worker").info("another worker holds %s; exiting", args.lock_file)
            return 0
    # loaded after the worker lock is taken, so a second worker exits at once (see the note at the top)
    from core.jobs.queue import JobError
    from core.jobs.worker import Worker

    try:
        worker = Worker(poll=args.poll, parent_pid=args.parent_pid, grace=args.grace, use_lock=not args.no_lock)
    except JobError as exc:
        return fail(str(exc))
    return worker.run(once=args.once, held_lock=lock)


def _list(args: argparse.Namespace) -> int:
    # the database stack loads only in the verbs that use it (see the note at the top)
    from core.jobs.queue import JobQueue

    _print(JobQueue().list(limit=args.limit, statuses=args.status), args.json)
    return 0


def _show(args: argparse.Namespace) -> int:
    # the database stack loads only in the verbs that use it (see the note at the top)
    from core.jobs.queue import JobQueue

    _print([JobQueue().get(args.id)], args.json)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    # the database stack loads only in the verbs that use it (see the note at the top)
    from core.jobs.queue import JobQueue

    _print([JobQueue().cancel(args.id)], args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    # a job's child process starts without the database stack (see the note at the top)
    from core.jobs.handlers import run_child

    return run_child(args.id)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m core.jobs", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("worker", help="claim and run queued jobs, one at a time")
    p.add_argument("--once", action="store_true", help="exit when no job is queued (after running those that are)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone (the app)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds a cancelled job has to clean up")
    p.add_argument("--lock-file", default=None, help="the worker lock to hold (default: the one for the database)")
    p.add_argument("--no-lock", action="store_true",
                   help="run beside the machine's locked worker (an extra worker sharing the queue)")
    p.set_defaults(func=_worker)
    p = sub.add_parser("list", help="the newest jobs, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--status", action="append", help="only jobs in this state: queued, running, done, failed "
                   "or cancelled (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)
    for verb, func, text in (("show", _show, "one job"), ("cancel", _cancel, "cancel a queued or running job"),
                             ("run", _run, "run one claimed job in this process (the worker's child)")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("id", type=int)
        if verb != "run":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verb in ("worker", "run") else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start migration chatter
    if args.verb in ("run", "worker"):  # no database stack before the job starts / the worker takes its lock
        return args.func(args)
    # the database stack loads only in the verbs that use it (see the note at the top)
    from sqlalchemy.exc import SQLAlchemyError

    # the database stack loads only in the verbs that use it (see the note at the top)
    from core.jobs.queue import JobError

    try:
        return args.func(args)
    except JobError as exc:
        return fail(str(exc))
    except SQLAlchemyError as exc:
        return fail(f"The jobs database is not usable ({type(exc).__name__}).")


if __name__ == "__main__":
    sys.exit(main())
