"""Reading the listening-history exports people download from Spotify, Last.fm and ListenBrainz.

Why detect by content: people rename files, unzip and re-zip them, and export tools name their CSVs freely, so
the keys of the first record (or the columns of the first line) decide the format, never the file name. The
one place the name counts is a file named like Spotify's export whose content is another service's: that is a
mix-up worth one sentence rather than a silent guess.

Why all or nothing: an import that stops half-way leaves a profile with some years of plays and not others,
and re-importing cannot tell which. So every file is read and checked first; any bad one raises a
``HistoryError`` naming it, and nothing is returned.

Every play keeps its time as Unix seconds (UTC) and a fingerprint that stays the same when the same export is
read again and when Spotify's two schemas describe the same play, so storing plays by fingerprint makes
re-imports add nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import pandas as pd

from core.catalog.archive import CatalogError, Limits, check_archive, human_bytes, is_ignored

from .names import normalize

log = logging.getLogger(__name__)

MB = 1024 * 1024
#: All files of one import together; a decade of Spotify extended history zips to about 30 MB.
MAX_UPLOAD_BYTES = 200 * MB
#: Plays (records) in one import; a heavy listener plays about 30,000 tracks a year.
MAX_PLAYS = 2_000_000
#: A play shorter than this is a skip, not a like (Spotify counts a stream from 30 s).
SKIP_MS = 30_000
#: Zip caps: history JSON packs about 10-fold, so 200 MB of zip is at most ~2 GB of text; the rest as catalogs.
ZIP_LIMITS = Limits(max_archive_bytes=MAX_UPLOAD_BYTES, max_entries=10_000, max_total_bytes=2048 * MB)
#: One member read in memory at a time, never more than this (Spotify splits its history into ~12 MB files).
MAX_MEMBER_BYTES = 512 * MB
#: Members of a zip worth parsing; everything else (ReadMeFirst PDFs, images) is listed as ignored.
TEXT_SUFFIXES = (".json", ".jsonl", ".csv")
COLUMNS = ["source", "artist", "track", "album", "played_at", "ms_played", "skip", "fingerprint"]

_SPOTIFY_NAME = re.compile(r"streaming_?history", re.IGNORECASE)
_VIDEO_NAME = re.compile(r"streaming_?history_?video", re.IGNORECASE)
_SERVICE = {"spotify": "Spotify extended streaming history", "spotify-basic": "Spotify account-data history",
            "lastfm": "Last.fm scrobbles", "listenbrainz": "ListenBrainz listens"}
_LASTFM_DATE = "%d %b %Y %H:%M"  # lastfm-to-csv: "31 Jan 2021 14:05", UTC


class HistoryError(ValueError):
    """A history export cannot be imported; the message is one sentence a person can act on, safe to show in the UI."""


@dataclass
class History:
    """The plays of one import (``COLUMNS``, one row per play, skips included) and what happened to every file.

    ``report`` keys: ``files`` (read), ``ignored_files`` (names) with ``ignored_reasons`` (name → why),
    ``records`` (every record seen), ``plays`` (rows in ``plays``, skips included), ``skipped_short`` (rows
    that are skips), ``skipped_no_artist`` (podcasts, audiobooks, untagged: not in ``plays``),
    ``skipped_no_date`` (Last.fm "now playing" rows), ``duplicates`` (dropped), ``sources`` (plays per source),
    ``artists`` (distinct artists, by matching key, with at least one play that is not a skip: those can be likes).
    """

    plays: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)

    def artist_plays(self) -> pd.DataFrame:
        """Plays per artist without the skips, most played first: ``artist`` (the most frequent spelling), ``plays``."""
        liked = self.plays[~self.plays["skip"]]
        if liked.empty:
            return pd.DataFrame({"artist": pd.Series([], dtype=str), "plays": pd.Series([], dtype="int64")})
        pairs = pd.DataFrame({"key": liked["artist"].map(normalize), "artist": liked["artist"]})
        spellings = pairs.value_counts().reset_index(name="n")  # most frequent spelling of a key first
        spellings = spellings.sort_values(["n", "artist"], ascending=[False, True], kind="stable")
        out = spellings.groupby("key", sort=False).agg(artist=("artist", "first"), plays=("n", "sum"))
        out["plays"] = out["plays"].astype("int64")
        return out.sort_values(["plays", "artist"], ascending=[False, True], ignore_index=True)


@dataclass
class _Tally:
    """Counts and file lists gathered while reading, before the plays are joined."""

    files: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    records: int = 0
    no_artist: int = 0
    no_date: int = 0
    frames: list[pd.DataFrame] = field(default_factory=list)

    def ignore(self, name: str, reason: str) -> None:
        self.ignored[name] = reason
        log.info("ignored %s: %s", name, reason)

    def count(self, name: str, n: int) -> None:
        """Add a file's records, refusing the import once it passes ``MAX_PLAYS``."""
        self.records += n
        if self.records > MAX_PLAYS:
            raise HistoryError(f"{name} brings this import past {MAX_PLAYS:,} plays; import the export in "
                               "several parts (a few files or years at a time).")


