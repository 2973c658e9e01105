"""The feedback store's tables, as SQLAlchemy 2 declarative models.

Why these columns: every tab records the same shape of event (who, which tab, which item or image, what
signal, an optional value such as the tag text, which model version showed it, when), so one table serves
all four recommenders and one ``stats`` query summarises them. Hashtag images are stored as files named by
their content hash; the table keeps one row per (profile, image) with the user's final tag list. The
schema itself is created and upgraded only by the Alembic migrations in ``migrations/versions``; these
classes must describe the schema at ``head``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Optional

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Column sizes; the store validates against the same numbers before anything reaches the database.
NAME_LEN = 64
TAB_LEN = 16
ITEM_LEN = 512
SIGNAL_LEN = 16
VALUE_LEN = 256
VERSION_LEN = 128
SHA_LEN = 64
PLAY_TEXT_LEN = 256
LABEL_LEN = 200


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class Base(DeclarativeBase):
    pass


# BigInteger ids on PostgreSQL, but plain INTEGER on SQLite (its only auto-incrementing rowid type)
_ID = BigInteger().with_variant(Integer(), "sqlite")


class Profile(Base):
    """One person's feedback: keyed by a login (``oidc:``) or a profile link's secret (``p-``), see core.identity.

    Profiles created by name before keys existed (or from the command line) keep their plain names; the app
    neither lists nor opens them.
    """

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True, nullable=False)  # the key (core.identity)
    display_name: Mapped[Optional[str]] = mapped_column(String(NAME_LEN), nullable=True)  # shown, never a key
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Event(Base):
    """One thing a user did: liked, disliked, accepted, removed or added a tag."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_profile_tab_signal", "profile_id", "tab", "signal"),
        Index("ix_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)
    tab: Mapped[str] = mapped_column(String(TAB_LEN), nullable=False)
    item: Mapped[str] = mapped_column(String(ITEM_LEN), nullable=False)
    signal: Mapped[str] = mapped_column(String(SIGNAL_LEN), nullable=False)
    value: Mapped[Optional[str]] = mapped_column(String(VALUE_LEN), nullable=True)
    model_version: Mapped[Optional[str]] = mapped_column(String(VERSION_LEN), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class TaggedImage(Base):
    """An image a user tagged, stored as ``<images_dir>/<sha256>.png``, with the user's final tag list."""

    __tablename__ = "tagged_images"
    __table_args__ = (UniqueConstraint("profile_id", "sha256", name="uq_tagged_images_profile_sha256"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)
    sha256: Mapped[str] = mapped_column(String(SHA_LEN), nullable=False, index=True)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    tags: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of normalised tags
    model_version: Mapped[Optional[str]] = mapped_column(String(VERSION_LEN), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    # pending until an administrator accepts or rejects it; only accepted edits are trained on
    review: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", server_default="pending",
                                        index=True)
    reviewed_by: Mapped[Optional[str]] = mapped_column(String(NAME_LEN), nullable=True)  # the admin's profile key
    reviewed_at: Mapped[Optional[_dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    # the import (a zip of tagged photos) this image came with; None for an edit made in the Hashtags tab
    batch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("import_batches.id", ondelete="CASCADE",
                                                               name="fk_tagged_images_batch_id"),
                                                    nullable=True, index=True)


class ImportBatch(Base):
    """One import of tagged photos (a zip with a CSV or Flickr8k's layout), listed and removed as a whole."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False,
                                            index=True)
    label: Mapped[str] = mapped_column(String(LABEL_LEN), nullable=False)  # the uploaded file's name, shown only
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # "csv" or "flickr8k"
    images: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Play(Base):
    """One play from a listening history a person imported (Spotify, Last.fm, ListenBrainz), as the export said.

    Matched to a trained dataset's artists or tracks only when picks are made, so a dataset trained later
    can use the same history. ``fingerprint`` is unique per profile: a re-import adds nothing twice.
    """

    __tablename__ = "plays"
    __table_args__ = (UniqueConstraint("profile_id", "fingerprint", name="uq_plays_profile_fingerprint"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(SHA_LEN), nullable=False)
    source: Mapped[str] = mapped_column(String(TAB_LEN), nullable=False)
    artist: Mapped[str] = mapped_column(String(PLAY_TEXT_LEN), nullable=False)
    track: Mapped[str] = mapped_column(String(PLAY_TEXT_LEN), nullable=False)
    album: Mapped[str] = mapped_column(String(PLAY_TEXT_LEN), nullable=False)
    played_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # unix seconds, UTC
    ms_played: Mapped[int] = mapped_column(BigInteger, nullable=False)  # -1: the export does not say
    skip: Mapped[bool] = mapped_column(Boolean, nullable=False)  # played under 30 s: not a sign of taste
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class SavedItem(Base):
    """An item a user put on their saved list (one row per profile, tab and item)."""

    __tablename__ = "saved_items"
    __table_args__ = (UniqueConstraint("profile_id", "tab", "item", name="uq_saved_items_profile_tab_item"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)
    tab: Mapped[str] = mapped_column(String(TAB_LEN), nullable=False)
    item: Mapped[str] = mapped_column(String(ITEM_LEN), nullable=False)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Job(Base):
    """One unit of heavy work (a catalog build, a training run) in the shared queue.

    Why in the database: every session and every app process must see the same queue, progress must
    survive a page reload, and a worker on another process (or machine, on PostgreSQL) claims work from it.
    ``handler`` is a dotted ``module:function`` the worker runs in a subprocess; ``params`` and ``result`` are
    JSON. ``status`` is one of queued, running, done, failed, cancelled; ``heartbeat_at`` lets a restarted
    worker tell a running job from one whose worker died.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    handler: Mapped[str] = mapped_column(String(200), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON object
    owner: Mapped[Optional[str]] = mapped_column(String(NAME_LEN), nullable=True)  # profile key of who asked
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    message: Mapped[Optional[str]] = mapped_column(Text, nullable=True)  # the stage, or why it failed
    eta_seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    result: Mapped[Optional[str]] = mapped_column(Text, nullable=True)  # JSON object
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    worker: Mapped[Optional[str]] = mapped_column(String(128), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    started_at: Mapped[Optional[_dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[Optional[_dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[Optional[_dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
