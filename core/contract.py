"""The one contract every tab's ``service.py`` honours: the same six calls, whatever the tab recommends.

Why one contract: the Streamlit pages, the CLIs and the tests should learn one surface, not four. Like
implicit's ``RecommenderBase`` or LightFM's few methods, each tab answers the same questions — what can you
serve (``sources``), give me one of them (``open``), answer this request (``query``), remember this like
(``record_feedback``), why this result (``explain``), and what model is this (``card``). The card is the
tab's model card, the way torchvision weights carry their metrics: the model, the data it was fitted on,
the artifact's version and date, and its measured quality with 95 % intervals read from the evaluation JSON
the evaluation wrote (never typed in by hand), plus what it cannot do.

Tab-specific calls (building an index, imports, "up next") stay beside these in each service.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Optional, Protocol, Sequence, runtime_checkable

from core import metrics
from core.artifacts import ArtifactError, read_json
from core.locks import LazyValue

log = logging.getLogger(__name__)

#: The calls every ``<tab>/service.py`` offers, with the same names and signatures.
CONTRACT = ("sources", "open", "query", "record_feedback", "explain", "card")


@dataclass(frozen=True)
class Source:
    """One thing a tab can serve: a dataset, a shipped catalog, a catalog someone built, a model version.

    ``version`` is the artifact's file version (its manifest's modification time; a cache key that changes on a
    rebuild) and ``built`` the same moment as an ISO date; both are None for something not built yet.
    """

    name: str
    kind: str
    version: Optional[float] = None
    built: Optional[str] = None
    label: str = ""

    @property
    def ready(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class Request:
    """What a person asks a tab. Each tab reads the fields that make sense for it and says which in ``query``.

    ``text``: words (product search, a song search); ``image``: an upload; ``item``: a catalog item to find
    more like; ``user``: a listener of the data; ``genres``: a new listener's tastes; ``categories``: a filter;
    ``options``: the tab's own knobs (a fusion weight, a tagging method).
    """

    text: Optional[str] = None
    image: Any = None
    item: Optional[str] = None
    user: Optional[str] = None
    genres: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    k: int = 10
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Person:
    """Whose likes shape the answer: the feedback store and the profile in it (``profile`` None: nobody)."""

    store: Any
    profile: Optional[str]


@dataclass
class Answer:
    """A query's results, best first, and the sentence the tab shows above them ("re-ranked by your 3 likes")."""

    hits: list[Any]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """One measured number with its 95 % interval: ``method`` scored ``value`` of ``name`` on ``n`` queries."""

    method: str
    name: str
    value: float
    low: float
    high: float
    n: Optional[int] = None

    def sentence(self) -> str:
        on = f" on {self.n:,}" if self.n else ""
        return f"{self.method} {self.name} {self.value:.3f} (95 % interval {self.low:.3f}–{self.high:.3f}{on})"


@dataclass(frozen=True)
class ModelCard:
    """What a tab serves under one name, and how good it measured: the page's "About this model"."""

    name: str
    model: str
    data: str
    version: Optional[float]
    built: Optional[str]
    metrics: tuple[Metric, ...]
    results: str
    protocol: str = ""
    limits: tuple[str, ...] = ()
    command: str = ""

    def headline(self) -> Optional[Metric]:
        return self.metrics[0] if self.metrics else None


@runtime_checkable
class TabService(Protocol):
    """The contract, written as the calls a tab's service module offers (a module satisfies it by its functions)."""

    def sources(self) -> list[Source]:
        """Everything the tab can serve now, ready ones with their version."""

    def open(self, name: str) -> Any:
        """The handle of one source, opened once per version and shared by every caller."""

    def query(self, handle: Any, request: Request, person: Optional[Person] = None) -> Answer:
        """The tab's main results for ``request``; ``person``'s likes re-rank them and dislikes never show."""

    def record_feedback(self, person: Person, handle: Any, item: str, signal: str) -> int:
        """Store one 👍 / 👎 / 💾 of ``person`` on ``item``; returns the stored row's id."""

    def explain(self, handle: Any, hit: Any) -> str:
        """One sentence on why ``hit`` is among the results."""

    def card(self, name: str) -> ModelCard:
        """The model card of ``name``: model, data, version, measured quality with intervals, limits."""


# ----------------------------------------------------------------------------------------------
# helpers the services share


