"""A service's listening log of many listeners → a music dataset trained under a name of its own.

Why: a service that already logs who played or rated what should get the Music tab's picks (and "up next",
when the log is dated) for its own listeners without renaming its columns or touching the built-in datasets.
A log is a CSV/TSV whose columns the person maps to roles (user, item, optional plays-or-rating weight,
timestamp, title, artist), a Last.fm-1K TSV, or any dataset ``music.data.load_dataset`` reads. Reading reuses
``music.data.sources.load_csv`` and ``make_dataset`` (one cleaning for every source); a log that cannot train
(one listener, one item, constant ratings, values out of range, too few rows, a column that is not there) is
refused with one sentence before anything is written, and the bundle is swapped in atomically by
``music.mf.train.train``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from core.training import BadTrainingData, TrainingDiverged
from music.data import DATASETS, MusicDataset, load_dataset
from music.data.dataset import check_trainable
from music.data.sources import CSV_ROLES, default_columns, load_csv, load_lastfm_1k
from music.mf.train import train
from music.next.data import from_dataset, leave_last_out

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]

#: A trained log's name: it becomes a folder name under ``models/music/``, so nothing else is accepted.
NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
#: Names (and aliases) of the datasets the project ships readers for: a log never takes one of them.
RESERVED = frozenset(DATASETS) | {"lastfm2k", "hetrec-lastfm-2k", "ml-100k", "lastfm1k", "30Music"}
#: What a log can be: a headed CSV/TSV with chosen columns, or any dataset ``load_dataset`` reads.
SOURCES = ("csv",) + tuple(d for d in DATASETS if d != "csv")
WEIGHT_KINDS = {"plays": "implicit", "rating": "explicit"}
#: Bytes of a file read to show its columns (the request thread never reads a whole upload).
HEAD_BYTES = 64 * 1024


class LogError(ValueError):
    """A log or a request to train one that cannot be used; the message is one sentence saying what to fix."""


def check_name(name: Any) -> str:
    """``name`` if it may name a trained log (1–64 of ``a-z 0-9 _ -``, not a built-in dataset); else ``LogError``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise LogError(f"The name {shown} is not allowed: use 1 to 64 lower-case letters, digits, '-' or '_'.")
    if name in RESERVED:
        raise LogError(f"{name} is the name of a built-in dataset; choose another name for your log.")
    return name


def sniff_sep(first_line: str) -> str:
    """Tab when the header has more tabs than commas (a TSV), else comma."""
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def read_header(head: bytes, *, rows: int = 5) -> dict[str, Any]:
    """The separator, column names, first ``rows`` rows and the columns guessed per role, from a file's first bytes.

    Only ``head`` (the first ``HEAD_BYTES`` of the file) is read: enough to pick columns, cheap in a web request.
    """
    text = head[:HEAD_BYTES].decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if len(text) == len(head[:HEAD_BYTES]) and len(head) > HEAD_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut mid-way
    if not lines or not lines[0].strip():
        raise LogError("The file is empty: a log needs a header line and one row per play or rating.")
    sep = sniff_sep(lines[0])
    parsed = list(csv.reader(io.StringIO("\n".join(lines[: rows + 1])), delimiter=sep))
    header = [c.strip() for c in parsed[0]]
    if len(header) < 2 or len(set(h.lower() for h in header)) != len(header) or not all(header):
        raise LogError("The first line must name at least two distinct columns (e.g. user,item,plays,timestamp).")
    guess = {role: next(h for h in header if h.lower() == col) for role, col in default_columns(header).items()}
    return {"sep": sep, "columns": header, "rows": [r for r in parsed[1:] if any(c.strip() for c in r)],
            "guess": guess}


def load_log(source: str, path: str | Path | None, *, name: str, columns: Optional[Mapping[str, str]] = None,
             weight_kind: Optional[str] = None, sep: Optional[str] = None, label: str = "") -> MusicDataset:
    """Read a log as a ``MusicDataset`` named ``name``; ``LogError``/``BadTrainingData`` in one sentence.

    ``source`` ``csv`` reads a headed CSV or TSV (``sep`` guessed from the header when not given) with
    ``columns`` (role → the file's column name; None = the usual names ``user,item,plays|rating,timestamp``)
    and ``weight_kind`` (``plays`` = implicit counts, ``rating`` = explicit; default plays, or rating for a
    column called ``rating``). Other sources are the built-in readers.
    """
    if source not in SOURCES:
        raise LogError(f"Unknown log format {source!r}; use one of {', '.join(SOURCES)}.")
    if weight_kind is not None and weight_kind not in WEIGHT_KINDS:
        raise LogError(f"The weight is 'plays' or 'rating', not {weight_kind!r}.")
    if columns is not None:
        if source != "csv":
            raise LogError(f"Columns are chosen only for a CSV or TSV log; {source} has a fixed layout.")
        unknown = sorted(set(columns) - set(CSV_ROLES))
        if unknown:
            raise LogError(f"Unknown column role(s) {', '.join(unknown)}; the roles are {', '.join(CSV_ROLES)}.")
        if weight_kind is None and columns.get("weight"):
            weight_kind = "plays"
    shown = label or (Path(path).name if path else source)
    if source == "csv":
        if path is None or not Path(path).is_file():
            raise LogError(f"{shown} is not a file: a CSV log needs the path of one file.")
        with open(path, "rb") as f:
            first = f.readline(HEAD_BYTES).decode("utf-8-sig", errors="replace")
        data = load_csv(Path(path), sep=sep or sniff_sep(first), kind=WEIGHT_KINDS.get(weight_kind or ""),
                        columns=columns, name=name, label=shown)
    elif source == "lastfm-1k":
        if path is None or not Path(path).exists():
            raise LogError(f"{shown} does not exist: a Last.fm-1K log needs its .tsv file or folder.")
        data = load_lastfm_1k(Path(path))
    else:
        data = load_dataset(source, path)
    data.name = name
    check_trainable(data, name)
    return data


