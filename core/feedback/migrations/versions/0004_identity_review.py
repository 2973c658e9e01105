"""Profiles get a display name (keys are now unguessable), and users' tag edits wait for an admin's review.

Why: a profile is keyed by a login's issuer + subject or by the secret in its link, so the name people chose
needs a column of its own; and a tag edit joins ``train --with-feedback`` only once an administrator has
accepted it, so each stored (image, tags) pair carries its review state. Edits stored before this revision
start as "pending": nobody has reviewed them yet.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("display_name", sa.String(64), nullable=True))
    with op.batch_alter_table("tagged_images") as batch:
        batch.add_column(sa.Column("review", sa.String(16), nullable=False, server_default="pending"))
        batch.add_column(sa.Column("reviewed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_tagged_images_review", "tagged_images", ["review"])


def downgrade() -> None:
    op.drop_index("ix_tagged_images_review", table_name="tagged_images")
    with op.batch_alter_table("tagged_images") as batch:
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewed_by")
        batch.drop_column("review")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("display_name")
