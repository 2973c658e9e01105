"""A ListenBrainz listens dump (many listeners) as a ``MusicDataset``: what a service trains its models on.

ListenBrainz publishes its listens as ``listenbrainz-listens-dump-<n>-<date>-full.tar.xz``: inside,
``listens/<year>/<month>.listens`` files of JSON lines, one listen each, with the listener (``user_name``, or
``user_id`` in newer dumps), ``listened_at`` (Unix seconds) and ``track_metadata`` (``artist_name``,
``track_name``, ``release_name``, ``additional_info.recording_msid``/``recording_mbid``). A person's own listens
export has the same lines without the listener; those are one listener's history (``music.history``), not a log.

Read from the dump as it comes (``.tar.xz``/``.tar.gz``/``.tar``), from a ``.zip`` of it, or from the unpacked
folder. Archive members are read in memory, never extracted, so a member named ``../x`` can write nothing;
files other than ``*.listens``/``*.jsonl`` are passed over. Items are recordings (the MusicBrainz or
ListenBrainz recording id, else "artist — track"), like Last.fm-1K's tracks; each listen is one play and one
dated event, so up next can train too.
"""

from __future__ import annotations

import json
import logging
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from music.data.dataset import DataUnavailable, MusicDataset, make_dataset

log = logging.getLogger(__name__)

#: What one dump may unpack to (the full dump is far larger: a service trains on a slice of it).
MAX_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000
SUFFIXES = (".listens", ".jsonl")


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every listens file in a folder, zip or tar, within the size and count budgets."""
    total, count = 0, 0

    def budget(name: str, size: int) -> None:
        nonlocal total, count
        total, count = total + size, count + 1
        if total > MAX_BYTES or count > MAX_MEMBERS:
            raise DataUnavailable(f"{path.name} unpacks to more than {MAX_BYTES / 1024**3:.0f} GB or "
                                  f"{MAX_MEMBERS:,} files; train on a slice of the dump (a few months' folders).")

    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in SUFFIXES and not p.is_symlink():
                budget(p.name, p.stat().st_size)
                yield str(p.relative_to(path)), p.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir() and Path(info.filename).suffix in SUFFIXES:
                    budget(info.filename, info.file_size)
                    yield info.filename, zf.read(info)
    else:
        try:
            with tarfile.open(path, mode="r:*") as tf:
                for member in tf:
                    if member.isfile() and Path(member.name).suffix in SUFFIXES:
                        budget(member.name, member.size)
                        yield member.name, tf.extractfile(member).read()  # type: ignore[union-attr]
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataUnavailable(f"{path.name} is not a ListenBrainz dump (a folder, .zip or .tar.xz): {exc}") from exc


def _listen(record: Any) -> tuple[str, str, int, str, str] | None:
    """(user, item, time, title, artist) of one dump line, or None when it lacks a listener, artist or time."""
    if not isinstance(record, dict):
        return None
    meta = record.get("track_metadata") or {}
    user = record.get("user_name") or record.get("user_id")
    artist, title, when = meta.get("artist_name"), meta.get("track_name"), record.get("listened_at")
    if not user or not artist or not title or not isinstance(when, (int, float)):
        return None
    info = meta.get("additional_info") or {}
    item = info.get("recording_mbid") or info.get("recording_msid") or record.get("recording_msid") \
        or f"{artist} — {title}"
    return str(user), str(item), int(when), str(title), str(artist)


def load_listenbrainz_dump(path: str | Path) -> MusicDataset:
    """Every listen of a dump as a play (implicit) and a dated event; malformed lines counted and skipped."""
    path = Path(path)
    if not path.exists():
        raise DataUnavailable(f"{path} does not exist: give a ListenBrainz dump (.tar.xz, .zip or folder)")
    rows: list[tuple[str, str, int, str, str]] = []
    report: dict[str, Any] = {"malformed_rows": 0, "files": 0}
    for _name, content in _members(path):
        report["files"] += 1
        for line in content.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                listen = _listen(json.loads(line))
            except json.JSONDecodeError:
                listen = None
            if listen is None:
                report["malformed_rows"] += 1
            else:
                rows.append(listen)
    if not report["files"]:
        raise DataUnavailable(f"{path.name} holds no ListenBrainz listens files (listens/<year>/<month>.listens).")
    if not rows:
        raise DataUnavailable(f"{path.name} has no usable listen (each needs user_name, listened_at, artist and track).")
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "title", "artist"])
    events = frame[["user", "item"]].assign(timestamp=frame["timestamp"].astype(np.int64))
    items = frame.drop_duplicates("item")[["item", "title", "artist"]]
    report["plays"] = len(frame)
    log.info("%s: %d listens from %d files", path.name, len(frame), report["files"])
    return make_dataset("listenbrainz", "implicit", events.assign(weight=1.0), items, events, report)


__all__ = ["load_listenbrainz_dump"]
