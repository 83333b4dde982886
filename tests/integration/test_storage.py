"""What only the SQL adapter has: migrations, driver errors, the retry of transient errors.

The behaviour every adapter shares (memory, SQLite, PostgreSQL) is in ``tests/contract``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError, OperationalError

from smartrec.domain import EventRecord
from smartrec.storage.sql import SqlStore
from smartrec.storage.sql.migrate import current, downgrade
from smartrec.storage.sql.schema import VERSION_TABLE, metadata
from smartrec.storage.sql.store import RETRIES

pytestmark = pytest.mark.integration


def ev(
    i: int, user: str = "u1", item: str = "a", type_: str = "view", ts: int = 1000
) -> EventRecord:
    return EventRecord(f"e{i}", user, item, type_, None, ts + i)


def test_migrations_from_empty_match_the_models(db_url: str) -> None:
    store = SqlStore(db_url)
    assert inspect(store.engine).get_table_names() == []
    store.migrate()
    assert current(store.engine) == "0005"
    assert {"items", "users", "events", "training_jobs", "api_keys", "user_erasures"} <= set(
        inspect(store.engine).get_table_names()
    )
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []
    store.migrate()  # idempotent
    downgrade(store.engine, "base")
    assert "events" not in inspect(store.engine).get_table_names()
    store.close()


def test_a_users_history_is_read_from_one_covering_index(db_url: str) -> None:
    """The history read of every request without a feed never visits the table's rows."""
    store = SqlStore(db_url)
    store.migrate()
    store.add_events([ev(i, user=f"u{i % 3}", item=f"i{i}") for i in range(30)])
    sql = store._history_sql
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if store.dialect == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, ("u1", 500))
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "COVERING INDEX ix_events_user_id_ts_item_id_type_value" in plan, plan
        else:
            cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner choose
            cursor.execute("EXPLAIN " + sql, ("u1", 500))
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "ix_events_user_id_ts_item_id_type_value" in plan, plan
        cursor.close()
    assert [e[0] for e in store.user_history("u1")] == [f"i{i}" for i in range(28, 0, -3)]
    store.close()


def test_an_overlong_id_fails_the_whole_batch_on_postgresql(pg_url: str) -> None:
    """PostgreSQL enforces the VARCHAR length (SQLite does not): the batch is refused whole."""
    store = SqlStore(pg_url)
    store.migrate()
    with pytest.raises(Exception, match="too long"):
        store.add_events([ev(1), EventRecord("e2", "u2", "x" * 300, "view", None, 5)])
    assert (store.count_events(), store.count_users(), store.count_items()) == (0, 0, 0)
    store.close()


class _Deadlock(Exception):
    """What psycopg raises for a deadlock: only its SQLSTATE matters here."""

    sqlstate = "40P01"


def _flaky(store: SqlStore, errors: list[BaseException]) -> list[int]:
    """Make the store's next batch writes raise ``errors`` one by one, then write for real;
    returns the list of attempts made (it grows as they happen)."""
    real = store._add_events_sqlite
    attempts: list[int] = []

    def write(*args: Any) -> int:
        attempts.append(len(attempts) + 1)
        if errors:
            raise errors.pop(0)
        return real(*args)

    store._add_events_sqlite = write  # type: ignore[method-assign]
    return attempts


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    yield store
    store.close()


def test_transient_errors_are_retried_and_the_batch_lands_once(sqlite_store: SqlStore) -> None:
    deadlock = OperationalError("INSERT", None, _Deadlock("deadlock detected"))
    attempts = _flaky(sqlite_store, [sqlite3.OperationalError("database is locked"), deadlock])
    assert sqlite_store.add_events([ev(1), ev(2)]) == (2, 0)
    assert attempts == [1, 2, 3] and sqlite_store.count_events() == 2


def test_retries_stop_after_the_last_attempt_with_the_error(sqlite_store: SqlStore) -> None:
    busy = [sqlite3.OperationalError("database is locked") for _ in range(RETRIES)]
    attempts = _flaky(sqlite_store, busy)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        sqlite_store.add_events([ev(1)])
    assert len(attempts) == RETRIES and sqlite_store.count_events() == 0


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("no such table: events"),
        OperationalError("INSERT", None, Exception("server closed the connection")),
        IntegrityError("INSERT", None, Exception("NOT NULL constraint failed")),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_retried(sqlite_store: SqlStore, error: Exception) -> None:
    attempts = _flaky(sqlite_store, [error])
    with pytest.raises(type(error)):
        sqlite_store.add_events([ev(1)])
    assert attempts == [1] and sqlite_store.count_events() == 0
