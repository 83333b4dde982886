"""API keys, deleted items and user erasures.

* ``api_keys``: hashed bearer tokens with scopes (the token itself is never stored);
* ``items.deleted_at``: ``DELETE /v1/items/{id}`` keeps a tombstone, so that every replica sees
  the deletion through the ``updated_at`` poll it already runs, and events that still name the
  item cannot bring it back as a placeholder;
* ``user_erasures``: a hash of each erased user id and when it was erased, so that every
  replica, and every process started later, stops using what a model trained before learnt of
  that user (the id itself is not kept).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("rate_limit", sa.Float(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
    )
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "user_erasures",
        sa.Column("user_key", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_user_erasures_erased_at", "user_erasures", ["erased_at"])


def downgrade() -> None:
    op.drop_index("ix_user_erasures_erased_at", table_name="user_erasures")
    op.drop_table("user_erasures")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("deleted_at")
    op.drop_table("api_keys")
