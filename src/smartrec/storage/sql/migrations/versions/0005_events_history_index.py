"""A user's history is read from one index: (user_id, ts) widened to cover the columns read.

Every recommendation without a fresh feed reads the user's newest events (item, type, value).
With the (user_id, ts) index alone each event was one more look-up in the table, whose rows are
in arrival order, so a user's events sit on as many pages as they have events; with the columns
in the index the read is one range scan (SQLite and PostgreSQL index-only scans).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD = "ix_events_user_id_ts"
NEW = "ix_events_user_id_ts_item_id_type_value"


def upgrade() -> None:
    op.create_index(NEW, "events", ["user_id", "ts", "item_id", "type", "value"])
    op.drop_index(OLD, table_name="events")


def downgrade() -> None:
    op.create_index(OLD, "events", ["user_id", "ts"])
    op.drop_index(NEW, table_name="events")
