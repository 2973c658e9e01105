"""Alembic environment for the feedback store.

Migrations run only programmatically (``core.feedback.store.upgrade``), on a connection the store passes
in ``config.attributes["connection"]``; there is no alembic.ini and no URL here.
"""

from __future__ import annotations

from alembic import context

from core.feedback.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs these migrations
    raise RuntimeError("run feedback migrations through core.feedback.store.upgrade(), not the alembic CLI")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
