"""Tables of the catalog, the event log and training jobs. Times are epoch milliseconds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    case,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Our own Alembic version table, so the database can be shared (MLflow keeps its own).
VERSION_TABLE = "smartrec_alembic_version"

JsonType = JSON().with_variant(JSONB(), "postgresql")
ID_LEN = 256

items = Table(
    "items",
    metadata,
    Column("item_id", String(ID_LEN), primary_key=True),
    Column("title", Text, nullable=True),
    Column("categories", JsonType, nullable=False),
    Column("attributes", JsonType, nullable=False),
    Column("text", Text, nullable=True),
    Column("available", Boolean, nullable=False),
    Column("published_at", BigInteger, nullable=True),
    # Created by an event for an item the catalog did not have yet.
    Column("placeholder", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Set by DELETE /v1/items/{id}: a tombstone every replica sees through ``updated_at``.
    Column("deleted_at", BigInteger, nullable=True),
    Index(None, "updated_at"),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(ID_LEN), primary_key=True),
    Column("attributes", JsonType, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("event_id", String(ID_LEN), primary_key=True),
    Column("user_id", String(ID_LEN), nullable=False),
    Column("item_id", String(ID_LEN), nullable=False),
    Column("type", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    # Covers a user's history read (newest first, the columns it returns): one range scan.
    Index(None, "user_id", "ts", "item_id", "type", "value"),
    Index(None, "ts"),
    Index("ix_events_received_at", "received_at"),
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("request", JsonType, nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("metrics", JsonType, nullable=True),
    Column("result", JsonType, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    # host:pid of the API process running the job, to tell an orphan after a crash.
    Column("worker", String(300), nullable=True),
    # Refreshed by the owning process while the job is unfinished: a stale one is dead.
    Column("heartbeat_at", BigInteger, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", Text, nullable=True),
    # Comma-separated: read, ingest, admin.
    Column("scopes", String(64), nullable=False),
    # SHA-256 of the token's secret part: the token itself is never stored.
    Column("secret_sha256", String(64), nullable=False),
    # Requests per second for this key (token bucket); None = the configured default.
    Column("rate_limit", Float, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

user_erasures = Table(
    "user_erasures",
    metadata,
    # SHA-256 of the erased user id (``records.erasure_key``): the id itself is not kept.
    Column("user_key", String(64), primary_key=True),
    Column("erased_at", BigInteger, nullable=False),
    Index(None, "erased_at"),
)


def item_row_version(stamp: Any) -> ColumnElement[Any]:
    """An item's new ``updated_at``: the write's time, or one past the row's when that is not
    later (two edits within one millisecond). A replica that applied the first edit at its
    millisecond (``catalog_changes``) sees the second as a change too."""
    current = items.c.updated_at
    return case((stamp > current, stamp), else_=current + 1)