def train_log(name: str, source: str, path: str | Path | None, *, columns: Optional[Mapping[str, str]] = None,
              weight_kind: Optional[str] = None, sep: Optional[str] = None, label: str = "", force: bool = True,
              up_next: bool = True, progress: Optional[ProgressFn] = None) -> dict[str, Any]:
    """Read, check and train a log under ``name``: MF/genre/popularity, then "up next" when the log is dated.

    Returns ``{"name", "label", "summary", "report", "train_seconds", "validation", "up_next"}``. Nothing is
    written unless the log passes every check and training stays finite; the up-next model is trained after MF
    (its failure is reported in ``up_next``, the MF bundle stays usable) and an up-next model left from an
    earlier log of the same name is removed when this log has no times (it would describe other data).
    """
    name = check_name(name)
    report = progress or (lambda fraction, message: None)
    report(0.0, f"reading {label or source}")
    data = load_log(source, path, name=name, columns=columns, weight_kind=weight_kind, sep=sep, label=label)
    dated = data.events is not None and len(data.events) > 0
    mf_share = 0.7 if dated and up_next else 1.0
    shown = f"{name} (your log{': ' + label if label else ''})"
    manifest = train(name, data=data, force=force, label=shown,
                     progress=lambda f, m: report(min(f, 1.0) * mf_share * 0.99, m))
    result = {"name": name, "label": shown, "summary": manifest.get("summary", {}),
              "report": manifest.get("report", {}), "train_seconds": manifest.get("train_seconds"),
              "skipped": bool(manifest.get("skipped")), "validation": _validation(manifest)}
    result["up_next"] = _train_up_next(name, data, report, mf_share, force) if dated and up_next else None
    if not dated:
        _remove_stale_next(name)
    report(1.0, "done")
    return result


def _validation(manifest: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The best epoch's validation metric of the MF run (what the page and the CLI report)."""
    history = [h for h in manifest.get("mf_history") or [] if any(k.startswith("val_") for k in h)]
    if not history:
        return None
    key = next(k for k in history[0] if k.startswith("val_"))
    best = (max if key == "val_ndcg" else min)(history, key=lambda h: h[key])
    return {"metric": key.removeprefix("val_"), "value": round(float(best[key]), 4), "epoch": best["epoch"],
            "epochs": len(history)}


def _train_up_next(name: str, data: MusicDataset, report: ProgressFn, start: float, force: bool) -> dict[str, Any]:
    """Train the up-next CNN on a dated log; a log too thin for it is reported, not a failed job."""
    # keras and torch load in seconds: only a dated log trains an up-next model
    from music.next.train import train_bundle

    report(start, "training up next")
    try:
        if not (leave_last_out(from_dataset(data)).val_at >= 0).any():
            raise BadTrainingData("no listener has three listening sessions (plays more than 30 minutes apart), "
                                  "which up next needs to learn what follows what and to be checked")
        out = train_bundle(name, data=data, force=force,
                           progress=lambda f, m: report(start + (1 - start) * min(f, 1.0) * 0.99, f"up next: {m}"))
    except (BadTrainingData, TrainingDiverged, ValueError) as exc:
        log.warning("%s: up next not trained: %s", name, exc)
        _remove_stale_next(name)
        return {"trained": False, "reason": str(exc)}
    return {"trained": True, "skipped": bool(out.get("skipped")), "val_hr@10": out.get("val_hr@10"),
            "epochs": out.get("epochs"), "seconds": out.get("seconds")}


def _remove_stale_next(name: str) -> None:
    """Delete an up-next model of ``name`` trained on earlier data (the MF bundle now describes other data)."""
    # keras and torch load in seconds: only a log with an up-next model needs them
    from music.next.service import bundle_stem

    stem = bundle_stem(name)
    for path in (stem.with_suffix(".keras"), stem.with_suffix(".json"), stem.with_name(stem.name + "_seq.npz"),
                 stem.with_name(stem.name + "_seq.json")):
        path.unlink(missing_ok=True)
