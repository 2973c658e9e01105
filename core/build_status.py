"""The default models' build, as every session of the app sees it while `make run` builds them.

`make run` starts the app first and builds the default models beside it (scripts/serve.py), so a person can open
the app within the set-up's minute instead of after the whole build. The build runner writes its state to
``<models>/build-status.json`` (atomically, at each step's start and end and every few seconds while one runs); the
app shows a banner from it and reruns when a step finishes, so each tab fills in as its model becomes ready. A
status whose runner process is gone (killed, machine restarted) reads as interrupted, never as "still building".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from core.artifacts import MODELS_DIR, write_json

STATUS_FILE = "build-status.json"
#: Step states, in the order a step goes through them.
STATES = ("queued", "running", "done", "failed")


def status_path(root: Optional[Path] = None) -> Path:
    """Where the runner writes its state: ``<models>/build-status.json``."""
    return (root or MODELS_DIR) / STATUS_FILE


def write_status(path: Path, *, state: str, steps: list[dict[str, Any]], started: float) -> None:
    """The runner's whole state in one atomic write (a reader never sees half a file)."""
    write_json(path, {"state": state, "pid": os.getpid(), "started": started, "updated": time.time(),
                      "steps": steps})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_status(root: Optional[Path] = None) -> Optional[dict[str, Any]]:
    """The last build's state, or None when no build has written one (models built by hand, or tests).

    A "running" status whose runner process no longer exists becomes "interrupted": the steps that finished keep
    their models, and the next `make run` resumes the rest.
    """
    path = status_path(root)
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if status.get("state") == "running" and not _alive(int(status.get("pid", 0) or 0)):
        status["state"] = "interrupted"
    return status


def summary(status: dict[str, Any]) -> str:
    """One line for the banner: how many steps are ready and what is building now."""
    steps = status.get("steps", [])
    done = sum(step["state"] == "done" for step in steps)
    running = [f"{step['name']} ({step.get('progress') or 'starting'})" for step in steps
               if step["state"] == "running" and status.get("state") == "running"]
    line = f"{done} of {len(steps)} default models ready"
    return f"{line}; building {', '.join(running)}" if running else line
