"""Progress reporting that works in a terminal (tqdm) and in the app (a callback driving st.progress).

Why: long work (encoding 70k images, training) lives in domain packages that must not import
streamlit. They take an optional ``progress`` callback ``(fraction, message) -> None``; the CLI
leaves it unset and gets a tqdm bar on stderr, the UI passes one that updates ``st.progress``.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
ProgressFn = Callable[[float, str], None]


def track(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    progress: Optional[ProgressFn] = None,
    unit: str = "it",
) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr and, if given, call ``progress(fraction, desc)`` per step.

    Set ``RECS_NO_TQDM=1`` to silence the bars (tests and ``--json`` pipelines stay quiet either way
    because tqdm writes to stderr).
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    disable = os.environ.get("RECS_NO_TQDM") == "1"
    bar = tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True)
    for i, item in enumerate(bar, 1):
        yield item
        if progress is not None:
            progress(min(1.0, i / total) if total else 0.0, desc)
