"""Tagged photos arrive in batches: a zip of photos with their hashtags becomes one import a person can remove.

Why: an import of hundreds of tagged photos must be listed and removed as the one thing its owner did, and a
retrained model records which imports it learned from. Each batch belongs to a profile (removed with it);
each stored tagged image may name the batch it came from (none for the tag editor's one-photo edits).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "import_batches",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", _ID, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_import_batches_profile_id", "import_batches", ["profile_id"])
    with op.batch_alter_table("tagged_images") as batch:
        batch.add_column(sa.Column("batch_id", _ID, nullable=True))
        batch.create_foreign_key("fk_tagged_images_batch_id", "import_batches", ["batch_id"], ["id"],
                                 ondelete="CASCADE")
    op.create_index("ix_tagged_images_batch_id", "tagged_images", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_tagged_images_batch_id", table_name="tagged_images")
    with op.batch_alter_table("tagged_images") as batch:
        batch.drop_constraint("fk_tagged_images_batch_id", type_="foreignkey")
        batch.drop_column("batch_id")
    op.drop_index("ix_import_batches_profile_id", table_name="import_batches")
    op.drop_table("import_batches")