# ---------------------------------------------------------------- entry point

def read_exports(files: Sequence[tuple[str, bytes]] | Sequence[str | Path]) -> History:
    """Read history exports (paths, or ``(file name, content)`` pairs from an upload) into one ``History``.

    Each item may be a zip (Spotify's, ListenBrainz's, or one of Last.fm CSVs) or a single JSON, JSON-lines or
    CSV file. Raises ``HistoryError`` for anything that cannot be read as a whole; nothing is returned then.
    """
    items = _load_inputs(files)
    tally = _Tally()
    for name, data in items:
        if _is_zip(name, data):
            _read_zip(name, data, tally)
        else:
            _read_member(name, data, tally, in_zip=False)
    if not tally.frames:
        found = ", ".join(f"{n} ({r})" for n, r in list(tally.ignored.items())[:5]) or "nothing"
        raise HistoryError(f"No listening history was found in {', '.join(n for n, _ in items)}: found {found}; "
                           "upload the history files of a Spotify, Last.fm or ListenBrainz export.")
    plays = pd.concat(tally.frames, ignore_index=True)
    if plays.empty:
        raise HistoryError(f"{', '.join(tally.files)} hold no music plays ({tally.no_artist:,} records without "
                           "an artist, such as podcasts, and nothing else); upload a music listening history.")
    before = len(plays)
    plays = plays.drop_duplicates("fingerprint", keep="first", ignore_index=True)
    report = {
        "files": tally.files,
        "ignored_files": list(tally.ignored),
        "ignored_reasons": dict(tally.ignored),
        "records": tally.records,
        "plays": len(plays),
        "skipped_short": int(plays["skip"].sum()),
        "skipped_no_artist": tally.no_artist,
        "skipped_no_date": tally.no_date,
        "duplicates": before - len(plays),
        "sources": {k: int(v) for k, v in plays["source"].value_counts().sort_index().items()},
    }
    history = History(plays=plays, report=report)
    report["artists"] = len(history.artist_plays())
    log.info("read %s plays of %s artists from %s file(s)", f"{len(plays):,}", report["artists"], len(tally.files))
    return history


def _load_inputs(files: Sequence[tuple[str, bytes]] | Sequence[str | Path]) -> list[tuple[str, bytes]]:
    """Every item as (display name, bytes), refusing more than ``MAX_UPLOAD_BYTES`` before reading further."""
    if isinstance(files, (str, Path)) or (isinstance(files, tuple) and len(files) == 2 and
                                           isinstance(files[1], (bytes, bytearray))):
        files = [files]  # type: ignore[list-item]
    if not files:
        raise HistoryError("No file was given; choose the history export to import.")
    items: list[tuple[str, bytes]] = []
    total = 0
    for item in files:
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise HistoryError(f"{path.name or item} is not a file; give the path of a downloaded export.")
            size, name = path.stat().st_size, path.name
        else:
            name, content = item
            name, size = PurePosixPath(str(name).replace("\\", "/")).name or "upload", len(content)
        total += size
        if total > MAX_UPLOAD_BYTES:
            raise HistoryError(f"The files come to more than {human_bytes(MAX_UPLOAD_BYTES)} (at {name}); "
                               "import the export in several parts.")
        items.append((name, path.read_bytes() if isinstance(item, (str, Path)) else bytes(content)))
    return items


