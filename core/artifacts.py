"""Artifact storage: arrays in ``.npz`` or ``.safetensors``, a JSON manifest beside each, atomic writes.

Why: nothing loaded back may be a pickle (a model file is code otherwise), a half-written file must
never replace a good one, and a stale artifact (built with another encoder or from other data) must
be recognised and explained instead of producing silent nonsense or a traceback.

Layout of an artifact named ``models/fashion/fashion-mnist``::

    models/fashion/fashion-mnist.npz    # or .safetensors: the arrays
    models/fashion/fashion-mnist.json   # the manifest: kind, schema, who made it, from what data

Use ``save_arrays`` / ``load_arrays`` for arrays + manifest, ``write_json`` / ``atomic_path`` for
anything else (``.keras`` files, vocabularies) so that every write is atomic.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from safetensors.numpy import load_file, save_file

log = logging.getLogger(__name__)

#: Root folder for trained artifacts; override with the ``RECS_MODELS_DIR`` environment variable.
MODELS_DIR = Path(os.environ.get("RECS_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))
#: Root folder for prepared datasets; override with ``RECS_DATA_DIR``.
DATA_DIR = Path(os.environ.get("RECS_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))


class ArtifactError(RuntimeError):
    """An artifact is missing, corrupt or stale. The message says what to run to fix it."""


# ----------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The temp file keeps ``target``'s suffix because some writers (Keras, numpy) insist on it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    """Read JSON written by ``write_json``; a missing or corrupt file raises ``ArtifactError``."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Missing file {path}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupt ({exc}); delete it and rebuild.") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ----------------------------------------------------------------------------------------------
# provenance


def checksum_arrays(*arrays: np.ndarray) -> str:
    """A short sha256 over array bytes, shapes and dtypes: the identity of a dataset's content."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes() if a.dtype != object else "\x1f".join(map(str, a.ravel())).encode())
    return h.hexdigest()[:16]


def checksum_strings(items: Iterable[str]) -> str:
    """A short sha256 over a sequence of strings (file paths + sizes, captions, ids...)."""
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def checksum_files(paths: Iterable[str | Path]) -> str:
    """A sha256 over the bytes of files, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\x1f")
    return h.hexdigest()[:16]


#: Distributions whose versions every manifest records (import name → distribution name).
_RECORDED = {"torch": "torch", "keras": "keras", "sentence_transformers": "sentence-transformers",
             "sklearn": "scikit-learn", "timm": "timm", "torchvision": "torchvision", "onnxruntime": "onnxruntime"}


def environment() -> dict[str, str]:
    """Versions of what made an artifact, recorded in every manifest.

    Read from the installed distributions' metadata, not by importing them: importing
    sentence-transformers, keras and timm only to read a version string cost a build step about
    27 CPU-seconds (10 s of wall time on an idle 2-core machine) in every process that saved an artifact.
    """
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for module, dist in _RECORDED.items():
        try:
            versions[module] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # optional packages
            continue
    return versions


# ----------------------------------------------------------------------------------------------
# arrays + manifest


def _manifest_path(stem: Path) -> Path:
    return stem.with_suffix(".json")


def save_arrays(
    stem: str | Path,
    arrays: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
    *,
    fmt: str = "npz",
) -> Path:
    """Save ``arrays`` under ``stem`` (+ ``.npz`` or ``.safetensors``) and ``manifest`` as ``stem.json``.

    ``manifest`` must carry ``kind`` (what reads it back) and should carry ``schema`` (bumped when the
    layout changes), the encoder and the data checksum. Versions and a timestamp are added here. The
    array file is renamed into place before the manifest, so a manifest never points at a missing file.
    """
    stem = Path(stem)
    if "kind" not in manifest:
        raise ValueError("manifest needs a 'kind'")
    stem.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        data_path = stem.with_suffix(".npz")
        for name, arr in arrays.items():
            if np.asarray(arr).dtype == object:
                raise ValueError(f"array {name!r} has dtype object; store strings as a JSON list or 'U' dtype")
        with atomic_path(data_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    elif fmt == "safetensors":
        data_path = stem.with_suffix(".safetensors")
        with atomic_path(data_path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    full = dict(manifest)
    full.setdefault("schema", 1)
    full["file"] = data_path.name
    full["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    full["versions"] = environment()
    write_json(_manifest_path(stem), full)
    log.info("saved %s (%s)", data_path, ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in arrays.items()))
    return data_path


def load_manifest(stem: str | Path, *, kind: str | None = None, hint: str = "") -> dict[str, Any]:
    """Read and check a manifest. ``hint`` is the command that rebuilds the artifact."""
    stem = Path(stem)
    mpath = _manifest_path(stem)
    fix = f" Build it with `{hint}`." if hint else ""
    if not mpath.is_file():
        raise ArtifactError(f"No artifact at {stem} (missing {mpath.name}).{fix}")
    manifest = read_json(mpath)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath} is not a manifest.{fix}")
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{mpath} holds a {manifest.get('kind')!r} artifact, not {kind!r}.{fix}")
    return manifest


def load_arrays(
    stem: str | Path,
    *,
    kind: str | None = None,
    expect: Mapping[str, Any] | None = None,
    hint: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load arrays + manifest saved by ``save_arrays``; never unpickles.

    ``expect`` maps manifest keys to the values the caller needs (e.g. ``{"backbone": "efficientnet_lite0"}``);
    a mismatch means the artifact is stale and raises ``ArtifactError`` naming both values and ``hint``.
    """
    stem = Path(stem)
    manifest = load_manifest(stem, kind=kind, hint=hint)
    fix = f" Rebuild it with `{hint}`." if hint else " Rebuild it."
    for key, want in (expect or {}).items():
        have = manifest.get(key)
        if have != want:
            raise ArtifactError(f"{stem.name} is stale: it was built with {key}={have!r}, but {want!r} is needed.{fix}")
    data_path = stem.parent / str(manifest.get("file", stem.name + ".npz"))
    if not data_path.is_file():
        raise ArtifactError(f"{data_path} is missing although its manifest exists.{fix}")
    try:
        if data_path.suffix == ".safetensors":
            arrays = load_file(str(data_path))
        else:
            with np.load(data_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ArtifactError(f"{data_path} is corrupt ({exc}).{fix}") from exc
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ArtifactError(f"{data_path} could not be read ({type(exc).__name__}: {exc}).{fix}") from exc
    return arrays, manifest
