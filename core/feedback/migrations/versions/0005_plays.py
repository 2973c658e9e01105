"""Imported listening history: the plays a person brought in from Spotify, Last.fm or ListenBrainz.

Why raw plays and not likes: which catalog item a play means depends on the trained dataset it is matched
against (artists in Last.fm-2K, tracks in a service's log), and a dataset trained later must be able to
match the same history. So the store keeps what the export said, one row per play, and the music tab
matches it at view time. ``fingerprint`` (artist, track and minute of the play) is unique per profile, so
importing the same file again, or the other Spotify schema of the same plays, adds nothing twice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "plays",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", _ID, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("artist", sa.String(256), nullable=False),
        sa.Column("track", sa.String(256), nullable=False),
        sa.Column("album", sa.String(256), nullable=False),
        sa.Column("played_at", sa.BigInteger(), nullable=False),
        sa.Column("ms_played", sa.BigInteger(), nullable=False),
        sa.Column("skip", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("profile_id", "fingerprint", name="uq_plays_profile_fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("plays")
