"""The feedback store: what users liked, disliked and tagged, kept in a real database.

Why a database and not session state: feedback must survive a reload, be shared by every tab, and be
written by several app processes at once when deployed. SQLite (one file under ``data/``) is the default;
any SQLAlchemy URL in ``RECS_DATABASE_URL`` (PostgreSQL through psycopg 3 for a deployment with several
processes) works the same way. The schema is created and upgraded by Alembic at open (``upgrade head``).

Domain code and the UI talk only to ``FeedbackStore``; nothing outside this package writes SQL.

Concurrency: one engine per process and URL, one session per call, so a store object may be shared by
threads. On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock first
and waits up to the busy timeout, instead of failing when a read lock cannot be upgraded); WAL mode lets
readers run beside the writer. ``synchronous=NORMAL`` in WAL mode keeps every committed event through a
killed process; a power cut may lose the last few commits but never corrupts the file.

Profiles: the app keys a profile by a login (``oidc:`` + a hash of issuer and subject) or by the secret in
its link (``p-`` + 128 random bits), both made by ``core.identity``; the name people chose is only a
``display_name``. ``profiles()`` never lists those two namespaces and ``create_profile`` refuses them, so a
name typed anywhere cannot reach another person's feedback; ``open_profile`` is the one way in, and the
UI calls it only with a key from the login or from a well-formed link.

Tag edits wait for review: a stored (image, tags) pair is "pending" until an administrator accepts or
rejects it (``review_tag_edit``); storing the same picture again with new tags makes it pending again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from sqlalchemy import Engine, case, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core.artifacts import DATA_DIR, atomic_path
from core.identity import RESERVED_PREFIXES, is_link_key, is_login_key, is_reserved
from core.feedback.models import (
    ITEM_LEN, LABEL_LEN, NAME_LEN, PLAY_TEXT_LEN, SHA_LEN, VALUE_LEN, VERSION_LEN, Event, ImportBatch, Job, Play,
    Profile, SavedItem, TaggedImage, utcnow,
)

log = logging.getLogger(__name__)

TABS = ("music", "fashion", "multimodal", "hashtag")
SIGNALS = ("like", "dislike", "tag_accepted", "tag_removed", "tag_added")
#: Uploaded images above this size are refused before decoding.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Stored images are shrunk to this many pixels on their long side (the tag model sees far fewer).
STORED_SIDE = 512
#: A stored (re-encoded) image file may not exceed this.
MAX_STORED_BYTES = 2 * 1024 * 1024
MAX_TAGS = 50
#: The review states of a stored tag edit; only "accepted" ones are trained on.
REVIEWS = ("pending", "accepted", "rejected")
#: The layouts an import of tagged photos comes in (``hashtag.imports``).
IMPORT_KINDS = ("csv", "flickr8k")
#: Unreadable photos named in the one sentence that refuses an import.
NAMED_FAILURES = 3
TAG_LEN = 64
#: Where the migration scripts live (inside the package, so they ship with it).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_TAG_RE = re.compile(r"^[\w][\w\-]*$", re.UNICODE)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FeedbackError(ValueError):
    """Feedback that cannot be stored; the message is safe to show to the person who gave it."""


# ----------------------------------------------------------------------------------------------
# what callers get back (plain data, never live ORM objects)


@dataclass(frozen=True)
class EventRecord:
    id: int
    profile: str
    tab: str
    item: str
    signal: str
    value: Optional[str]
    model_version: Optional[str]
    created_at: str


@dataclass(frozen=True)
class TaggedImageRecord:
    sha256: str
    profile: str
    path: str
    tags: list[str]
    width: int
    height: int
    bytes: int
    model_version: Optional[str]
    created_at: str
    id: int = 0
    review: str = "pending"
    display: str = ""  # the profile's display name (plain text; shown to reviewers)
    batch: Optional[int] = None  # the import it came with (``import_tagged_images``); None for a one-photo edit


@dataclass(frozen=True)
class ImportBatchRecord:
    """One import of tagged photos: who, what file, how many photos, and where their review stands."""

    id: int
    profile: str
    label: str
    kind: str
    images: int
    created_at: str
    reviews: dict[str, int]


@dataclass(frozen=True)
class PlayCount:
    """How often a profile played one (artist, track) in its imported history; skips counted apart."""

    artist: str
    track: str
    plays: int  # plays of 30 s or more (or of unknown length)
    skips: int  # plays under 30 s
    ms_played: int  # total known listening time of the counted plays


#: Plays written per statement when importing (one transaction for the whole import all the same).
PLAY_CHUNK = 5000
#: Sources an imported play may come from (the column is short; the importer names them).
PLAY_SOURCES = ("spotify", "spotify-basic", "lastfm", "listenbrainz")


# ----------------------------------------------------------------------------------------------
# validation


def _short(value: str, n: int = 40) -> str:
    return value if len(value) <= n else value[:n] + "…"


def check_profile_name(name: Any) -> str:
    """A profile name: 1-64 printable characters (surrounding spaces dropped)."""
    if not isinstance(name, str):
        raise FeedbackError("A profile name must be text.")
    name = name.strip()
    if not name:
        raise FeedbackError("A profile name cannot be empty.")
    if len(name) > NAME_LEN:
        raise FeedbackError(f"A profile name may have at most {NAME_LEN} characters (got {len(name):,}).")
    if _CONTROL.search(name):
        raise FeedbackError("A profile name cannot contain control characters.")
    return name


def _check_choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise FeedbackError(f"Unknown {what} {_short(str(value))!r}; use one of {', '.join(allowed)}.")
    return str(value)


def _check_text(value: Any, what: str, limit: int, *, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str):
        raise FeedbackError(f"The {what} must be text.")
    if not value.strip():
        raise FeedbackError(f"The {what} cannot be empty.")
    if len(value) > limit:
        raise FeedbackError(f"The {what} may have at most {limit} characters (got {len(value):,}).")
    if _CONTROL.search(value):
        raise FeedbackError(f"The {what} cannot contain control characters.")
    return value


def normalize_tags(tags: Iterable[Any]) -> list[str]:
    """A user's tag list → lower-case tags without '#', duplicates dropped, order kept; bad tags refused."""
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise FeedbackError("Tags must be a list of words.")
    out: list[str] = []
    for raw in tags:
        if not isinstance(raw, str):
            raise FeedbackError("Every tag must be text.")
        if len(raw) > TAG_LEN + 1:
            raise FeedbackError(f"A tag may have at most {TAG_LEN} characters (got {len(raw):,}).")
        tag = raw.strip().lstrip("#").lower()
        if not tag:
            continue
        if not _TAG_RE.match(tag):
            raise FeedbackError(f"The tag {_short(tag)!r} may contain only letters, digits, '_' and '-'.")
        if tag not in out:
            out.append(tag)
        if len(out) > MAX_TAGS:
            raise FeedbackError(f"An image may have at most {MAX_TAGS} tags.")
    return out


