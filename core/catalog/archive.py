"""Unpacking an uploaded catalog ``.zip`` without trusting it.

Why so careful: a zip is the one thing a stranger can hand the app through the browser, and a zip can lie.
Names can point outside the target folder (``../../x``, ``/etc/x``), entries can be symlinks, headers can
claim small sizes for entries that inflate to gigabytes, and the central directory can list millions of
entries. Everything is checked from the archive's directory BEFORE a single byte is written, and the copy
itself enforces the same caps again while it streams, so a header that lies is caught by what is written,
not by what it claims. Each refusal is a ``CatalogError`` whose message is one sentence a person can act on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from core.images import MAX_BYTES as DECODER_MAX_BYTES

log = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * MB
#: Read and write unpacked entries in pieces this big, so no entry is ever held in memory whole.
CHUNK = 1 * MB
#: Files and folders every platform sprinkles into archives and folders; never catalog content.
IGNORED_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
IGNORED_DIRS = frozenset({"__MACOSX"})


class CatalogError(ValueError):
    """A catalog source cannot be used; the message is one sentence a person can act on, safe to show in the UI."""


@dataclass(frozen=True)
class Limits:
    """Caps on what a catalog source may hold; every one is checked before work that it bounds.

    - ``max_archive_bytes`` (2 GB): the ``.zip`` file itself, checked before it is opened.
    - ``max_entries`` (50,000): entries in a zip, read from its end record before its directory is parsed.
    - ``max_total_bytes`` (8 GB): everything a zip unpacks to, from its headers and again while copying.
    - ``max_ratio`` (200): unpacked / packed size, per entry and in total; real photos barely compress
      (about 1.0-1.1) and CSV text about 3-10, while a zip bomb is in the thousands.
    - ``ratio_floor_bytes`` (1 MB): the ratio is only judged above this unpacked size, because a few KB of
      blank text can legitimately compress 300-fold and cannot hurt anyone.
    - ``max_image_bytes`` (20 MB, the image decoder's own cap in ``core.images``): a bigger file would be
      accepted here only to fail when the catalog is built, so it is skipped and listed up front instead.
    - ``max_items`` (100,000): items in one catalog (a folder, a CSV's rows).
    - ``max_csv_bytes`` (200 MB): a CSV or metadata file (100,000 rows of a few hundred bytes need ~30 MB).
    """

    max_archive_bytes: int = 2 * GB
    max_entries: int = 50_000
    max_total_bytes: int = 8 * GB
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1 * MB
    max_image_bytes: int = DECODER_MAX_BYTES
    max_items: int = 100_000
    max_csv_bytes: int = 200 * MB


LIMITS = Limits()


def human_bytes(n: float) -> str:
    """``2147483648`` → ``2.0 GB``: sizes as people read them in messages."""
    unit = "bytes"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "bytes" or n >= 10 else f"{n:.1f} {unit}"


def is_ignored(parts: Iterable[str]) -> bool:
    """True for hidden files and folders, ``__MACOSX`` and ``.DS_Store``-style litter: never content, never listed."""
    return any(p.startswith(".") or p in IGNORED_DIRS or p in IGNORED_FILES for p in parts)


def _end_record(path: Path, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the zip's end record, without parsing the directory.

    Why by hand: ``zipfile.ZipFile`` parses the whole central directory into objects before anyone can count
    them, so a small archive listing millions of empty entries would cost gigabytes of memory first.
    """
    with open(path, "rb") as f:
        tail_len = min(size, 22 + 65535)  # the end record plus the longest possible comment
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        # the signature may also occur inside the archive comment: the real record's comment ends the file
        while at >= 0 and (len(tail) - at < 22 or struct.unpack_from("<H", tail, at + 20)[0] != len(tail) - at - 22):
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise CatalogError(f"{path.name} is not a zip archive; upload a .zip file.")
        entries, cd_size = struct.unpack("<HI", tail[at + 10 : at + 16])
        locator = at - 20
        zip64 = entries == 0xFFFF or cd_size == 0xFFFFFFFF
        if zip64 and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            (zip64_at,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
            f.seek(zip64_at)
            record = f.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", record[32:48])
    return entries, cd_size


def _entry_path(raw: str, archive: str) -> PurePosixPath:
    """The entry's path below the target folder; refuses absolute names and ``..`` (also with ``\\``)."""
    name = raw.replace("\\", "/")  # archives made on Windows may use backslashes as separators
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise CatalogError(f"{archive} contains an entry with an absolute path ({raw[:80]!r}); zip the files "
                           "with paths relative to the folder.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CatalogError(f"{archive} contains an entry that points outside the archive ({raw[:80]!r}); "
                           "such archives are refused.")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _check_entry(info: zipfile.ZipInfo, archive: str, limits: Limits) -> PurePosixPath:
    """Refuse one entry that is encrypted, a link or device, or that inflates like a bomb."""
    rel = _entry_path(info.filename, archive)
    if info.flag_bits & 0x1:
        raise CatalogError(f"{archive} is password-protected ({info.filename[:80]!r}); zip the files without "
                           "a password.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise CatalogError(f"{archive} contains a symbolic link ({info.filename[:80]!r}); zip the files "
                           "themselves, not links to them.")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise CatalogError(f"{archive} contains a special file ({info.filename[:80]!r}); only files and "
                           "folders are accepted.")
    if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise CatalogError(f"{archive} looks like a zip bomb: {info.filename[:80]!r} would unpack "
                           f"{info.file_size / max(info.compress_size, 1):.0f} times larger than it is packed "
                           f"(the limit is {limits.max_ratio:.0f}).")
    return rel


def check_archive(path: Path, limits: Limits = LIMITS) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Validate a zip from its end record and directory alone; return its entries with their safe paths.

    Raises ``CatalogError`` for: over the size cap, not a zip, too many entries, an absolute or ``..`` name,
    a symlink or special file, an encrypted entry, a bomb-like ratio (per entry and in total), or a total
    unpacked size over the cap. Nothing is written.
    """
    archive = path.name
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise CatalogError(f"{archive} is {human_bytes(size)}; archives over {human_bytes(limits.max_archive_bytes)} "
                           "are refused (for larger catalogs give a folder on the server).")
    entries, cd_size = _end_record(path, size)
    # a directory entry takes at least 46 bytes plus its name; 512 per entry on average is generous
    if entries > limits.max_entries or cd_size > 512 * limits.max_entries:
        raise CatalogError(f"{archive} has more than {limits.max_entries:,} entries; split the catalog or give a "
                           "folder on the server.")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise CatalogError(f"{archive} is not a readable zip archive ({_short(exc)}).") from exc
    if len(infos) > limits.max_entries:
        raise CatalogError(f"{archive} has {len(infos):,} entries; the limit is {limits.max_entries:,}.")
    checked = [(info, _check_entry(info, archive, limits)) for info in infos]
    seen: set[str] = set()
    for info, rel in checked:
        key = rel.as_posix()
        if key in seen and not info.is_dir():
            raise CatalogError(f"{archive} lists {info.filename[:80]!r} twice; zip each file once.")
        seen.add(key)
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > limits.max_total_bytes:
        raise CatalogError(f"{archive} would unpack to {human_bytes(total)}; the limit is "
                           f"{human_bytes(limits.max_total_bytes)}.")
    if total > limits.ratio_floor_bytes and total > limits.max_ratio * max(packed, 1):
        raise CatalogError(f"{archive} looks like a zip bomb: it would unpack {total / max(packed, 1):.0f} times "
                           f"larger than it is packed (the limit is {limits.max_ratio:.0f}).")
    return checked


def _short(exc: BaseException) -> str:
    """An exception as a few words without server paths (``OSError`` carries the file name)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text[:120]


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written_before: int,
                archive: str, limits: Limits) -> int:
    """Stream one entry to ``target`` enforcing the caps on what is actually written; return the new total.

    A header that under-states an entry's size cannot smuggle in more: ``zipfile`` stops at the stated size
    and then fails the entry's CRC, which ``extract_archive`` reports as a damaged archive.
    """
    total = written_before
    written = 0
    with zf.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            total += len(chunk)
            if total > limits.max_total_bytes:
                raise CatalogError(f"{archive} unpacks to more than {human_bytes(limits.max_total_bytes)}; "
                                   "the limit was reached while unpacking.")
            if written > limits.ratio_floor_bytes and written > limits.max_ratio * max(info.compress_size, 1):
                raise CatalogError(f"{archive} looks like a zip bomb: {info.filename[:80]!r} unpacks more than "
                                   f"{limits.max_ratio:.0f} times larger than it is packed.")
            out.write(chunk)
    return total


def extract_archive(path: str | Path, workdir: str | Path, limits: Limits = LIMITS) -> Path:
    """Check the zip at ``path``, then unpack it into a new folder inside ``workdir``; return that folder.

    ``__MACOSX/`` and ``.DS_Store`` litter is validated like everything else but not written. Only regular
    files and folders are ever created, each file opened exclusively below the new folder. On any refusal the
    partly unpacked folder is removed and ``CatalogError`` raised.
    """
    path = Path(path)
    archive = path.name
    checked = check_archive(path, limits)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="unpacked-", dir=workdir)).resolve()
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info, rel in checked:
                if rel.parts == (".",) or _litter(rel.parts):
                    continue
                target = dest.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if not os.path.realpath(target.parent).startswith(str(dest)):  # defence in depth
                    raise CatalogError(f"{archive} contains an entry that points outside the archive.")
                total = _copy_entry(zf, info, target, total, archive, limits)
    except CatalogError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError,
            ValueError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise CatalogError(f"{archive} is damaged and could not be unpacked ({_short(exc)}).") from exc
    log.info("unpacked %s: %d entries, %s", archive, len(checked), human_bytes(total))
    return dest


def _litter(parts: tuple[str, ...]) -> bool:
    """Platform litter that is never unpacked (hidden catalog files still are, so a CSV may name them)."""
    return any(p in IGNORED_DIRS or p in IGNORED_FILES for p in parts)
