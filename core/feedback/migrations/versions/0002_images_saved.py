"""Stored hashtag images with their final tags, the saved list, and an index for time-ordered exports.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tagged_images",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", _ID, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("profile_id", "sha256", name="uq_tagged_images_profile_sha256"),
    )
    op.create_index("ix_tagged_images_sha256", "tagged_images", ["sha256"])
    op.create_table(
        "saved_items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", _ID, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tab", sa.String(16), nullable=False),
        sa.Column("item", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("profile_id", "tab", "item", name="uq_saved_items_profile_tab_item"),
    )
    op.create_index("ix_events_created_at", "events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_table("saved_items")
    op.drop_index("ix_tagged_images_sha256", table_name="tagged_images")
    op.drop_table("tagged_images")
