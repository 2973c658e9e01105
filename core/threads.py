"""Thread counts: pinned for small-model training, and set once for a long-running server.

Why: on these 2-core machines, torch's spinning OpenMP threads made small-matrix training 10× slower
whenever anything else ran (measured: fashion projection 72 s vs 6 s per epoch, music MF 53 s vs 4.5 s,
Caser 110 s vs 9.5 s), while one thread loses little when the machine is idle. Every trainer of a
small model wraps its loop in ``torch_threads()``; encoders (large convolutions) keep all cores.

torch's thread count is one setting for the whole process. In the app many sessions run at once, each
on its own thread, so a change made by one (and "restored" by it later) would slow or speed up the
others at random. So only the main thread (CLIs, training scripts) ever changes it; a server calls
``pin_process_threads`` once at start and every later request leaves the count alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Iterator, Optional

log = logging.getLogger(__name__)

_pinned: Optional[int] = None
_pin_lock = threading.Lock()


def _may_change() -> bool:
    """Only the main thread of a process that has not pinned its threads may change torch's count."""
    return _pinned is None and threading.current_thread() is threading.main_thread()


def pin_process_threads(n: Optional[int] = None) -> int:
    """Set torch's thread count once for this process (default ``RECS_SERVER_THREADS`` or 1) and freeze it.

    Idempotent: the first call wins, later calls return the pinned count. Meant for servers, where many
    request threads share the process; one thread per request lets concurrent sessions use the cores.
    """
    global _pinned
    with _pin_lock:
        if _pinned is None:
            import torch  # torch loads in seconds: only code that already runs torch asks for its threads

            count = max(1, int(n if n is not None else os.environ.get("RECS_SERVER_THREADS", "1")))
            torch.set_num_threads(count)
            _pinned = count
            log.info("torch threads pinned to %d for this process", count)
        return _pinned


def set_torch_threads(n: int) -> None:
    """Set torch's thread count, unless the process pinned it or this is a request (non-main) thread."""
    if _may_change():
        import torch  # torch loads in seconds: only code that already runs torch asks for its threads

        torch.set_num_threads(max(1, int(n)))


@contextlib.contextmanager
def _threads_for_block(get, set_, n: Optional[int], env: str, default: str) -> Iterator[None]:
    """Set a library's process-wide thread count for the block, then restore it.

    A no-op outside the main thread or once the process pinned its threads: the count is one setting for
    the whole process, so a request thread must never change it under its neighbours.
    """
    if not _may_change():
        yield
        return
    before = get()
    set_(max(1, int(n if n is not None else os.environ.get(env, default))))
    try:
        yield
    finally:
        set_(before)


def torch_threads(n: Optional[int] = None) -> "contextlib.AbstractContextManager[None]":
    """Run the block on ``n`` torch threads (default ``RECS_TORCH_THREADS`` or 1), then restore."""
    import torch  # torch loads in seconds: only code that already runs torch asks for its threads

    return _threads_for_block(torch.get_num_threads, torch.set_num_threads, n, "RECS_TORCH_THREADS", "1")


def faiss_threads(n: Optional[int] = None) -> "contextlib.AbstractContextManager[None]":
    """Run the block on ``n`` FAISS OpenMP threads (default ``RECS_FAISS_THREADS`` or 2), then restore.

    OpenMP threads spin while waiting; on a shared 2-core machine more threads than cores make index builds
    slower, not faster. Single queries use one thread whatever this says.
    """
    import faiss  # optional heavy dependency: faiss loads only where approximate search runs

    return _threads_for_block(faiss.omp_get_max_threads, faiss.omp_set_num_threads, n, "RECS_FAISS_THREADS", "2")


def pinned() -> Optional[int]:
    """The thread count a server pinned, or None in scripts and CLIs."""
    return _pinned
