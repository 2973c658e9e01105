"""Time the test suite a few files at a time and record every test's duration in ``bench/results/test_durations.json``.

Why: choosing which tests belong to the slow tier needs each test's own time, and on a machine shared with other
jobs a whole-suite run both takes long and disturbs everyone else. This script runs ``pytest --durations=0`` on
small batches of files, one batch after the other, and merges each test's setup, call and teardown times (plus its
outcome and the machine's load average around the batch) into one JSON that ``make readme-numbers`` turns into the
table in docs/testing.md.

    python scripts/test_durations.py tests/core/test_core_metrics.py tests/core/test_identity.py   # those files, one batch
    python scripts/test_durations.py --batch 4 tests/*/test_*.py                            # the suite, 4 files a batch
    python scripts/test_durations.py --marks tests/*/test_*.py         # only record each test's slow/browser marks
    python scripts/test_durations.py --tier "not slow" tests/        # time one `pytest -m EXPR` run as a whole

A fixture's set-up is charged to the first test that uses it (a session-wide app server to the first browser test),
as pytest reports it. Results for files run again replace their earlier entries; other files' entries are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "test_durations.json"
log = logging.getLogger("test_durations")


class DurationRecorder:
    """A pytest plugin that keeps each test's phase durations and outcome, written as JSON at the session's end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tests: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(report.nodeid, {"setup": 0.0, "call": 0.0, "teardown": 0.0,
                                                      "outcome": "passed"})
        entry[report.when] = round(report.duration, 3)
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.tests))


class MarkRecorder:
    """A pytest plugin that writes each collected test's tier marks (``slow``, ``browser``) as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        marks = {item.nodeid: {"marks": sorted(m for m in TIER_MARKS if item.get_closest_marker(m)),
                               "slow_reason": (item.get_closest_marker("slow").kwargs.get("reason")
                                               if item.get_closest_marker("slow") else None)}
                 for item in session.items}
        self.path.write_text(json.dumps(marks))


TIER_MARKS = ("slow", "browser")


def _pytest(args: list[str], plugin: str, out: Path) -> subprocess.CompletedProcess:
    """``pytest args`` in a child interpreter (a fresh one, as ``make test`` runs) with one of this file's plugins
    writing to ``out``."""
    code = (f"import sys, pytest; from pathlib import Path; from scripts.test_durations import {plugin}; "
            f"sys.exit(pytest.main(sys.argv[1:], plugins=[{plugin}(Path({str(out)!r}))]))")
    return subprocess.run([sys.executable, "-c", code, "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)


def run_batch(files: list[str]) -> dict[str, dict]:
    """Run pytest on ``files`` in a child process (a fresh interpreter, as ``make test`` would) and return its times."""
    with tempfile.TemporaryDirectory(prefix="test-durations-") as tmp:
        out = Path(tmp) / "tests.json"
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        proc = _pytest(["-q", "--durations=0", *files], "DurationRecorder", out)
        wall = time.monotonic() - started
        sys.stdout.write(proc.stdout[-3000:])
        tests = json.loads(out.read_text()) if out.is_file() else {}
    load = round((load_before + os.getloadavg()[0]) / 2, 2)
    for entry in tests.values():
        entry["total"] = round(entry["setup"] + entry["call"] + entry["teardown"], 3)
        entry["load_avg_1min"] = load
    log.info("%d files, %d tests in %.0f s (exit %d, load average about %.1f)", len(files), len(tests), wall,
             proc.returncode, load)
    return tests


def record_marks(files: list[str]) -> dict[str, dict]:
    """Each test's tier marks and the reason its slow mark gives, from a collection-only run (nothing runs)."""
    with tempfile.TemporaryDirectory(prefix="test-marks-") as tmp:
        out = Path(tmp) / "marks.json"
        proc = _pytest(["-q", "--collect-only", *files], "MarkRecorder", out)
        if not out.is_file():
            raise SystemExit(f"error: collecting the tests failed: {proc.stdout[-500:]}")
        return json.loads(out.read_text())


def time_tier(expression: str, paths: list[str]) -> dict:
    """One ``pytest -m expression`` run over ``paths``, timed as a whole (interpreter start and collection too)."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="test-tier-") as tmp:
        started = time.monotonic()
        proc = _pytest(["-q", "-m", expression, *paths], "DurationRecorder", Path(tmp) / "tests.json")
        wall = time.monotonic() - started
        tests = json.loads((Path(tmp) / "tests.json").read_text())
    sys.stdout.write(proc.stdout[-2000:])
    outcomes = [t["outcome"] for t in tests.values()]
    return {"expression": expression, "command": f'pytest -q -m "{expression}" {" ".join(paths)}',
            "seconds": round(wall, 1), "tests": len(tests), "exit_code": proc.returncode,
            "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}


def update(result: Path, change: Callable[[dict], None]) -> None:
    """Read ``result``, apply ``change`` and write it back atomically (built beside it, then renamed)."""
    data = json.loads(result.read_text()) if result.is_file() else {}
    data.setdefault("what", "each test's setup/call/teardown seconds, from `pytest --durations=0` run a few files "
                            "at a time, and the tier marks each test carries")
    data.setdefault("command", "python scripts/test_durations.py --batch 4 tests/*/test_*.py")
    data["cores"] = os.cpu_count()
    change(data)
    data["tests"] = dict(sorted(data.get("tests", {}).items()))
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(result)


def merge(result: Path, files: list[str], tests: dict[str, dict]) -> None:
    """Replace the entries of ``files`` in ``result`` with ``tests``; keep the other files' entries."""
    def change(data: dict) -> None:
        kept = {k: v for k, v in data.get("tests", {}).items() if k.split("::")[0] not in files}
        data["tests"] = {**kept, **tests}
    update(result, change)


def merge_marks(result: Path, marks: dict[str, dict]) -> None:
    """Set each timed test's ``marks`` and ``slow_reason`` (tests not collected now keep theirs)."""
    def change(data: dict) -> None:
        for nodeid, entry in data.get("tests", {}).items():
            if nodeid in marks:
                entry.update(marks[nodeid])
                if entry["slow_reason"] is None:
                    del entry["slow_reason"]
    update(result, change)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="test files to time")
    parser.add_argument("--batch", type=int, default=0, help="files per pytest run (default: all in one run)")
    parser.add_argument("--out", type=Path, default=RESULT, help="the JSON to merge into")
    parser.add_argument("--marks", action="store_true", help="only record each test's slow/browser marks")
    parser.add_argument("--tier", metavar="EXPR", help='time one whole `pytest -m EXPR` run (e.g. "not slow")')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = [os.path.relpath(Path(f).resolve(), ROOT) for f in args.files]
    missing = [f for f in files if not (ROOT / f).exists()]
    if missing:
        print(f"error: no such test file: {missing[0]}", file=sys.stderr)
        return 2
    if args.marks:
        merge_marks(args.out, record_marks(files))
        return 0
    if args.tier:
        tier = time_tier(args.tier, files)
        log.info("%s", tier)
        update(args.out, lambda data: data.setdefault("tiers", {}).__setitem__(args.tier, tier))
        return 0
    size = args.batch or len(files)
    for start in range(0, len(files), size):
        batch = files[start:start + size]
        merge(args.out, batch, run_batch(batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
