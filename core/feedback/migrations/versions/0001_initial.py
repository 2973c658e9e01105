"""Profiles and feedback events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", _ID, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tab", sa.String(16), nullable=False),
        sa.Column("item", sa.String(512), nullable=False),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("value", sa.String(256), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_events_profile_tab_signal", "events", ["profile_id", "tab", "signal"])


def downgrade() -> None:
    op.drop_index("ix_events_profile_tab_signal", table_name="events")
    op.drop_table("events")
    op.drop_table("profiles")
