"""Build the app's default models in two lanes at once, with one live progress line per lane.

    python scripts/build_models.py [--jobs 2] [--dry-run]

Why lanes: most of the training lane (hashtag decoder, music) runs on one thread, so building one step at a time
left a core idle for about half of the first `make run`. The image lane (Fashion-MNIST index, the shipped Tux Paint
catalogs and product search's head on them) and the training lane (hashtags, music) share nothing, so each gets an equal share of the cores.

Why a runner instead of `make -j`: two processes drawing progress bars on one terminal garble each other, and
make's `--output-sync` hides a step's bar until the step ends. Here each step writes its full output to
`<models>/build-logs/<step>.log`, and the terminal shows, per lane, the step running now with the last progress
line it printed. A failing step prints the end of its log; the other lane finishes its current step (no half-written
artifacts) and the command exits non-zero. Each step skips itself when its artifact is fresh, so a second run is
fast and a failed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.build_status import STATUS_FILE, write_status  # noqa: E402


@dataclass(frozen=True)
class Step:
    """One default model: a name for the log file and the module command that builds it (skips when fresh)."""

    name: str
    args: tuple[str, ...]


#: Steps of a lane run in order (a later one may read an earlier one's artifact); lanes run side by side.
LANES: dict[str, tuple[Step, ...]] = {
    "images": (
        Step("fashion-mnist", ("-m", "fashion", "index")),
        # the shipped Tux Paint catalogs are ordinary catalogs (core.catalog), each built once for both tabs;
        # product search then fits its head (text, projection) on the tuxpaint catalog's items and vectors
        Step("tuxpaint-clothes", ("-m", "core", "catalog", "add", "tuxpaint-clothes", "shipped:tuxpaint-clothes",
                                  "--update")),
        Step("product-search", ("-m", "multimodal", "index")),
    ),
    "training": (
        Step("hashtag-dataset", ("-m", "hashtag", "build-dataset")),
        Step("hashtag", ("-m", "hashtag", "train")),
        Step("music", ("-m", "music", "train")),
        Step("music-next", ("-m", "music", "train-next")),
    ),
}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def last_progress_line(path: Path, tail_bytes: int = 4096) -> str:
    """The last thing a step drew: progress bars rewrite their line with carriage returns, so split on both."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - tail_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [_ANSI.sub("", p).strip() for p in re.split(r"[\r\n]", text)]
    # a step that ends by printing JSON ends on "}": the line worth showing is the last one that says something
    return next((p for p in reversed(parts) if p.strip("{}[](),") != ""), "")


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a step's log with progress-bar redraws collapsed, for the failure message."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    rows = [_ANSI.sub("", line.split("\r")[-1]) for line in text.splitlines()]
    return "\n".join(rows[-lines:])


@dataclass
class Lane:
    """A lane's queue of steps and the process running its current one."""

    name: str
    steps: list[Step]
    proc: subprocess.Popen | None = None
    step: Step | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    done: list[tuple[str, float]] = field(default_factory=list)
    failed: Step | None = None