# ----------------------------------------------------------------------------------------------
# engines: one per process and URL


def default_url() -> str:
    """``RECS_DATABASE_URL``, else the SQLite file ``<data>/feedback.sqlite3``."""
    return os.environ.get("RECS_DATABASE_URL") or f"sqlite:///{DATA_DIR / 'feedback.sqlite3'}"


_ENGINES: dict[tuple[str, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()
_SQLITE_WRITE_LOCKS: dict[Engine, threading.Lock] = {}


def _normalize_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is the installed driver
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
        dbapi_conn.isolation_level = None  # transactions are begun below, so writes can take the lock first
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("feedback_write") else "BEGIN")


def engine_for(url: str) -> Engine:
    """The process's engine for ``url`` (created, and the schema upgraded, on first use)."""
    url = _normalize_url(url)
    key = (url, os.getpid())  # a forked process must not reuse its parent's connections
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                   pool_size=16, max_overflow=16)
            _sqlite_events(engine)
        else:
            engine = create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)
        upgrade(engine)
        _ENGINES[key] = engine
        return engine


def close_engine(url: str) -> None:
    """Dispose of this process's engine for ``url`` (its pooled connections close); the next open makes a new one."""
    url = _normalize_url(url)
    with _ENGINES_LOCK:
        engine = _ENGINES.pop((url, os.getpid()), None)
        if engine is not None:
            _SQLITE_WRITE_LOCKS.pop(engine, None)
            engine.dispose()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic, holding the database's write lock meanwhile.

    The lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) makes processes that open
    a fresh database at the same moment migrate it once, one after the other.
    """
    from alembic import command  # alembic loads only where the schema is read or migrated, not in every store user
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(feedback_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(724513)"))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def schema_revision(engine: Engine) -> Optional[str]:
    """The Alembic revision a database is at (None for an empty one)."""
    # alembic loads only where the schema is read or migrated, not in every store user
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# ----------------------------------------------------------------------------------------------
# the repository


def _iso(value: _dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value.isoformat(timespec="microseconds")


def _encode_image(image: Union[bytes, bytearray, Any]) -> tuple[bytes, int, int]:
    """Decode an upload and re-encode it as the PNG the store keeps: (bytes, width, height).

    Why re-encode: the stored file is then always a clean image, at most ``STORED_SIDE`` px, and its name is
    the hash of its content, never anything the uploader chose.
    """
    # image decoding (PIL) loads only when a photo is stored: the job processes and the CLIs open the store without
    from PIL import Image

    from core.images import ImageError, load_image  # PIL too

    if isinstance(image, (bytes, bytearray)) and len(image) > MAX_IMAGE_BYTES:
        raise FeedbackError(f"The image is {len(image) / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB.")
    try:
        picture = load_image(image)
    except ImageError as exc:
        raise FeedbackError(str(exc)) from exc
    picture.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    if len(data) > MAX_STORED_BYTES:
        raise FeedbackError("The image is too large to store even after shrinking it.")
    return data, picture.width, picture.height


class FeedbackStore:
    """Profiles, feedback events, stored tagged images and saved lists; every method is one transaction."""

    def __init__(self, engine: Engine, images_dir: Path) -> None:
        self.engine = engine
        self._writer = engine.execution_options(feedback_write=True)
        self.images_dir = Path(images_dir)
        # SQLite admits one writer at a time anyway; queueing this process's threads here is much faster than
        # letting them poll the file lock through the busy handler (other processes still wait on that)
        self._write_lock = _SQLITE_WRITE_LOCKS.setdefault(engine, threading.Lock()) \
            if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    @classmethod
    def open(cls, url: Optional[str] = None, images_dir: Optional[str | Path] = None) -> "FeedbackStore":
        """Open (creating or upgrading) the store at ``url`` (default ``default_url()``).

        Stored images go to ``images_dir`` (default ``<data>/feedback``); with several app processes on
        PostgreSQL it must be a folder they all share.
        """
        try:
            engine = engine_for(url or default_url())
        except SQLAlchemyError as exc:
            raise FeedbackError(f"The feedback database could not be opened ({type(exc).__name__}: {exc}).") from exc
        except Exception as exc:  # noqa: BLE001 - a malformed URL raises ArgumentError/ValueError/ImportError
            raise FeedbackError(f"The feedback database URL is not usable ({exc}).") from exc
        return cls(engine, Path(images_dir) if images_dir else DATA_DIR / "feedback")

    def close(self) -> None:
        """Close the process's pooled connections to this database (other stores on the same URL reconnect)."""
        close_engine(self.engine.url.render_as_string(hide_password=False))

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # -- sessions -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock, Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    @staticmethod
    def _profile_id(session: Session, name: Any) -> int:
        name = check_profile_name(name)
        pid = session.scalar(select(Profile.id).where(Profile.name == name))
        if pid is None:
            raise FeedbackError(f"Unknown profile {_short(name)!r}; create it first.")
        return int(pid)

    # -- profiles -------------------------------------------------------------------------------
    def profiles(self, *, include_reserved: bool = False) -> list[str]:
        """Profile names, oldest first; login (``oidc:``) and link (``p-``) profiles only when asked for
        (the command line's export); nothing that lists profiles for a person ever asks."""
        query = select(Profile.name).order_by(Profile.id)
        if not include_reserved:
            for prefix in RESERVED_PREFIXES:
                query = query.where(~Profile.name.startswith(prefix, autoescape=True))
        with self._read() as s:
            return list(s.scalars(query))

    def has_profile(self, key: str) -> bool:
        """True when the profile exists (it has been opened or has recorded something)."""
        with self._read() as s:
            return s.scalar(select(Profile.id).where(Profile.name == check_profile_name(key))) is not None

    def create_profile(self, name: str) -> str:
        """Create a plain named profile (command line, tests); an existing name is simply returned.

        Names in the login and link namespaces are never created here (an existing one is returned as is):
        those profiles come only from ``open_profile`` with a key from a login or a link, so nobody can
        plant a profile that a person logging in later would inherit.
        """
        name = check_profile_name(name)
        if is_reserved(name):
            if self.has_profile(name):
                return name
            raise FeedbackError(f"Profile names may not start with {' or '.join(RESERVED_PREFIXES)}.")
        self._insert_profile(name, None)
        return name

    def open_profile(self, key: str, display: Optional[str] = None) -> str:
        """Create (or find) the profile of a login or link key; ``display`` updates its shown name."""
        if not (is_login_key(key) or is_link_key(key)):
            raise FeedbackError("Not a profile key.")
        if display is not None:
            display = check_profile_name(display)
        self._insert_profile(key, display)
        return key

    def _insert_profile(self, name: str, display: Optional[str]) -> None:
        try:
            with self._write() as s:
                row = s.scalar(select(Profile).where(Profile.name == name))
                if row is None:
                    s.add(Profile(name=name, display_name=display, created_at=utcnow()))
                elif display is not None and row.display_name != display:
                    row.display_name = display
        except IntegrityError:  # created by another process between our check and insert
            pass

    def display_name(self, key: str) -> Optional[str]:
        """The profile's shown name ("" when it has none), or None when no such profile exists."""
        with self._read() as s:
            row = s.execute(select(Profile.display_name).where(Profile.name == check_profile_name(key))).first()
        return None if row is None else (row[0] or "")

    def forget(self, profile: str) -> dict[str, int]:
        """Delete the profile, all its events, saved items, imported plays, finished jobs and tagged images (rows and, when no other
        profile stored the same picture, the image files). Returns how many of each went."""
        with self._write() as s:
            pid = self._profile_id(s, profile)
            shas = set(s.scalars(select(TaggedImage.sha256).where(TaggedImage.profile_id == pid)))
            counts = {
                "events": s.execute(delete(Event).where(Event.profile_id == pid)).rowcount,
                "tagged_images": s.execute(delete(TaggedImage).where(TaggedImage.profile_id == pid)).rowcount,
                "imports": s.execute(delete(ImportBatch).where(ImportBatch.profile_id == pid)).rowcount,
                "saved": s.execute(delete(SavedItem).where(SavedItem.profile_id == pid)).rowcount,
                "plays": s.execute(delete(Play).where(Play.profile_id == pid)).rowcount,
                # finished jobs they asked for: an import's report names what they listened to
                "jobs": s.execute(delete(Job).where(Job.owner == check_profile_name(profile),
                                                    Job.status.in_(("done", "failed", "cancelled")))).rowcount,
            }
            s.execute(delete(Profile).where(Profile.id == pid))
            still_used = set(s.scalars(select(TaggedImage.sha256).where(TaggedImage.sha256.in_(shas)))) \
                if shas else set()
        counts["files"] = self._unlink_unused(shas - still_used)
        log.info("forgot profile %r: %s", profile, counts)
        return counts

    def _unlink_unused(self, shas: Iterable[str]) -> int:
        """Delete the stored image files of ``shas`` (no row refers to them any more); returns how many went."""
        removed = 0
        for sha in shas:
            path = self.image_path(sha)
            if path.is_file():
                path.unlink()
                removed += 1
        return removed

    def forget_items(self, prefix: str, tabs: Iterable[str]) -> dict[str, int]:
        """Delete every profile's events and saved entries whose item key starts with ``prefix`` in ``tabs``.

        What removing a catalog does with the likes, dislikes and saved items of its items (keyed
        ``<catalog>/<id>``), so a catalog rebuilt later under the same name starts without them.
        """
        prefix = _check_text(prefix, "item prefix", ITEM_LEN)
        tabs = [_check_choice(t, TABS, "tab") for t in tabs]
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._write() as s:
            return {
                "events": s.execute(delete(Event).where(Event.tab.in_(tabs),
                                                        Event.item.like(pattern, escape="\\"))).rowcount,
                "saved": s.execute(delete(SavedItem).where(SavedItem.tab.in_(tabs),
                                                           SavedItem.item.like(pattern, escape="\\"))).rowcount,
            }

    # -- events ---------------------------------------------------------------------------------
    def record(self, profile: str, tab: str, item: str, signal: str, value: Any = None,
               model_version: Optional[str] = None) -> int:
        """Store one event; returns its id once it is committed. Bad input raises FeedbackError, writes nothing."""
        tab = _check_choice(tab, TABS, "tab")
        signal = _check_choice(signal, SIGNALS, "signal")
        item = _check_text(item, "item key", ITEM_LEN)
        value = _check_text(value, "value", VALUE_LEN, optional=True)
        model_version = _check_text(model_version, "model version", VERSION_LEN, optional=True)
        with self._write() as s:
            return int(s.execute(insert(Event).values(
                profile_id=self._profile_id(s, profile), tab=tab, item=item, signal=signal, value=value,
                model_version=model_version, created_at=utcnow()).returning(Event.id)).scalar_one())

    def events(self, profile: Optional[str] = None, tab: Optional[str] = None, signal: Optional[str] = None,
               limit: Optional[int] = None) -> list[EventRecord]:
        """Events, oldest first, optionally for one profile / tab / signal (the last ``limit`` of them)."""
        query = select(Event, Profile.name).join(Profile, Profile.id == Event.profile_id)
        with self._read() as s:
            if profile is not None:
                query = query.where(Event.profile_id == self._profile_id(s, profile))
            if tab is not None:
                query = query.where(Event.tab == _check_choice(tab, TABS, "tab"))
            if signal is not None:
                query = query.where(Event.signal == _check_choice(signal, SIGNALS, "signal"))
            if limit is not None:
                query = query.order_by(Event.id.desc()).limit(int(limit))
                rows = list(s.execute(query))[::-1]
            else:
                rows = list(s.execute(query.order_by(Event.id)))
        return [EventRecord(e.id, name, e.tab, e.item, e.signal, e.value, e.model_version, _iso(e.created_at))
                for e, name in rows]

    def _verdicts(self, profile: str, tab: str) -> dict[str, str]:
        """item → its latest like/dislike (a later click overrides an earlier one), most recent first."""
        tab = _check_choice(tab, TABS, "tab")
        with self._read() as s:
            rows = s.execute(select(Event.item, Event.signal)
                             .where(Event.profile_id == self._profile_id(s, profile), Event.tab == tab,
                                    Event.signal.in_(("like", "dislike")))
                             .order_by(Event.id.desc()))
            latest: dict[str, str] = {}
            for item, signal in rows:
                latest.setdefault(item, signal)
        return latest

    def likes(self, profile: str, tab: str) -> list[str]:
        """Items the profile currently likes in ``tab`` (most recent first)."""
        return [item for item, sig in self._verdicts(profile, tab).items() if sig == "like"]

    def dislikes(self, profile: str, tab: str) -> list[str]:
        """Items the profile currently dislikes in ``tab`` (most recent first)."""
        return [item for item, sig in self._verdicts(profile, tab).items() if sig == "dislike"]

    def undo(self, profile: str, tab: str, item: str) -> int:
        """Withdraw the profile's likes and dislikes of ``item`` (the button clicked again); returns rows removed."""
        tab = _check_choice(tab, TABS, "tab")
        item = _check_text(item, "item key", ITEM_LEN)
        with self._write() as s:
            pid = self._profile_id(s, profile)
            return s.execute(delete(Event).where(Event.profile_id == pid, Event.tab == tab, Event.item == item,
                                                 Event.signal.in_(("like", "dislike")))).rowcount

    # -- saved list -----------------------------------------------------------------------------
    def save_item(self, profile: str, tab: str, item: str) -> None:
        """Put ``item`` on the profile's saved list for ``tab`` (saving twice keeps one entry)."""
        tab = _check_choice(tab, TABS, "tab")
        item = _check_text(item, "item key", ITEM_LEN)
        try:
            with self._write() as s:
                pid = self._profile_id(s, profile)
                exists = s.scalar(select(SavedItem.id).where(SavedItem.profile_id == pid, SavedItem.tab == tab,
                                                             SavedItem.item == item))
                if exists is None:
                    s.add(SavedItem(profile_id=pid, tab=tab, item=item, created_at=utcnow()))
        except IntegrityError:
            pass

    def unsave_item(self, profile: str, tab: str, item: str) -> bool:
        tab = _check_choice(tab, TABS, "tab")
        with self._write() as s:
            pid = self._profile_id(s, profile)
            return bool(s.execute(delete(SavedItem).where(SavedItem.profile_id == pid, SavedItem.tab == tab,
                                                          SavedItem.item == item)).rowcount)

    def saved(self, profile: str, tab: str) -> list[str]:
        """The saved list, oldest first."""
        tab = _check_choice(tab, TABS, "tab")
        with self._read() as s:
            pid = self._profile_id(s, profile)
            return list(s.scalars(select(SavedItem.item).where(SavedItem.profile_id == pid, SavedItem.tab == tab)
                                  .order_by(SavedItem.id)))

    # -- tagged images --------------------------------------------------------------------------
    def image_path(self, sha256: str) -> Path:
        """Where the image with this content hash lives; only a 64-hex-digit name is ever accepted."""
        if not isinstance(sha256, str) or not _SHA_RE.match(sha256):
            raise FeedbackError("Not an image key (a sha256 hex digest).")
        return self.images_dir / f"{sha256}.png"

    def store_tagged_image(self, profile: str, image: Union[bytes, bytearray, Any], tags: Iterable[str],
                           model_version: Optional[str] = None) -> TaggedImageRecord:
        """Keep an image with the user's final tag list; returns the stored record (its key is the sha256).

        The upload is decoded and re-encoded (``core.images.load_image``, shrunk to ``STORED_SIDE`` px, PNG)
        before anything is written, so the stored file is always a clean image and its name is the hash of
        its content, never anything the uploader chose. Storing the same picture again updates its tags.
        """
        tags = normalize_tags(tags)
        model_version = _check_text(model_version, "model version", VERSION_LEN, optional=True)
        if isinstance(image, (str, Path)):
            raise FeedbackError("Pass the image's bytes or a decoded image, not a path.")
        data, width, height = _encode_image(image)
        sha = hashlib.sha256(data).hexdigest()
        with self._read() as s:
            self._profile_id(s, profile)  # fail before writing a file for an unknown profile
        path = self.image_path(sha)
        created_file = not path.is_file()
        if created_file:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        try:
            with self._write() as s:
                pid = self._profile_id(s, profile)
                row = s.scalar(select(TaggedImage).where(TaggedImage.profile_id == pid, TaggedImage.sha256 == sha))
                now = utcnow()
                if row is None:
                    row = TaggedImage(profile_id=pid, sha256=sha, bytes=len(data), width=width,
                                      height=height, created_at=now, tags="[]")
                    s.add(row)
                if row.tags != json.dumps(tags):
                    row.review, row.reviewed_by, row.reviewed_at = "pending", None, None  # new tags: review again
                row.tags = json.dumps(tags)
                row.model_version = model_version
                row.updated_at = now
                s.flush()
                created, row_id = _iso(row.created_at), int(row.id)
        except Exception:
            if created_file and not self._sha_in_use(sha):
                path.unlink(missing_ok=True)
            raise
        return TaggedImageRecord(sha, check_profile_name(profile), str(path), tags, width, height,
                                 len(data), model_version, created, row_id, "pending")

    def _sha_in_use(self, sha: str) -> bool:
        with self._read() as s:
            return s.scalar(select(func.count()).select_from(TaggedImage).where(TaggedImage.sha256 == sha)) > 0

    def tagged_images(self, profile: Optional[str] = None, review: Optional[str] = None) -> list[TaggedImageRecord]:
        """Stored images with their final tags (all profiles, or one; any review state, or one), oldest first."""
        query = select(TaggedImage, Profile.name, Profile.display_name).join(
            Profile, Profile.id == TaggedImage.profile_id)
        with self._read() as s:
            if profile is not None:
                query = query.where(TaggedImage.profile_id == self._profile_id(s, profile))
            if review is not None:
                query = query.where(TaggedImage.review == _check_choice(review, REVIEWS, "review state"))
            rows = list(s.execute(query.order_by(TaggedImage.id)))
        return [TaggedImageRecord(t.sha256, name, str(self.image_path(t.sha256)), list(json.loads(t.tags)), t.width,
                                  t.height, t.bytes, t.model_version, _iso(t.created_at), int(t.id), t.review,
                                  display or "", t.batch_id) for t, name, display in rows]

    # -- imports of tagged photos ---------------------------------------------------------------
    def import_tagged_images(self, profile: str, items: Sequence[tuple[str, Any, Iterable[str]]], *, label: str,
                             kind: str, reviewer: Optional[str] = None) -> ImportBatchRecord:
        """Store many ``(name, image bytes, tags)`` as one import of ``profile``: all of them, or none.

        An image may also be a function returning its bytes (read when it is encoded, so an import of hundreds
        of photos is never held in memory at once); a ``FeedbackError`` it raises counts that photo as unreadable.

        Every photo is decoded and re-encoded first (like ``store_tagged_image``); if any cannot be read, the
        files written so far are removed and one ``FeedbackError`` names how many failed and the first few.
        ``reviewer`` (the importing administrator's key) marks the photos accepted for training at once;
        without one they wait for review. The same photo twice in one import keeps one row with both tag lists.
        """
        label = _check_text(str(label)[:LABEL_LEN] or "import", "import label", LABEL_LEN)
        kind = _check_choice(kind, IMPORT_KINDS, "import kind")
        if reviewer is not None:
            reviewer = check_profile_name(reviewer)
        if not items:
            raise FeedbackError("The import has no photos.")
        with self._read() as s:
            self._profile_id(s, profile)  # fail before writing a file for an unknown profile
        photos: dict[str, dict[str, Any]] = {}
        created: list[Path] = []
        bad: list[str] = []
        for name, image, tags in items:
            try:
                tags = normalize_tags(tags)
                data, width, height = _encode_image(image() if callable(image) else image)
            except FeedbackError as exc:
                bad.append(f"{_short(str(name), 60)} ({str(exc).rstrip('.')})")
                continue
            sha = hashlib.sha256(data).hexdigest()
            path = self.image_path(sha)
            if not path.is_file():
                with atomic_path(path) as tmp:
                    tmp.write_bytes(data)
                created.append(path)
            entry = photos.setdefault(sha, {"bytes": len(data), "width": width, "height": height, "tags": []})
            entry["tags"] = normalize_tags(entry["tags"] + tags)
        try:
            if bad:
                more = f" and {len(bad) - NAMED_FAILURES} more" if len(bad) > NAMED_FAILURES else ""
                raise FeedbackError(f"{len(bad)} of {len(items)} photos could not be read, so nothing was imported: "
                                    f"{'; '.join(bad[:NAMED_FAILURES])}{more}.")
            return self._insert_batch(profile, photos, label, kind, reviewer)
        except Exception:
            for path in created:
                if not self._sha_in_use(path.stem):
                    path.unlink(missing_ok=True)
            raise

    def _insert_batch(self, profile: str, photos: dict[str, dict[str, Any]], label: str, kind: str,
                      reviewer: Optional[str]) -> ImportBatchRecord:
        """One transaction: the batch row and a tagged-image row per photo (an existing one joins the batch)."""
        review = "accepted" if reviewer else "pending"
        with self._write() as s:
            pid = self._profile_id(s, profile)
            now = utcnow()
            batch = ImportBatch(profile_id=pid, label=label, kind=kind, images=len(photos), created_at=now)
            s.add(batch)
            s.flush()
            for sha, p in photos.items():
                row = s.scalar(select(TaggedImage).where(TaggedImage.profile_id == pid, TaggedImage.sha256 == sha))
                if row is None:
                    row = TaggedImage(profile_id=pid, sha256=sha, bytes=p["bytes"], width=p["width"],
                                      height=p["height"], created_at=now)
                    s.add(row)
                row.tags, row.batch_id, row.updated_at = json.dumps(p["tags"]), batch.id, now
                row.review, row.reviewed_by, row.reviewed_at = review, reviewer, now if reviewer else None
            batch_id, created = int(batch.id), _iso(batch.created_at)
        log.info("import %d by %s: %d photos (%s)", batch_id, profile, len(photos), review)
        return ImportBatchRecord(batch_id, check_profile_name(profile), label, kind, len(photos), created,
                                 {review: len(photos)})

    def import_batches(self, profile: Optional[str] = None) -> list[ImportBatchRecord]:
        """Imports of tagged photos (all profiles, or one), newest first, with their photos' review states."""
        query = select(ImportBatch, Profile.name).join(Profile, Profile.id == ImportBatch.profile_id)
        with self._read() as s:
            if profile is not None:
                query = query.where(ImportBatch.profile_id == self._profile_id(s, profile))
            rows = list(s.execute(query.order_by(ImportBatch.id.desc())))
            counts: dict[int, dict[str, int]] = {}
            for batch_id, review, n in s.execute(select(TaggedImage.batch_id, TaggedImage.review, func.count())
                                                 .where(TaggedImage.batch_id.in_([b.id for b, _ in rows]))
                                                 .group_by(TaggedImage.batch_id, TaggedImage.review)):
                counts.setdefault(int(batch_id), {})[review] = int(n)
        return [ImportBatchRecord(int(b.id), name, b.label, b.kind, int(b.images), _iso(b.created_at),
                                  counts.get(int(b.id), {})) for b, name in rows]

    def review_import(self, batch_id: int, decision: str, reviewer: str) -> int:
        """Accept (for training) or reject every photo of one import at once; returns how many photos.

        Who may call this is decided before (``core.identity.may_run_heavy``, taken at click time by the caller).
        """
        decision = _check_choice(decision, REVIEWS[1:], "review decision")
        reviewer = check_profile_name(reviewer)
        with self._write() as s:
            if s.get(ImportBatch, int(batch_id)) is None:
                raise FeedbackError("That import no longer exists.")
            n = s.execute(update(TaggedImage).where(TaggedImage.batch_id == int(batch_id))
                          .values(review=decision, reviewed_by=reviewer, reviewed_at=utcnow())).rowcount
        log.info("import %d: %d photos %s by %s", batch_id, n, decision, reviewer)
        return int(n)

    def remove_import(self, batch_id: int, profile: Optional[str] = None) -> dict[str, int]:
        """Delete one import and its photos (rows, and files no other row uses); returns what went.

        ``profile``: the person asking, who must own the import; ``None`` when an administrator removes it.
        """
        with self._write() as s:
            batch = s.get(ImportBatch, int(batch_id))
            if batch is None:
                raise FeedbackError("That import no longer exists.")
            if profile is not None and batch.profile_id != self._profile_id(s, profile):
                raise FeedbackError("That import belongs to another profile; only its owner or an administrator "
                                    "may remove it.")
            shas = set(s.scalars(select(TaggedImage.sha256).where(TaggedImage.batch_id == batch.id)))
            images = s.execute(delete(TaggedImage).where(TaggedImage.batch_id == batch.id)).rowcount
            s.execute(delete(ImportBatch).where(ImportBatch.id == batch.id))
            still_used = set(s.scalars(select(TaggedImage.sha256).where(TaggedImage.sha256.in_(shas)))) \
                if shas else set()
        files = self._unlink_unused(shas - still_used)
        log.info("removed import %d: %d photos, %d files", batch_id, images, files)
        return {"tagged_images": images, "files": files}

    def review_tag_edit(self, image_id: int, decision: str, reviewer: str) -> str:
        """Mark one stored tag edit "accepted" (it joins training) or "rejected"; returns the decision.

        Who may call this is decided before (``core.identity.may_run_heavy``, checked again by the caller at
        click time); ``reviewer`` is the deciding profile key, kept with the decision.
        """
        decision = _check_choice(decision, REVIEWS[1:], "review decision")
        reviewer = check_profile_name(reviewer)
        with self._write() as s:
            row = s.get(TaggedImage, int(image_id))
            if row is None:
                raise FeedbackError("That tag edit no longer exists (its profile may have been forgotten).")
            row.review, row.reviewed_by, row.reviewed_at = decision, reviewer, utcnow()
        log.info("tag edit %d %s by %s", image_id, decision, reviewer)
        return decision

    # -- imported listening history ------------------------------------------------------------------
    def add_plays(self, profile: str, plays: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Store imported plays (dicts with the ``Play`` columns); all in one transaction, so an import is
        kept whole or not at all. Plays already stored (same fingerprint) are left as they are.

        Returns ``{"added": n, "already": m}``.
        """
        rows = [self._play_row(p) for p in plays]
        with self._write() as s:
            pid = self._profile_id(s, profile)
            count = select(func.count()).select_from(Play).where(Play.profile_id == pid)
            before = int(s.scalar(count) or 0)
            stmt = self._insert_new(Play, ["profile_id", "fingerprint"])
            now = utcnow()
            for start in range(0, len(rows), PLAY_CHUNK):
                s.execute(stmt, [{**r, "profile_id": pid, "created_at": now} for r in rows[start:start + PLAY_CHUNK]])
            added = int(s.scalar(count) or 0) - before
        return {"added": added, "already": len(rows) - added}

    @staticmethod
    def _play_row(play: dict[str, Any]) -> dict[str, Any]:
        source = _check_choice(play.get("source"), PLAY_SOURCES, "play source")
        fingerprint = _check_text(play.get("fingerprint"), "play fingerprint", SHA_LEN)
        clip = lambda v: _CONTROL.sub(" ", str(v or ""))[:PLAY_TEXT_LEN]  # noqa: E731 - exports hold any text
        artist = clip(play.get("artist")).strip()
        if not artist:
            raise FeedbackError("An imported play has no artist.")
        return {"fingerprint": fingerprint, "source": source, "artist": artist, "track": clip(play.get("track")),
                "album": clip(play.get("album")), "played_at": int(play.get("played_at") or 0),
                "ms_played": int(play.get("ms_played", -1)), "skip": bool(play.get("skip", False))}

    def _insert_new(self, table: Any, keys: list[str]) -> Any:
        """An INSERT that skips rows whose ``keys`` already exist (both databases the store runs on)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)

    def play_counts(self, profile: str) -> list[PlayCount]:
        """The profile's imported plays per (artist, track), most played first."""
        counted = func.sum(case((Play.skip.is_(False), 1), else_=0))
        skipped = func.sum(case((Play.skip.is_(True), 1), else_=0))
        ms = func.sum(case((Play.skip.is_(False) & (Play.ms_played > 0), Play.ms_played), else_=0))
        with self._read() as s:
            pid = self._profile_id(s, profile)
            rows = s.execute(select(Play.artist, Play.track, counted, skipped, ms).where(Play.profile_id == pid)
                             .group_by(Play.artist, Play.track).order_by(counted.desc(), Play.artist, Play.track))
            return [PlayCount(a, t, int(n or 0), int(k or 0), int(m or 0)) for a, t, n, k, m in rows]

    def play_summary(self, profile: str) -> dict[str, Any]:
        """Counts of the imported history: plays, skips, sources, first and last play (unix seconds).

        ``version`` changes whenever plays are added or removed, so callers can cache picks on it."""
        with self._read() as s:
            pid = self._profile_id(s, profile)
            n, skips, first, last, top = s.execute(
                select(func.count(), func.sum(case((Play.skip.is_(True), 1), else_=0)), func.min(Play.played_at),
                       func.max(Play.played_at), func.max(Play.id)).where(Play.profile_id == pid)).one()
            sources = dict(s.execute(select(Play.source, func.count()).where(Play.profile_id == pid)
                                     .group_by(Play.source)).all())
        return {"plays": int(n or 0), "skips": int(skips or 0), "first": first, "last": last,
                "sources": {k: int(v) for k, v in sources.items()}, "version": f"{int(n or 0)}:{int(top or 0)}"}

    def forget_plays(self, profile: str) -> int:
        """Delete the profile's imported history (its likes and other data stay); returns how many plays went."""
        with self._write() as s:
            return int(s.execute(delete(Play).where(Play.profile_id == self._profile_id(s, profile))).rowcount)

    # -- summaries ------------------------------------------------------------------------------
    def stats(self, profile: Optional[str] = None) -> dict[str, Any]:
        """Counts per tab and signal (plus totals, profiles, stored images and saved items)."""
        with self._read() as s:
            pid = self._profile_id(s, profile) if profile is not None else None

            def where(q, column):  # noqa: ANN001, ANN202
                return q.where(column == pid) if pid is not None else q

            by_tab: dict[str, dict[str, int]] = {}
            for tab, signal, n in s.execute(where(select(Event.tab, Event.signal, func.count()), Event.profile_id)
                                            .group_by(Event.tab, Event.signal)):
                by_tab.setdefault(tab, {})[signal] = int(n)
            images = s.scalar(where(select(func.count()).select_from(TaggedImage), TaggedImage.profile_id))
            saved = s.scalar(where(select(func.count()).select_from(SavedItem), SavedItem.profile_id))
            plays = s.scalar(where(select(func.count()).select_from(Play), Play.profile_id))
            profiles = 1 if pid is not None else s.scalar(select(func.count()).select_from(Profile))
        return {
            "profile": profile, "profiles": int(profiles or 0),
            "events": sum(sum(v.values()) for v in by_tab.values()),
            "by_tab": {tab: dict(sorted(by_tab[tab].items())) for tab in sorted(by_tab)},
            "tagged_images": int(images or 0), "saved": int(saved or 0), "plays": int(plays or 0),
        }

    def export(self, profile: Optional[str] = None) -> dict[str, Any]:
        """Everything stored (for one profile or all) as plain JSON-able data."""
        profiles = [check_profile_name(profile)] if profile is not None else self.profiles(include_reserved=True)
        saved: list[dict[str, Any]] = []
        with self._read() as s:
            query = select(SavedItem, Profile.name).join(Profile, Profile.id == SavedItem.profile_id)
            if profile is not None:
                query = query.where(SavedItem.profile_id == self._profile_id(s, profile))
            for row, name in s.execute(query.order_by(SavedItem.id)):
                saved.append({"profile": name, "tab": row.tab, "item": row.item, "created_at": _iso(row.created_at)})
        return {
            "profiles": profiles,
            "events": [asdict(e) for e in self.events(profile)],
            "tagged_images": [asdict(t) for t in self.tagged_images(profile)],
            "saved": saved,
            "plays": [{"profile": p, **asdict(c)} for p in profiles if self.has_profile(p) for c in self.play_counts(p)],
        }
