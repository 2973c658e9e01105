"""Readers for real interaction formats, each ending in ``music.data.dataset.make_dataset`` (one shape, one cleaning).

Formats, exactly as distributed:

- Last.fm HetRec-2K (GroupLens): ``user_artists.dat`` (userID, artistID, weight = play count),
  ``artists.dat`` (id, name, url, pictureURL), ``tags.dat`` (tagID, tagValue; ISO-8859-1),
  ``user_taggedartists.dat`` (userID, artistID, tagID, day, month, year). Tab-separated with headers.
- MovieLens-100K as shipped in the ``recbole==1.2.1`` wheel (RecBole atomic files, ``field:type`` headers).
- Last.fm-1K: ``userid-timestamp-artid-artname-traid-traname.tsv``, no header, tab-separated,
  ISO-8601 UTC timestamps, MusicBrainz ids that are often empty.
- 30Music (Idomaar): ``type<TAB>id<TAB>timestamp<TAB>{properties json}<TAB>{linked entities json}`` in
  ``entities/{tracks,persons,tags}.idomaar`` and ``relations/{sessions,events}.idomaar``.
- Generic CSV: ``user,item`` plus one of ``weight|rating|count|plays``; optional ``timestamp``,
  ``title``, ``artist``, ``genres`` (``|``-separated); or any column names, mapped to those roles with
  ``columns`` (a service's own log, ``music.logs``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd

from core.artifacts import DATA_DIR, atomic_path
from core.training import BadTrainingData
from music.data.dataset import DataUnavailable, MusicDataset, make_dataset, top_tags

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Last.fm HetRec-2K

LASTFM_2K_FILES = ("user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat")
LASTFM_2K_URL = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"


def ensure_lastfm_2k(path: str | Path | None = None, *, download: bool = False) -> Path:
    """The HetRec folder: ``path``, the cache ``data/lastfm-2k``, or (``download=True`` only) GroupLens.

    Never downloads implicitly: the app's default path is offline.
    """
    if path is not None:
        return Path(path)
    cache = DATA_DIR / "lastfm-2k"
    if (cache / "user_artists.dat").is_file():
        return cache
    if not download:
        raise DataUnavailable("Last.fm-2K is not here: pass --path to the unzipped hetrec2011-lastfm-2k folder, "
                              f"or --download to fetch {LASTFM_2K_URL}")
    import urllib.request

    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".hetrec2011-lastfm-2k.zip.part"
    log.info("downloading %s", LASTFM_2K_URL)
    with urllib.request.urlopen(LASTFM_2K_URL, timeout=60) as r, open(tmp, "wb") as f:
        f.write(r.read())
    with zipfile.ZipFile(tmp) as z:
        for name in z.namelist():
            if Path(name).name in LASTFM_2K_FILES:
                (cache / Path(name).name).write_bytes(z.read(name))
    tmp.unlink()
    return cache


def load_lastfm_2k(folder: Path, *, n_genres: int = 3) -> MusicDataset:
    """Artist play counts (implicit); genres = each artist's ``n_genres`` most-used tags.

    ``events`` are the dated tag assignments (a user tagging an artist on a day), the only
    timestamps this dataset has; one event per (user, artist, day). ``tags`` keeps every dated tag
    assignment with its tag name, so an evaluation can re-derive genres from training-time tags only
    (``MusicDataset.genres_before``); the genres loaded here use every dated tag, for serving.
    Undated rows (a year before Last.fm opened) feed neither events nor genres.
    """
    folder = Path(folder)
    missing = [f for f in LASTFM_2K_FILES[:2] if not (folder / f).is_file()]
    if missing:
        raise DataUnavailable(f"{folder} lacks {', '.join(missing)}: pass the unzipped hetrec2011-lastfm-2k folder")
    report: dict[str, Any] = {}
    ua = _read_tsv(folder / "user_artists.dat", report, "user_artists", expect=3)
    inter = pd.DataFrame({"user": ua.iloc[:, 0], "item": ua.iloc[:, 1], "weight": ua.iloc[:, 2]})
    artists = _read_tsv(folder / "artists.dat", report, "artists", expect=4, encoding="utf-8")
    items = pd.DataFrame({"item": artists.iloc[:, 0].astype(str).str.strip(), "title": artists.iloc[:, 1]})
    items["artist"] = items["title"]
    events = None
    tag_events = None
    if (folder / "user_taggedartists.dat").is_file():
        uta = _read_tsv(folder / "user_taggedartists.dat", report, "user_taggedartists", expect=6)
        uta.columns = ["user", "item", "tag", "day", "month", "year"]
        for c in ("day", "month", "year"):
            uta[c] = pd.to_numeric(uta[c], errors="coerce")
        dates = pd.to_datetime(
            uta[["year", "month", "day"]].rename(columns=str), errors="coerce", utc=True
        )
        # Last.fm opened in 2002; earlier years in this file are typos, not listening history.
        ok = dates.notna() & (uta["year"] >= 2002)
        report["tag_rows_bad_date"] = int((~ok).sum())
        ev = uta[ok].assign(timestamp=_unix_seconds(dates[ok]))
        events = ev[["user", "item", "timestamp"]].astype({"user": str, "item": str}).drop_duplicates()
        if (folder / "tags.dat").is_file():
            tags = _read_tsv(folder / "tags.dat", report, "tags", expect=2, encoding="ISO-8859-1")
            tag_name = dict(zip(tags.iloc[:, 0].astype(str).str.strip(), tags.iloc[:, 1].astype(str)))
            ids = ev["tag"].astype(str).str.strip()
            tag_events = pd.DataFrame({"user": ev["user"].astype(str).str.strip(), "item": ev["item"].astype(str).str.strip(),
                                       "tag": ids.map(tag_name).fillna(ids),
                                       "timestamp": ev["timestamp"].astype(np.int64)}).reset_index(drop=True)
    genres = top_tags(tag_events, n_genres) if tag_events is not None else {}
    items["genres"] = [genres.get(i, []) for i in items["item"]]
    return make_dataset("lastfm-2k", "implicit", inter, items, events, report, tags=tag_events)


def _unix_seconds(dates: pd.Series) -> pd.Series:
    """Unix seconds of tz-aware datetimes, whatever their resolution (pandas 3 may use s or us)."""
    epoch = pd.Timestamp(0, tz="UTC")
    return (dates - epoch) // pd.Timedelta(seconds=1)


def _read_tsv(path: Path, report: dict, what: str, *, expect: int, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a headed TSV as strings, counting rows with the wrong number of fields as malformed."""
    rows, bad = [], 0
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        next(f, None)  # header
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < expect or not parts[0].strip():
                if line.strip():
                    bad += 1
                continue
            rows.append(parts[:expect])
    if bad:
        log.warning("%s: skipped %d malformed rows", path.name, bad)
    report[f"{what}_malformed_rows"] = bad
    report["malformed_rows"] = report.get("malformed_rows", 0) + bad
    return pd.DataFrame(rows, dtype=str)