class Builder:
    """Runs the lanes, draws one status line per lane, and reports each step as it ends."""

    def __init__(self, lanes: dict[str, tuple[Step, ...]], *, jobs: int, log_dir: Path, python: str,
                 out: IO[str] = sys.stdout, live: bool | None = None, status: Path | None = None) -> None:
        self.lanes = [Lane(name, list(steps)) for name, steps in lanes.items()]
        self.plan = [(name, step.name) for name, steps in lanes.items() for step in steps]
        self.status = status
        self._status_at = 0.0
        self._began = time.time()
        self.jobs = max(1, jobs)
        self.threads = max(1, len(os.sched_getaffinity(0)) // min(self.jobs, len(self.lanes)))
        self.log_dir = log_dir
        self.python = python
        self.out = out
        self.live = out.isatty() if live is None else live
        self._drawn = 0

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, RECS_THREADS=str(self.threads), OMP_NUM_THREADS=str(self.threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _start_next(self, lane: Lane) -> None:
        lane.step = lane.steps.pop(0)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lane.log = (self.log_dir / f"{lane.step.name}.log").open("wb")
        lane.proc = subprocess.Popen([self.python, *lane.step.args], stdout=lane.log, stderr=subprocess.STDOUT,
                                     env=self._env(), cwd=ROOT)
        lane.started = time.monotonic()
        self._write_status()
        self._say(f"[{lane.name}] {lane.step.name}: started ({' '.join(lane.step.args)})")

    def _say(self, message: str) -> None:
        """A permanent line above the live status lines."""
        self._clear()
        print(message, file=self.out, flush=True)

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if not self.live:
            return
        self._clear()
        width = max(40, (os.get_terminal_size(self.out.fileno()).columns if self.out.isatty() else 120) - 1)
        rows = []
        for lane in self.lanes:
            if lane.proc is None:
                continue
            seconds = time.monotonic() - lane.started
            now = last_progress_line(self.log_dir / f"{lane.step.name}.log")
            rows.append(f"  {lane.name:>8} | {lane.step.name:<16} {seconds:4.0f} s | {now}"[:width])
        for row in rows:
            self.out.write(row + "\n")
        self.out.flush()
        self._drawn = len(rows)

    def _write_status(self, state: str = "running", every: float = 0.0) -> None:
        """Each step's state for the app's banner (core.build_status); at most once per ``every`` seconds."""
        if self.status is None or time.monotonic() - self._status_at < every:
            return
        self._status_at = time.monotonic()
        by_lane = {lane.name: lane for lane in self.lanes}
        steps = []
        for lane_name, step in self.plan:
            lane = by_lane[lane_name]
            done = dict(lane.done)
            if step in done:
                row = {"state": "done", "seconds": round(done[step], 1)}
            elif lane.failed and lane.failed.name == step:
                row = {"state": "failed"}
            elif lane.step is not None and lane.step.name == step:
                row = {"state": "running", "seconds": round(time.monotonic() - lane.started, 1),
                       "progress": last_progress_line(self.log_dir / f"{step}.log")[:120]}
            else:
                row = {"state": "queued"}
            steps.append({"name": step, "lane": lane_name, **row})
        write_status(self.status, state=state, steps=steps, started=self._began)

    def _finish(self, lane: Lane, code: int) -> None:
        seconds = time.monotonic() - lane.started
        lane.log.close()
        path = self.log_dir / f"{lane.step.name}.log"
        if code == 0:
            lane.done.append((lane.step.name, seconds))
            self._say(f"[{lane.name}] {lane.step.name}: done in {seconds:.0f} s — {last_progress_line(path)}")
        else:
            lane.failed = lane.step
            lane.steps.clear()
            self._say(f"[{lane.name}] {lane.step.name}: FAILED (exit {code}) after {seconds:.0f} s; "
                      f"end of {path}:\n{log_tail(path)}")
        lane.proc, lane.step, lane.log = None, None, None
        self._write_status()

    def run(self, poll: float = 0.5, heartbeat: float = 30.0) -> int:
        """Build everything; 0 when every step succeeded."""
        began = last_beat = time.monotonic()
        try:
            while True:
                failed = any(lane.failed for lane in self.lanes)
                running = [lane for lane in self.lanes if lane.proc is not None]
                for lane in self.lanes:
                    if lane.proc is None and lane.steps and not failed and len(running) < self.jobs:
                        self._start_next(lane)
                        running.append(lane)
                if not running:
                    break
                time.sleep(poll)
                for lane in running:
                    code = lane.proc.poll()
                    if code is not None:
                        self._finish(lane, code)
                self._write_status(every=3.0)
                if self.live:
                    self._draw()
                elif time.monotonic() - last_beat >= heartbeat:
                    last_beat = time.monotonic()
                    for lane in self.lanes:
                        if lane.proc is not None:
                            print(f"  [{lane.name}] {lane.step.name} {time.monotonic() - lane.started:.0f} s: "
                                  f"{last_progress_line(self.log_dir / f'{lane.step.name}.log')}", file=self.out,
                                  flush=True)
        except KeyboardInterrupt:
            for lane in self.lanes:
                if lane.proc is not None:
                    lane.proc.terminate()
                    lane.proc.wait()
            self._write_status("interrupted")
            self._say("interrupted: steps that finished keep their models; run again to resume")
            return 130
        self._clear()
        failed = [lane.failed.name for lane in self.lanes if lane.failed]
        total = time.monotonic() - began
        self._write_status("failed" if failed else "done")
        if failed:
            print(f"model build failed at {', '.join(failed)} after {total:.0f} s (logs in {self.log_dir})",
                  file=self.out, flush=True)
            return 1
        print(f"default models ready in {total:.0f} s (logs in {self.log_dir})", file=self.out, flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MODEL_JOBS", 2)),
                        help="steps at a time (1: one step at a time on all cores)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON and build nothing")
    args = parser.parse_args(argv)
    models = Path(os.environ.get("RECS_MODELS_DIR", ROOT / "models"))
    builder = Builder(LANES, jobs=args.jobs, log_dir=models / "build-logs", python=sys.executable,
                      status=models / STATUS_FILE)
    if args.dry_run:
        print(json.dumps({"jobs": builder.jobs, "threads": builder.threads,
                          "lanes": {lane: [list(s.args) for s in steps] for lane, steps in LANES.items()}}))
        return 0
    print(f"building the default models, {builder.jobs} step(s) at a time on {builder.threads} thread(s) each "
          f"(about 5 to 6 min on 2 idle cores; each step skips itself when its model is fresh)", flush=True)
    return builder.run()


if __name__ == "__main__":
    sys.exit(main())