def file_version(path: Path) -> Optional[float]:
    """A file's version: its modification time, or None when it does not exist."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def built_date(version: Optional[float]) -> Optional[str]:
    """The version as an ISO date and time (UTC, to the minute), for people to read."""
    if version is None:
        return None
    return datetime.fromtimestamp(version, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def count(value: Any) -> str:
    """A count for a card ("70,000"), or "?" when the manifest does not say."""
    return f"{value:,}" if isinstance(value, int) else "?"


def source_of(name: str, kind: str, path: Optional[Path], label: str = "", version: Optional[float] = None) -> Source:
    """A ``Source`` whose version is ``path``'s modification time (or ``version`` when given)."""
    version = version if version is not None else (file_version(path) if path is not None else None)
    return Source(name, kind, version, built_date(version), label or name)


class Handles:
    """Opened handles, one per name at its current version: each opened once, under a lock, even when callers
    ask together.

    A rebuilt artifact has a new version and so a new handle; opening it releases the older version's handle
    (a 70,000-item index or a retrained model would otherwise stay in memory beside the new one), and more
    than ``keep`` names push out the least recently opened.
    """

    def __init__(self, keep: int = 4) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[Hashable, LazyValue[Any]]] = {}
        self._keep = keep

    def get(self, name: Hashable, version: Hashable, factory: Callable[[], Any]) -> Any:
        with self._lock:
            held = self._values.pop(name, None)
            if held is None or held[0] != version:
                if held is not None:
                    log.info("releasing %s version %s (now %s)", name, held[0], version)
                held = (version, LazyValue(factory))
            self._values[name] = held  # re-inserted: the most recently opened is last
            while len(self._values) > self._keep:
                self._values.pop(next(iter(self._values)))
        return held[1].get()

    def release(self, name: Hashable) -> None:
        """Drop ``name``'s handle (a model folder that is being deleted; a test's temporary model)."""
        with self._lock:
            self._values.pop(name, None)


def committed(name: str) -> Path:
    """``<results folder>/<name>.json``: an evaluation the repository carries (``bench/results/``, or
    ``RECS_RESULTS_DIR``), read at call time so a redirected results folder is followed."""
    return Path(metrics.RESULTS_DIR) / f"{name}.json"


def read_results(path: Path) -> Optional[dict[str, Any]]:
    """An evaluation JSON, or None when it is absent or unreadable (a card then says "not measured")."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ArtifactError:
        log.warning("ignoring unreadable %s", path)
        return None


def interval_of(row: Mapping[str, Any], name: str, intervals: Optional[Mapping[str, Any]] = None
                ) -> Optional[tuple[float, float]]:
    """``name``'s 95 % interval in a results row, whichever layout the evaluation wrote it in:
    ``row["ci95"][name]``, ``row[name + "_ci95"]`` or a separate ``intervals`` mapping's ``ci95``."""
    for holder, key in ((row.get("ci95"), name), (row, f"{name}_ci95"), ((intervals or {}).get("ci95"), name)):
        pair = holder.get(key) if isinstance(holder, Mapping) else None
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            return float(pair[0]), float(pair[1])
    return None


def metrics_of(rows: Mapping[str, Any], wanted: Sequence[tuple[str, str]],
               intervals: Optional[Mapping[str, Any]] = None,
               n_keys: Sequence[str] = ("queries", "n", "images", "users")) -> tuple[Metric, ...]:
    """The ``(method, metric)`` pairs of ``wanted`` that the results hold with an interval, in that order.

    A number without an interval is left out: a card shows measured quality only with its uncertainty.
    """
    out = []
    for method, name in wanted:
        row = rows.get(method)
        if not isinstance(row, Mapping) or not isinstance(row.get(name), (int, float)):
            continue
        extra = (intervals or {}).get(method)
        ci = interval_of(row, name, extra if isinstance(extra, Mapping) else None)
        if ci is None:
            continue
        n = next((row[k] for k in n_keys if isinstance(row.get(k), int)), None)
        if n is None and isinstance(extra, Mapping) and isinstance(extra.get("n"), int):
            n = extra["n"]
        out.append(Metric(method, name, float(row[name]), ci[0], ci[1], n))
    return tuple(out)


def without(hits: Sequence[Any], hidden: Sequence[str], k: int, key: Callable[[Any], str]) -> list[Any]:
    """The first ``k`` hits whose id is not ``hidden`` (what a person disliked is never shown again)."""
    blocked = set(hidden)
    return [h for h in hits if key(h) not in blocked][:k]
