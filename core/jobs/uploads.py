"""Where an upload waits for the job that reads it: a random name in the models folder, never the uploader's.

Why shared: the Data page's catalog builds, log trainings and history imports all hand a job bytes a person
uploaded. A random name means a file name can never become a path, and one folder means a job's handler can
check that what it is about to delete is an upload (``is_upload``), not something a job's params point at.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from core import artifacts


def uploads_dir() -> Path:
    """The folder uploads wait in (inside the models folder, so jobs on this machine find them)."""
    return Path(artifacts.MODELS_DIR) / "uploads"


def save_upload(data: bytes, suffix: str = "") -> Path:
    """Store uploaded bytes under a random name (``suffix`` such as ``.zip`` kept for readers that look)."""
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    with artifacts.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def is_upload(path: str | Path) -> bool:
    """True for a file or folder directly in the uploads folder (what a job may delete when it is done)."""
    return Path(path).parent == uploads_dir()
