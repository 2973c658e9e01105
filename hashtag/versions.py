"""Model versions: every retrain with users' tagged photos is a new version; ``serving.json`` says which one the tab uses.

Why it is built this way:

* **A retrain never overwrites what is served.** It trains in the job's scratch folder and is renamed into
  ``<model dir>/versions/<id>/`` only when finished, so a cancelled or crashed retrain leaves nothing behind and
  readers never see half a checkpoint.
* **The first version is the model folder itself** (``v1`` = ``<dataset>/model``, what ``make run`` and
  ``python -m hashtag train`` write), so existing installs serve exactly what they served before; without a
  ``serving.json`` the tab serves ``v1``.
* **A worse model is kept, not served.** The rule is one comparison on the dataset's fixed validation split
  (the hash-of-group split, which users' photos never join): a retrain whose best val F1@5 is below the
  serving version's stays on disk with the reason in its manifest ("val F1@5 0.410 < serving 0.430"), and an
  administrator may still switch to it by hand. Users' photos are their own training split, so both numbers
  are measured on the same images with the same decoding.
* **The pointer is one small JSON file written atomically** (temp file + rename): a crash mid-write leaves the
  previous pointer, never a torn one; an unreadable or dangling pointer falls back to ``v1`` with a warning.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Optional

from core.artifacts import ArtifactError, read_json, write_json
from hashtag.data import DEFAULT_DATASET
from hashtag.model import model_dir

log = logging.getLogger(__name__)

BASE = "v1"
#: The job that makes a new version (``hashtag.jobs.retrain_job``), as the queue knows it.
RETRAIN_KIND, RETRAIN_HANDLER = "hashtag.retrain", "hashtag.jobs:retrain_job"
POINTER = "serving.json"
CHECKPOINT_FILES = ("hashtag.json", "hashtag.safetensors")
_ID_RE = re.compile(r"^v\d{8}-\d{6}-[0-9a-f]{4}$")


class VersionError(ValueError):
    """A version that does not exist or cannot be served; the message is one sentence a person can act on."""


def versions_dir(dataset_root: str | Path) -> Path:
    return model_dir(Path(dataset_root)) / "versions"


def version_dir(dataset_root: str | Path, version: str) -> Path:
    """The folder of one version (``v1`` is the model folder itself); only well-formed ids are accepted."""
    if version == BASE:
        return model_dir(Path(dataset_root))
    if not isinstance(version, str) or not _ID_RE.match(version):
        raise VersionError(f"{str(version)[:40]!r} is not a model version id.")
    return versions_dir(dataset_root) / version


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CHECKPOINT_FILES)


def new_version_id(now: Optional[_dt.datetime] = None) -> str:
    """``v20261207-094512-3fa1``: sortable by creation time, unique across concurrent retrains."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"v{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def serving_version(dataset_root: str | Path = DEFAULT_DATASET) -> str:
    """The version the tab serves: the pointer's, or ``v1`` when there is none or it names nothing usable."""
    path = model_dir(Path(dataset_root)) / POINTER
    if not path.is_file():
        return BASE
    try:
        version = str(read_json(path).get("version", BASE))
        if _complete(version_dir(dataset_root, version)):
            return version
        log.warning("%s names version %s, which has no complete checkpoint; serving %s", path, version, BASE)
    except (ArtifactError, VersionError, AttributeError) as exc:
        log.warning("ignoring the unreadable pointer %s (%s); serving %s", path, exc, BASE)
    return BASE


def served_dir(dataset_root: str | Path = DEFAULT_DATASET) -> Path:
    """The checkpoint folder the tab loads."""
    return version_dir(dataset_root, serving_version(dataset_root))


def set_serving(dataset_root: str | Path, version: str, *, reason: str, by: str = "") -> dict[str, Any]:
    """Point the tab at ``version`` (atomically); ``VersionError`` if it has no complete checkpoint."""
    if not _complete(version_dir(dataset_root, version)):
        raise VersionError(f"Model version {version} has no complete checkpoint; it cannot be served.")
    pointer = {"version": version, "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "reason": reason, "by": by}
    write_json(model_dir(Path(dataset_root)) / POINTER, pointer)
    log.info("serving hashtag model version %s (%s)", version, reason)
    return pointer


def _summary(version: str, folder: Path, serving: str) -> dict[str, Any]:
    """One version as the page lists it (the first version's facts come from its plain training manifest)."""
    manifest = read_json(folder / "hashtag.json")
    info = manifest.get("version") or {}
    feedback = manifest.get("feedback") or {}
    created = info.get("created") or _dt.datetime.fromtimestamp((folder / "hashtag.json").stat().st_mtime,
                                                                _dt.timezone.utc).isoformat(timespec="seconds")
    return {"version": version, "created": created, "serving": version == serving,
            "val_f1@5": (manifest.get("val") or {}).get("f1@5"), "dataset": manifest.get("dataset", {}).get("name"),
            "dataset_images": manifest.get("train_images"), "user_photos": int(feedback.get("user_pairs", 0)),
            "imports": list(feedback.get("imports", [])), "decision": info.get("reason", ""),
            "switched": info.get("served"), "seconds": manifest.get("train_seconds")}


def list_versions(dataset_root: str | Path = DEFAULT_DATASET) -> list[dict[str, Any]]:
    """Every version with a complete checkpoint, newest first, marking the served one."""
    serving = serving_version(dataset_root)
    found = [(BASE, model_dir(Path(dataset_root)))] if _complete(model_dir(Path(dataset_root))) else []
    folder = versions_dir(dataset_root)
    if folder.is_dir():
        found += [(p.name, p) for p in sorted(folder.iterdir()) if _ID_RE.match(p.name) and _complete(p)]
    rows = []
    for version, path in found:
        try:
            rows.append(_summary(version, path, serving))
        except ArtifactError as exc:
            log.warning("skipping model version %s (%s)", version, exc)
    return sorted(rows, key=lambda r: (r["version"] != BASE, r["created"]), reverse=True)


def decide(candidate: float, serving: Optional[float]) -> tuple[bool, str]:
    """Serve the new version unless it scores below the serving one on the fixed validation split."""
    if serving is None:
        return True, f"val F1@5 {candidate:.3f}; no comparable version was serving"
    digits = 3 if round(candidate, 3) != round(serving, 3) else 4
    if candidate < serving:
        return False, f"val F1@5 {candidate:.{digits}f} < serving {serving:.{digits}f}"
    return True, f"val F1@5 {candidate:.{digits}f} ≥ serving {serving:.{digits}f}"


def serving_score(dataset_root: Path, checksum: str) -> tuple[str, Optional[float]]:
    """(serving version, its val F1@5), or None for the score when it cannot be compared (none, other data)."""
    version = serving_version(dataset_root)
    folder = version_dir(dataset_root, version)
    if not _complete(folder):
        return version, None
    manifest = read_json(folder / "hashtag.json")
    if manifest.get("dataset", {}).get("checksum") != checksum or "f1@5" not in (manifest.get("val") or {}):
        return version, None  # trained on other data: it could not even be loaded any more
    return version, float(manifest["val"]["f1@5"])


def move_into_place(work: Path, target: Path) -> None:
    """Rename the finished version into the versions folder (copy then rename across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(work, target)
    except OSError:
        partial = target.parent / f".{target.name}.partial"
        shutil.copytree(work, partial)
        os.replace(partial, target)
        shutil.rmtree(work, ignore_errors=True)
