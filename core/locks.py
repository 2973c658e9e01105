"""Locks for work that must happen once: artifact builds across processes, lazy objects across threads.

Why: the app serves many sessions from one process, and a build can also run from a terminal at the
same time. Without a lock two sessions that press "build" write the same files, and two sessions that
touch a lazily built cache both pay for building it. ``build_lock`` is a file lock (``filelock``) in the
models folder, so it holds across threads *and* processes; ``LazyValue`` builds an in-memory object
once under a thread lock.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Callable, Generic, Optional, TypeVar

from filelock import FileLock, Timeout

from core import artifacts

log = logging.getLogger(__name__)

T = TypeVar("T")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class BuildInProgress(RuntimeError):
    """Another session or process is building this artifact right now."""


def lock_path(name: str) -> Path:
    """Where the lock file for artifact ``name`` lives (``<models>/.locks/<name>.lock``)."""
    safe = _SAFE_NAME.sub("_", name).strip("._") or "artifact"
    folder = artifacts.MODELS_DIR / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{safe}.lock"


def build_lock(name: str, timeout: float = -1) -> FileLock:
    """A file lock for building artifact ``name``; ``timeout=-1`` waits, ``0`` fails at once if held.

    Each call returns a new lock object, so threads of one process exclude each other as well as
    processes do (``flock`` locks belong to the open file, not to the process).
    """
    return FileLock(str(lock_path(name)), timeout=timeout, thread_local=False)


def build_once(name: str, build: Callable[[], T], is_fresh: Callable[[], bool], *, wait: bool = True) -> Optional[T]:
    """Run ``build()`` under ``build_lock(name)`` unless ``is_fresh()`` says the artifact already exists.

    ``is_fresh`` is checked again once the lock is held, so of two callers that start together the
    second finds the first's artifact and returns None instead of writing it again. With
    ``wait=False`` a held lock raises ``BuildInProgress`` at once (what the app shows as "being built
    by another session").
    """
    lock = build_lock(name, timeout=-1 if wait else 0)
    try:
        with lock:
            if is_fresh():
                log.info("%s was built meanwhile by another session; not building it again", name)
                return None
            return build()
    except Timeout as exc:
        raise BuildInProgress(f"{name} is being built by another session; try again in a few minutes.") from exc


class LazyValue(Generic[T]):
    """A value built on first use, once, even when many threads ask for it at the same moment.

    Why not a bare ``if self._x is None``: two sessions asking together would both build (heavy work,
    twice the memory for a while), and one could see a half-initialised object.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: Optional[T] = None
        self._built = False

    def get(self) -> T:
        """The value, building it under the lock the first time."""
        if self._built:
            return self._value  # type: ignore[return-value]
        with self._lock:
            if not self._built:
                self._value = self._factory()
                self._built = True
        return self._value  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget the value (the next ``get`` builds it again)."""
        with self._lock:
            self._value = None
            self._built = False

    @property
    def built(self) -> bool:
        return self._built
