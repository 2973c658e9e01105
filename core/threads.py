"""Thread pinning for small-model training.

Why: on these 2-core machines, torch's spinning OpenMP threads made small-matrix training 10× slower
whenever anything else ran (measured: fashion projection 72 s vs 6 s per epoch, music MF 53 s vs 4.5 s,
Caser 110 s vs 9.5 s), while one thread loses little when the machine is idle. Every trainer of a
small model wraps its loop in ``torch_threads()``; encoders (large convolutions) keep all cores.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional


@contextlib.contextmanager
def torch_threads(n: Optional[int] = None) -> Iterator[None]:
    """Run the block on ``n`` torch threads (default ``RECS_TORCH_THREADS`` or 1), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n if n is not None else os.environ.get("RECS_TORCH_THREADS", "1"))))
    try:
        yield
    finally:
        torch.set_num_threads(before)
