"""Events are indexed by the time they were received.

Serving replicas keep per-user feeds (ranked candidates) in memory and drop a user's feed when
the user has a new event. Events stored by another process are found by polling
``events.received_at``, which needs this index to stay cheap on a large event log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_events_received_at", table_name="events")