def _is_zip(name: str, data: bytes) -> bool:
    return name.lower().endswith(".zip") or data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


# ---------------------------------------------------------------- zips

def _read_zip(name: str, data: bytes, tally: _Tally) -> None:
    """Read every history file in a zip; other members are listed as ignored, with the reason."""
    read_before = len(tally.files)
    with tempfile.TemporaryDirectory(prefix="history-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            entries = check_archive(path, ZIP_LIMITS)
        except CatalogError as exc:
            raise HistoryError(str(exc).replace("the catalog", "the export")) from exc
        unpacked = 0
        with zipfile.ZipFile(path) as zf:
            for info, rel in entries:
                if info.is_dir() or is_ignored(rel.parts):
                    continue
                member = f"{name}/{rel.as_posix()}"
                reason = _skip_reason(rel)
                if reason:
                    tally.ignore(member, reason)
                    continue
                content = _read_entry(zf, info, member)
                unpacked += len(content)
                if unpacked > ZIP_LIMITS.max_total_bytes:
                    raise HistoryError(f"{name} unpacks to more than {human_bytes(ZIP_LIMITS.max_total_bytes)}; "
                                       "import the export in several parts.")
                _read_member(member, content, tally, in_zip=True)
    if len(tally.files) == read_before:
        found = ", ".join(PurePosixPath(n).name for n in tally.ignored if n.startswith(name + "/")) or "no files"
        raise HistoryError(f"{name} holds no listening history (it contains {found[:300]}); upload the zip "
                           "the service sent, or its history files.")


def _skip_reason(rel: PurePosixPath) -> str | None:
    """Why a zip member is not read, or None to read it: only history text files are."""
    if rel.suffix.lower() == ".zip":
        return "a zip inside the zip (unzip it and upload its files)"
    if rel.suffix.lower() not in TEXT_SUFFIXES:
        return "not a history file"
    return None


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str) -> bytes:
    """One member's bytes, never more than its header claims nor ``MAX_MEMBER_BYTES`` (a lying header is caught here)."""
    cap = min(info.file_size, MAX_MEMBER_BYTES)
    if info.file_size > MAX_MEMBER_BYTES:
        raise HistoryError(f"{member} is {human_bytes(info.file_size)}; files over "
                           f"{human_bytes(MAX_MEMBER_BYTES)} are refused (split it into several).")
    try:
        with zf.open(info) as f:
            content = f.read(cap + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise HistoryError(f"{member} cannot be unpacked ({str(exc)[:100]}); download the export again.") from exc
    if len(content) > cap:
        raise HistoryError(f"{member} unpacks to more than its archive header says; the zip is refused.")
    return content


# ---------------------------------------------------------------- one file

def _read_member(name: str, data: bytes, tally: _Tally, in_zip: bool) -> None:
    """Parse one file, detect its format from its content, and add its plays (or ignore it, inside a zip)."""
    short = PurePosixPath(name).name
    if _VIDEO_NAME.search(short):  # same schema as the audio history, but music videos and video podcasts
        tally.ignore(name, "Spotify video history (music only)")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if in_zip and not _SPOTIFY_NAME.search(short):
            tally.ignore(name, "not UTF-8 text")
            return
        raise HistoryError(f"{name} is not UTF-8 text (byte {exc.start:,}); export it again as UTF-8.") from exc
    if not text.strip():
        tally.ignore(name, "empty")
        return
    kind, records, described = _records(name, text)
    if kind in ("spotify-podcast", "empty"):
        tally.ignore(name, "Spotify podcast history (music only)" if kind == "spotify-podcast" else "no plays")
        return
    if _SPOTIFY_NAME.search(short) and kind not in ("spotify", "spotify-basic"):
        what = f"holds {_SERVICE[kind]}" if kind in _SERVICE else f"is not in Spotify's format ({described})"
        raise HistoryError(f"{name} is named like a Spotify export but {what}; upload the file under its original "
                           "name, or the original Spotify export.")
    if kind is None:
        if in_zip:
            tally.ignore(name, f"not a listening history ({described})")
            return
        raise HistoryError(f"{name} is not a Spotify, Last.fm or ListenBrainz history export ({described}); "
                           "upload only the history files, or the zip as the service sent it.")
    tally.count(name, len(records))
    frame = _FRAMERS[kind](name, records, tally)
    tally.files.append(name)
    tally.frames.append(_finish(frame, kind))


def _records(name: str, text: str) -> tuple[str | None, list, str]:
    """(format, records, description) of a file's text: JSON when it looks like JSON, else a Last.fm CSV.

    A CSV may start with "[" too (Last.fm's artist "[unknown]"), so a JSON failure is only reported when the
    text is not a Last.fm CSV either.
    """
    if text.lstrip()[:1] not in ("[", "{"):
        return _csv_records(text)
    try:
        return _json_records(name, text)
    except HistoryError:
        as_csv = _csv_records(text)
        if as_csv[0] == "lastfm":
            return as_csv
        raise


def _keys_of(record: Any) -> str:
    if isinstance(record, dict):
        keys = ", ".join(list(record)[:8]) or "none"
        return f"its first record has keys {keys}"
    return f"its first record is {type(record).__name__}, not an object"


def _json_records(name: str, text: str) -> tuple[str | None, list, str]:
    """(format, records, a description for messages) of a JSON array, a JSON object or JSON lines."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise _json_error(name, text, exc) from exc
        doc = _json_lines(name, text)
    records = doc if isinstance(doc, list) else [doc]
    if not records:
        return "empty", [], "an empty list"
    first = records[0]
    if isinstance(doc, dict) and "track_metadata" not in doc:
        return None, [], f"it is one JSON object with keys {', '.join(list(doc)[:8]) or 'none'}"
    kind = _json_kind(first)
    if kind and not all(isinstance(r, dict) for r in records):
        bad = next(i for i, r in enumerate(records) if not isinstance(r, dict))
        raise HistoryError(f"{name}: record {bad + 1:,} is not an object like the others; download the export again.")
    return kind, records, _keys_of(first)


def _json_error(name: str, text: str, exc: json.JSONDecodeError) -> HistoryError:
    """A parse failure as a sentence: a file that stops mid-record was cut off in the download."""
    cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()) - 1
    if cut:
        return HistoryError(f"{name} looks cut off (its JSON stops mid-record at line {exc.lineno:,}); download "
                            "the export again or unzip it once more.")
    return HistoryError(f"{name} is not valid JSON ({exc.msg.lower()} at line {exc.lineno:,}, column "
                        f"{exc.colno}); upload the file as the service sent it.")


def _json_lines(name: str, text: str) -> list:
    """JSON lines (ListenBrainz's ``listens/YYYY/M.jsonl``): one record per line; a broken last line is a cut."""
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    records = []
    for pos, (lineno, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if pos == len(lines) - 1:
                raise HistoryError(f"{name} looks cut off (its last line, {lineno:,}, stops mid-record); download "
                                   "the export again.") from exc
            raise HistoryError(f"{name} is not valid JSON lines ({exc.msg.lower()} at line {lineno:,}); upload "
                               "the file as the service sent it.") from exc
    return records


def _json_kind(record: Any) -> str | None:
    """Which service wrote a JSON record, from its keys."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if {"ts", "ms_played"} <= keys and keys & {"master_metadata_album_artist_name", "master_metadata_track_name",
                                               "spotify_track_uri"}:
        return "spotify"
    if {"endTime", "msPlayed", "artistName", "trackName"} <= keys:
        return "spotify-basic"
    if {"endTime", "msPlayed", "podcastName"} <= keys:
        return "spotify-podcast"
    if "track_metadata" in keys and keys & {"listened_at", "inserted_at"}:
        return "listenbrainz"
    return None


def _csv_records(text: str) -> tuple[str | None, list, str]:
    """(format, rows as dicts, description) of a Last.fm scrobble CSV, with or without its header line."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return "empty", [], "no rows"
    head = [c.strip().lower() for c in rows[0]]
    described = f"its first line has columns {', '.join(c[:40] for c in rows[0][:8])}"
    if "artist" in head and "track" in head and ({"uts", "utc_time", "date"} & set(head)):
        return "lastfm", [dict(zip(head, r)) for r in rows[1:]], described
    if len(rows[0]) == 4 and any(len(r) == 4 and _is_lastfm_date(r[3]) for r in rows[:5]):
        return "lastfm", [dict(zip(("artist", "album", "track", "date"), r)) for r in rows], described
    return None, [], described


def _is_lastfm_date(value: str) -> bool:
    """True for lastfm-to-csv's "31 Jan 2021 14:05" (its first row may be the undated "now playing" one)."""
    try:
        pd.to_datetime(value.strip(), format=_LASTFM_DATE)
    except (ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------- records → plays

def _seconds(name: str, values: pd.Series, fmt: str, what: str) -> pd.Series:
    """Dates as int64 Unix seconds (UTC); one that cannot be read refuses the file, naming the record."""
    stamps = pd.to_datetime(values, utc=True, format=fmt, errors="coerce")
    bad = stamps.isna().to_numpy().nonzero()[0]
    if len(bad):  # the index still counts every record of the file, also those without an artist
        raise HistoryError(f"{name}: record {values.index[bad[0]] + 1:,} has {what} "
                           f"{str(values.iloc[bad[0]])[:40]!r}, which is not a date; download the export again.")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")


def _text(values: pd.Series) -> pd.Series:
    """Names as stripped strings, "" where missing."""
    return values.fillna("").astype(str).str.strip()


def _ms(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").fillna(-1).astype("int64")


#: What services write where the artist is unknown (Spotify's local files, Last.fm's untagged scrobbles).
UNKNOWN_ARTISTS = frozenset({"unknown artist", "unknown", "<unknown>", "[unknown]"})


def _drop_no_artist(frame: pd.DataFrame, tally: _Tally) -> pd.DataFrame:
    """Rows without an artist (podcasts, audiobooks, "[unknown]") are counted, never imported."""
    keep = (frame["artist"] != "") & ~frame["artist"].str.casefold().isin(UNKNOWN_ARTISTS)
    tally.no_artist += int((~keep).sum())
    return frame[keep]


def _spotify(name: str, records: list, tally: _Tally) -> pd.DataFrame:
    """Extended streaming history: ``ts`` is when the play ended (UTC); podcasts and audiobooks have no artist."""
    raw = pd.DataFrame(records, columns=["ts", "ms_played", "master_metadata_album_artist_name",
                                         "master_metadata_track_name", "master_metadata_album_album_name"])
    frame = pd.DataFrame({"artist": _text(raw["master_metadata_album_artist_name"]),
                          "track": _text(raw["master_metadata_track_name"]),
                          "album": _text(raw["master_metadata_album_album_name"]),
                          "ts": raw["ts"], "ms_played": _ms(raw["ms_played"])})
    frame = _drop_no_artist(frame, tally)
    frame["played_at"] = _seconds(name, frame["ts"], "ISO8601", "the time")
    return frame.drop(columns="ts")


def _spotify_basic(name: str, records: list, tally: _Tally) -> pd.DataFrame:
    """Account-data history: ``endTime`` "2023-01-31 18:04" (UTC, to the minute), no album."""
    raw = pd.DataFrame(records, columns=["endTime", "artistName", "trackName", "msPlayed"])
    frame = pd.DataFrame({"artist": _text(raw["artistName"]), "track": _text(raw["trackName"]), "album": "",
                          "end": raw["endTime"], "ms_played": _ms(raw["msPlayed"])})
    frame = _drop_no_artist(frame, tally)
    frame["played_at"] = _seconds(name, frame["end"], "%Y-%m-%d %H:%M", "the end time")
    return frame.drop(columns="end")


def _lastfm(name: str, records: list, tally: _Tally) -> pd.DataFrame:
    """Scrobbles: ``uts`` (Unix seconds) or a "31 Jan 2021 14:05" date in UTC; no duration, so never a skip."""
    raw = pd.DataFrame(records, columns=["artist", "album", "track", "uts", "utc_time", "date"])
    frame = pd.DataFrame({"artist": _text(raw["artist"]), "track": _text(raw["track"]),
                          "album": _text(raw["album"]), "ms_played": -1})
    uts = pd.to_numeric(raw["uts"], errors="coerce")
    dates = _text(raw["date"]).where(raw["date"].notna(), _text(raw["utc_time"]).str.replace(",", "", regex=False))
    undated = uts.isna() & (dates == "")  # "now playing" rows carry no date
    tally.no_date += int(undated.sum())
    frame, uts, dates = frame[~undated], uts[~undated], dates[~undated]
    frame = _drop_no_artist(frame, tally)
    uts, dates = uts[frame.index], dates[frame.index]
    seconds = pd.Series(0, index=frame.index, dtype="int64")
    if uts.notna().any():
        seconds[uts.notna()] = uts[uts.notna()].astype("int64")
    if uts.isna().any():
        seconds[uts.isna()] = _seconds(name, dates[uts.isna()], _LASTFM_DATE, "the date")
    frame["played_at"] = seconds
    return frame


def _listenbrainz(name: str, records: list, tally: _Tally) -> pd.DataFrame:
    """Listens: ``listened_at`` (Unix seconds, or ISO text) else ``inserted_at``; a listen is never a skip.

    ``additional_info.duration_ms`` is the track's length, not how long it was heard, so it does not count as
    ``ms_played``: ListenBrainz only records a listen after half the track or four minutes anyway.
    """
    rows = []
    for r in records:
        meta = r.get("track_metadata") or {}
        when = r.get("listened_at") if r.get("listened_at") is not None else r.get("inserted_at")
        rows.append((meta.get("artist_name"), meta.get("track_name"), meta.get("release_name"), when))
    raw = pd.DataFrame(rows, columns=["artist", "track", "album", "when"])
    frame = pd.DataFrame({"artist": _text(raw["artist"]), "track": _text(raw["track"]),
                          "album": _text(raw["album"]), "when": raw["when"], "ms_played": -1})
    frame = _drop_no_artist(frame, tally)
    numeric = pd.to_numeric(frame["when"], errors="coerce")
    seconds = numeric.fillna(0).astype("int64")
    if numeric.isna().any():
        seconds[numeric.isna()] = _seconds(name, frame["when"][numeric.isna()].astype(str), "ISO8601", "the time")
    frame["played_at"] = seconds
    return frame.drop(columns="when")


_FRAMERS = {"spotify": _spotify, "spotify-basic": _spotify_basic, "lastfm": _lastfm, "listenbrainz": _listenbrainz}


def fingerprint(artist: str, track: str, played_at: int) -> str:
    """A play's identity: the same in every re-import and in both Spotify schemas (whose clocks share the minute)."""
    text = f"{normalize(artist)}|{normalize(track)}|{int(played_at) // 60 * 60}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _finish(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The common columns in ``COLUMNS`` order: the source, the skip flag and the fingerprint."""
    frame = frame.reset_index(drop=True)
    frame["source"] = source
    frame["ms_played"] = frame["ms_played"].astype("int64")
    frame["played_at"] = frame["played_at"].astype("int64")
    frame["skip"] = (frame["ms_played"] >= 0) & (frame["ms_played"] < SKIP_MS)
    frame["fingerprint"] = _fingerprints(frame["artist"].tolist(), frame["track"].tolist(),
                                         (frame["played_at"] // 60 * 60).tolist())
    return frame[COLUMNS]


def _fingerprints(artists: list[str], tracks: list[str], minutes: list[int]) -> list[str]:
    """``fingerprint`` for many plays at once (the same text hashed; plain lists, as pandas iterates slowly)."""
    sha1 = hashlib.sha1
    return [sha1(f"{normalize(a)}|{normalize(t)}|{m}".encode("utf-8")).hexdigest()
            for a, t, m in zip(artists, tracks, minutes)]
