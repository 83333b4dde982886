"""Catalog, users, event log and training jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_T = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("categories", JSON_T, nullable=False),
        sa.Column("attributes", JSON_T, nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=True),
        sa.Column("placeholder", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_items"),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("attributes", JSON_T, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_index("ix_events_user_id_ts", "events", ["user_id", "ts"])
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", JSON_T, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("metrics", JSON_T, nullable=True),
        sa.Column("result", JSON_T, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_training_jobs"),
    )


def downgrade() -> None:
    op.drop_table("training_jobs")
    op.drop_index("ix_events_ts", table_name="events")
    op.drop_index("ix_events_user_id_ts", table_name="events")
    op.drop_table("events")
    op.drop_table("users")
    op.drop_table("items")