# ----------------------------------------------------------------------------------------------
# MovieLens-100K from the recbole wheel

RECBOLE_PIN = "recbole==1.2.1"
ML_MEMBERS = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def movielens_cache_dir() -> Path:
    return DATA_DIR / "movielens-100k"


def ensure_movielens_100k(path: str | Path | None = None, *, download: bool = False) -> Path:
    """Folder holding ``ml-100k.{inter,item,user}``: ``path``, the cache, or extracted from the wheel.

    The wheel is looked for in ``data/wheels``; with ``download=True`` it is fetched with
    ``pip download --no-deps recbole==1.2.1`` (PyPI only). Never done implicitly.
    """
    if path is not None:
        p = Path(path)
        if p.is_dir() and (p / "ml-100k.inter").is_file():
            return p
        if p.is_file() and p.suffix == ".whl":
            return _extract_ml_from_wheel(p)
        raise DataUnavailable(f"{p} is neither a folder with ml-100k.inter nor the recbole wheel")
    cache = movielens_cache_dir()
    if all((cache / m).is_file() for m in ML_MEMBERS):
        return cache
    wheels = sorted((DATA_DIR / "wheels").glob("recbole-1.2.1-*.whl"))
    if not wheels and download:
        (DATA_DIR / "wheels").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", RECBOLE_PIN, "-d", str(DATA_DIR / "wheels")]
        log.info("fetching MovieLens-100K inside the recbole wheel: %s", " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        wheels = sorted((DATA_DIR / "wheels").glob("recbole-1.2.1-*.whl"))
    if not wheels:
        raise DataUnavailable(
            "MovieLens-100K is not here. Run `pip download --no-deps recbole==1.2.1 -d data/wheels` "
            "or pass --download."
        )
    return _extract_ml_from_wheel(wheels[0])


def _extract_ml_from_wheel(wheel: Path) -> Path:
    cache = movielens_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for m in ML_MEMBERS:
            with atomic_path(cache / m) as tmp:
                tmp.write_bytes(z.read(f"recbole/dataset_example/ml-100k/{m}"))
    return cache


def load_movielens_100k(path: str | Path | None = None, *, download: bool = False) -> MusicDataset:
    """Explicit 1–5 ratings with timestamps; items = movies with title (year) and genres."""
    folder = ensure_movielens_100k(path, download=download)
    report: dict[str, Any] = {}
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t", dtype=str)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    raw = pd.DataFrame({"user": inter["user_id"], "item": inter["item_id"], "weight": inter["rating"],
                        "timestamp": pd.to_numeric(inter["timestamp"], errors="coerce")})
    item = pd.read_csv(folder / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    item.columns = [c.split(":")[0] for c in item.columns]
    title = item["movie_title"] + np.where(item["release_year"] != "", " (" + item["release_year"] + ")", "")
    items = pd.DataFrame({"item": item["item_id"], "title": title, "artist": "",
                          "genres": [g.split() for g in item["class"]]})
    events = raw[["user", "item", "timestamp"]].dropna()
    return make_dataset("movielens-100k", "explicit", raw, items, events, report)


# ----------------------------------------------------------------------------------------------
# Last.fm-1K


def load_lastfm_1k(path: Path) -> MusicDataset:
    """Every line is one play; items are tracks (MusicBrainz track id, else "artist — track")."""
    path = Path(path)
    if path.is_dir():
        path = path / "userid-timestamp-artid-artname-traid-traname.tsv"
    report: dict[str, Any] = {"malformed_rows": 0}
    users, items, stamps = [], [], []
    meta: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 6 or not parts[0] or not parts[1] or not (parts[2] or parts[3]) or not parts[5]:
                if line.strip():
                    report["malformed_rows"] += 1
                continue
            user, ts, _artid, artname, traid, traname = parts
            t = pd.to_datetime(ts, utc=True, errors="coerce")
            if pd.isna(t):
                report["malformed_rows"] += 1
                continue
            item = traid or f"{artname} — {traname}"
            meta.setdefault(item, (traname, artname))
            users.append(user)
            items.append(item)
            stamps.append(int(t.value // 10**9))
    if report["malformed_rows"]:
        log.warning("%s: skipped %d malformed lines", path.name, report["malformed_rows"])
    events = pd.DataFrame({"user": users, "item": items, "timestamp": np.asarray(stamps, dtype=np.int64)})
    raw = events.assign(weight=1.0)
    items_df = pd.DataFrame({"item": list(meta), "title": [m[0] for m in meta.values()],
                             "artist": [m[1] for m in meta.values()]})
    report["plays"] = len(events)
    return make_dataset("lastfm-1k", "implicit", raw, items_df, events, report)


# ----------------------------------------------------------------------------------------------
# 30Music (Idomaar)

_DECODER = json.JSONDecoder()


def parse_idomaar_line(line: str) -> tuple[str, str, int, dict, dict]:
    """Split one Idomaar line into (type, id, timestamp, properties, linked); ``ValueError`` if malformed.

    The two JSON objects are decoded one after the other instead of splitting on a tab, because
    real files separate them by a tab or a space and values may contain either.
    """
    head = line.rstrip("\r\n").split("\t", 3)
    if len(head) < 4:
        raise ValueError("fewer than 4 fields")
    kind, ident, ts, rest = head
    rest = rest.strip()
    props, end = _DECODER.raw_decode(rest)
    rest = rest[end:].strip()
    linked = _DECODER.raw_decode(rest)[0] if rest else {}
    if not isinstance(props, dict) or not isinstance(linked, dict):
        raise ValueError("properties/linked are not objects")
    return kind, ident, int(ts), props, linked


def _idomaar(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / "entities" / name, folder / "relations" / name):
        if cand.is_file():
            return cand
    return None


def _iter_idomaar(path: Path, report: dict, what: str) -> Iterator[tuple[str, str, int, dict, dict]]:
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield parse_idomaar_line(line)
            except (ValueError, json.JSONDecodeError):
                bad += 1
    report[f"{what}_malformed_rows"] = bad
    report["malformed_rows"] = report.get("malformed_rows", 0) + bad
    if bad:
        log.warning("%s: skipped %d malformed lines", path.name, bad)


def load_30music(folder: Path) -> MusicDataset:
    """Plays from ``sessions.idomaar`` (preferred: it keeps sessions) or ``events.idomaar``.

    Each session object is one play at ``session timestamp + playstart``; items are tracks with
    their artist (``persons.idomaar``, URL-encoded names) and tags as genres.
    """
    folder = Path(folder)
    report: dict[str, Any] = {}
    persons: dict[str, str] = {}
    tags: dict[str, str] = {}
    if (p := _idomaar(folder, "persons.idomaar")) is not None:
        for _k, ident, _ts, props, _l in _iter_idomaar(p, report, "persons"):
            persons[ident] = unquote_plus(str(props.get("name") or ident))
    if (p := _idomaar(folder, "tags.idomaar")) is not None:
        for _k, ident, _ts, props, _l in _iter_idomaar(p, report, "tags"):
            tags[ident] = unquote_plus(str(props.get("value") or ident))
    rows = []
    if (p := _idomaar(folder, "tracks.idomaar")) is not None:
        for _k, ident, _ts, props, linked in _iter_idomaar(p, report, "tracks"):
            artist_ids = [str(a.get("id")) for a in linked.get("artists", []) if isinstance(a, dict)]
            tag_ids = [str(t.get("id")) for t in linked.get("tags", []) if isinstance(t, dict)]
            rows.append({"item": ident, "title": unquote_plus(str(props.get("name") or ident)),
                         "artist": ", ".join(persons.get(a, a) for a in artist_ids),
                         "genres": [tags[t] for t in tag_ids if t in tags][:3]})
    items = pd.DataFrame(rows, columns=["item", "title", "artist", "genres"])
    users, tracks, stamps, sessions = [], [], [], []
    sess_path = _idomaar(folder, "sessions.idomaar")
    ev_path = _idomaar(folder, "events.idomaar")
    if sess_path is None and ev_path is None:
        raise DataUnavailable(f"{folder} has neither sessions.idomaar nor events.idomaar")
    src = sess_path or ev_path
    for _k, ident, ts, _props, linked in _iter_idomaar(src, report, "plays"):
        subj = [s for s in linked.get("subjects", []) if isinstance(s, dict) and s.get("type") == "user"]
        if not subj or ts < 0:
            report["malformed_rows"] = report.get("malformed_rows", 0) + 1
            continue
        for obj in linked.get("objects", []):
            if not isinstance(obj, dict) or obj.get("type") != "track" or obj.get("id") is None:
                continue
            users.append(str(subj[0]["id"]))
            tracks.append(str(obj["id"]))
            stamps.append(ts + int(obj.get("playstart") or 0))
            sessions.append(ident)
    events = pd.DataFrame({"user": users, "item": tracks, "timestamp": np.asarray(stamps, dtype=np.int64),
                           "session": sessions})
    report["plays"] = len(events)
    raw = events[["user", "item", "timestamp"]].assign(weight=1.0)
    return make_dataset("30music", "implicit", raw, items, events[["user", "item", "timestamp"]], report)


# ----------------------------------------------------------------------------------------------
# generic CSV

WEIGHT_COLUMNS = ("weight", "rating", "count", "plays", "playcount")
#: Values a CSV may hold: ratings on any common scale (1–5, 1–10, 0–100, -1/+1), play counts up to a billion.
#: Past these, squared errors overflow float32 and training turns every factor into NaN.
RATING_RANGE = (-100.0, 100.0)
MAX_PLAYS = 1e9


#: The roles a CSV column can play; ``user`` and ``item`` are required.
CSV_ROLES = ("user", "item", "weight", "timestamp", "title", "artist", "genres")


def default_columns(header: list[str]) -> dict[str, str]:
    """The column for each role that a header names by its usual name (``user``, ``item``, ``plays``, ...)."""
    cols = [c.strip().lower() for c in header]
    found = {role: role for role in CSV_ROLES if role in cols and role != "weight"}
    weight = next((c for c in WEIGHT_COLUMNS if c in cols), None)
    if weight:
        found["weight"] = weight
    return found


def load_csv(path: Path, *, sep: str = ",", kind: str | None = None, columns: Mapping[str, str] | None = None,
             name: str = "csv", label: str | None = None) -> MusicDataset:
    """``user,item`` + a weight column; ``kind`` defaults to explicit iff the column is ``rating``.

    ``columns`` maps roles (``CSV_ROLES``) to the file's own column names, for logs whose header says
    ``listener_id,track`` instead; a role left out is absent (no weight column = one play per row). Names are
    matched case- and space-insensitively. ``name`` becomes the dataset's name; ``label`` names the file in
    messages (an upload is stored under a random name the user never saw).
    """
    path = Path(path)
    shown = label or path.name
    if not path.is_file():
        raise DataUnavailable(f"{path} is {'a folder' if path.is_dir() else 'not a file'}: --dataset csv needs "
                              "the path of a CSV file")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, on_bad_lines="skip",
                     engine="python")
    n_lines = sum(1 for ln in text.splitlines()[1:] if ln.strip())
    df.columns = [str(c).strip().lower() for c in df.columns]
    cols = _csv_columns(df, columns, shown)
    wcol = cols.get("weight")
    kind = kind or ("explicit" if wcol == "rating" else "implicit")
    report: dict[str, Any] = {"malformed_rows": n_lines - len(df)}
    raw = pd.DataFrame({"user": df[cols["user"]].replace("", pd.NA), "item": df[cols["item"]].replace("", pd.NA),
                        "weight": df[wcol] if wcol else "1"})
    events = None
    if "timestamp" in cols:
        stamp = df[cols["timestamp"]]
        ts = pd.to_numeric(stamp, errors="coerce")
        iso = pd.to_datetime(stamp.where(ts.isna()), utc=True, errors="coerce")
        ts = ts.fillna(_unix_seconds(iso))
        raw["timestamp"] = ts
        # Events only from rows that are valid interactions (a malformed row is not a play either).
        w = pd.to_numeric(raw["weight"], errors="coerce")
        events = raw.loc[w.notna() & (w > 0), ["user", "item", "timestamp"]].dropna()
    _check_range(raw["weight"], kind, path, wcol, shown)
    items = pd.DataFrame({"item": df[cols["item"]]})
    for role in ("title", "artist"):
        items[role] = df[cols[role]] if role in cols else ""
    gen = df[cols["genres"]] if "genres" in cols else pd.Series([""] * len(df))
    items["genres"] = [[g.strip() for g in s.split("|") if g.strip()] for s in gen]
    items = items[items["item"] != ""]
    return make_dataset(name, kind, raw, items, events, report)


def _csv_columns(df: pd.DataFrame, columns: Mapping[str, str] | None, shown: str) -> dict[str, str]:
    """Role → (lower-cased) column of ``df``; one sentence naming the file's columns when one is missing."""
    if columns is None:
        if "user" not in df.columns or "item" not in df.columns:
            raise DataUnavailable(f"{shown} needs 'user' and 'item' columns (has {list(df.columns)})")
        return default_columns(list(df.columns))
    unknown = sorted(set(columns) - set(CSV_ROLES))
    if unknown:
        raise ValueError(f"unknown column role(s) {unknown}; the roles are {', '.join(CSV_ROLES)}")
    cols = {role: str(col).strip().lower() for role, col in columns.items() if col is not None and str(col).strip()}
    for role in ("user", "item"):
        if role not in cols:
            raise BadTrainingData(f"choose the {role} column of {shown} (it has {', '.join(df.columns)})")
    for role, col in cols.items():
        if col not in df.columns:
            raise BadTrainingData(f"{shown} has no column {columns[role]!r} for the {role} "
                                  f"(its columns are {', '.join(df.columns)})")
    if cols["user"] == cols["item"]:
        raise BadTrainingData(f"the user and item columns of {shown} must differ (both are {cols['user']!r})")
    return cols


def _check_range(weights: pd.Series, kind: str, path: Path, column: str | None, shown: str = "") -> None:
    """``ValueError`` naming the first offending row when a rating or play count is outside what training can use."""
    values = pd.to_numeric(weights, errors="coerce")
    lo, hi = RATING_RANGE if kind == "explicit" else (0.0, MAX_PLAYS)
    # Text that is not a number is a malformed row (skipped and counted); a number out of range, or a written
    # NaN / infinity, is a file that would train nonsense, so it is refused.
    nan_text = weights.astype(str).str.strip().str.lower().isin(("nan", "+nan", "-nan"))
    bad = (values.notna() & ((values < lo) | (values > hi))) | nan_text
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise BadTrainingData(f"{shown or path.name}: {int(bad.sum())} {column or 'weight'} value(s) are not finite numbers "
                              f"in {lo:g}..{hi:g} (row {first + 1}: {weights.iloc[first]}); fix or remove them")
