"""Jobs remember their process (to fail orphans); items are indexed by update time.

Training jobs record ``host:pid`` and a heartbeat so that the jobs whose process died can be
failed (by pid on the same host, by a stale heartbeat anywhere). Serving replicas poll
``items.updated_at`` to pick up catalog changes made elsewhere.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(300), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_items_updated_at", "items", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_items_updated_at", table_name="items")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
