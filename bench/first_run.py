"""How long the first `make run` takes on a fresh clone: set-up, each default model, and the app answering.

    python bench/first_run.py [--repo .] [--port 8765] [--warm-uv-cache] [--out first_run]

Clones the repository's committed HEAD into a temporary folder (nothing from this checkout's venv, models or data
is reused), runs `make run` there, polls the app's health endpoint, and reads each model step's time from the
build runner's "done in" lines. uv's download cache is emptied for the run unless --warm-uv-cache (a first run
on a new machine has none); pip's cache is left as it is. Run it with nothing else on the machine: the two model
lanes each want a core. Writes bench/results/<out>.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.metrics import write_result  # noqa: E402

log = logging.getLogger("first_run")
DONE = re.compile(r"^\[(?P<lane>\w+)\] (?P<step>[\w-]+): done in (?P<seconds>\d+) s")
READY = re.compile(r"^default models ready in (?P<seconds>\d+) s")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _round(seconds: float | None) -> float | None:
    return round(seconds, 1) if seconds is not None else None


def _watch(proc: subprocess.Popen, log_path: Path, port: int, start: float,
           timeout: float) -> tuple[float | None, float | None]:
    """Seconds from `make run` to the app answering, and to the runner's "default models ready" line.

    `make run` starts the app before building the models (scripts/serve.py), so the two moments differ: the
    first is when a person can open the app, the second when every tab has its model.
    """
    healthy_at = ready_at = None
    while time.monotonic() - start < timeout and proc.poll() is None:
        now = time.monotonic() - start
        if healthy_at is None and healthy(port):
            healthy_at = now
        if any(READY.match(line) for line in log_path.read_text(errors="replace").splitlines()):
            ready_at = now
            if healthy_at is None and healthy(port):
                healthy_at = now
            break
        time.sleep(2)
    return healthy_at, ready_at


def parse_log(text: str) -> dict:
    """Per-step seconds and the models total from the build runner's lines."""
    steps, models = [], None
    for line in text.splitlines():
        if m := DONE.match(line):
            steps.append({"lane": m["lane"], "step": m["step"], "seconds": int(m["seconds"])})
        elif m := READY.match(line):
            models = int(m["seconds"])
    return {"steps": steps, "models_seconds": models}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(ROOT))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--warm-uv-cache", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", default="first_run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="recs-first-run-"))
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    env = dict(os.environ)
    for key in ("RECS_MODELS_DIR", "RECS_DATA_DIR", "RECS_ENCODER_CACHE", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(key, None)
    if not args.warm_uv_cache:
        env["UV_CACHE_DIR"] = str(work / "uv-cache")
    load = os.getloadavg()[0]
    log.info("first make run of %s in %s (load %.2f)", commit[:10], clone, load)
    out_path = work / "make_run.log"
    start = time.monotonic()
    with out_path.open("w") as out:
        proc = subprocess.Popen(["make", "run", f"PORT={args.port}"], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        healthy_at, ready_at = _watch(proc, out_path, args.port, start, args.timeout)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = out_path.read_text(errors="replace")
    parsed = parse_log(text)
    ok = healthy_at is not None
    result = {
        "commit": commit, "healthy": ok, "seconds_to_healthy": _round(healthy_at),
        "seconds_to_models_ready": _round(ready_at),
        **parsed, "uv_cache": "warm" if args.warm_uv_cache else "empty", "pip_cache": "as found",
        "installer": "pip (uv unavailable)" if "installing with pip" in text else "uv",
        "load_at_start": round(load, 2), "cpus": len(os.sched_getaffinity(0)), "bar_seconds": 240,
    }
    if not ok:
        result["log_tail"] = text[-4000:]
    write_result(args.out, result)
    log.info("app healthy after %s s; every default model ready after %s s (the build itself %s s)",
             result["seconds_to_healthy"], result["seconds_to_models_ready"], parsed["models_seconds"])
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok and ready_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
