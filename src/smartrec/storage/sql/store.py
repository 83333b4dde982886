"""The SQL adapter: one class serving the catalog, event and job ports on SQLite and PostgreSQL.

Batch writes use the dialect's ``INSERT ... ON CONFLICT`` through SQLAlchemy's insertmanyvalues,
so that one HTTP batch is a handful of round trips and one transaction: a rejected or failed
batch writes nothing.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from smartrec.domain import CatalogItem, EventRecord, EventSnapshot
from smartrec.domain.clock import now_ms
from smartrec.errors import ConfigError
from smartrec.storage.jobs import UNFINISHED, is_orphan, worker_id
from smartrec.storage.sql import schema

if TYPE_CHECKING:
    from sqlalchemy import Select, Table
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["RETRIES", "SqlStore", "normalise_url", "worker_id"]

#: Attempts of one event batch when the database answers with a transient error.
RETRIES = 3


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs (the documented form)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _transient(exc: BaseException) -> bool:
    """A deadlock, a serialization failure or a busy SQLite database: worth another attempt.
    Anything else (a constraint, a bad value, a lost server) is raised at once."""
    if not isinstance(exc, (OperationalError, sqlite3.OperationalError)):
        return False
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in ("40P01", "40001"):  # deadlock_detected, serialization_failure
        return True
    return "database is locked" in str(orig)


class SqlStore:
    """Catalog, event log and job table in one SQL database."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"unsupported database {self.dialect!r}: use sqlite:// or postgresql://"
            )
        # LIFO: a request takes the connection used last, whose page cache (SQLite) and server
        # session (PostgreSQL) are warm; idle ones beyond the load go cold instead of all.
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "pool_use_lifo": True}
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on extras
            raise ConfigError(
                f"the driver for {self.dialect} is not installed: "
                f"pip install 'smartrec[postgres]' ({exc})"
            ) from exc
        mark = "%s" if self.dialect == "postgresql" else "?"
        self._history_sql = (
            f"SELECT item_id, type, value FROM events WHERE user_id = {mark} "
            f"ORDER BY ts DESC LIMIT {mark}"
        )
        self._memory_locks: dict[str, threading.Lock] = {}
        # SQLite has one writer at a time: queueing writers on a lock here is fairer and much
        # faster than letting them poll the database's busy timeout.
        self._write_lock: AbstractContextManager[Any] = nullcontext()
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self._write_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from smartrec.storage.sql.migrate import upgrade

        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A lock shared by every process using this database (not only this one).

        PostgreSQL: a session advisory lock. SQLite (one machine by nature): a file lock next to
        the database file.
        """
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_lock(hashtext(%(n)s))", {"n": name})
                try:
                    yield
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(hashtext(%(n)s))", {"n": name})
                    conn.commit()
            return
        database = make_url(self.url).database
        if not database or database == ":memory:":
            with self._memory_locks.setdefault(name, threading.Lock()):
                yield
            return
        import fcntl

        with open(f"{database}.{name}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:
            return False

    def _insert(self) -> Callable[[Table], PgInsert | SqliteInsert]:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    # ----------------------------------------------------------------- catalog
    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert or fully replace items; a placeholder made by an event becomes a real item."""
        if not rows:
            return 0
        ts = now_ms()
        values = [
            {
                "item_id": r["item_id"],
                "title": r.get("title"),
                "categories": list(r.get("categories") or []),
                "attributes": dict(r.get("attributes") or {}),
                "text": r.get("text"),
                "available": bool(r.get("available", True)),
                "published_at": r.get("published_at"),
                "placeholder": False,
                "created_at": ts,
                "updated_at": ts,
                "deleted_at": None,  # sending a deleted item again brings it back
            }
            for r in _last_wins(rows, "item_id")
        ]
        stmt = self._insert()(schema.items)
        replaced = {
            c: stmt.excluded[c]
            for c in (
                "title",
                "categories",
                "attributes",
                "text",
                "available",
                "published_at",
                "placeholder",
                "deleted_at",
            )
        }
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={**replaced, "updated_at": schema.item_row_version(stmt.excluded.updated_at)},
        )
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(stmt, values)
        return len(values)

    def upsert_users(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        ts = now_ms()
        values = [
            {
                "user_id": r["user_id"],
                "attributes": dict(r.get("attributes") or {}),
                "created_at": ts,
                "updated_at": ts,
            }
            for r in _last_wins(rows, "user_id")
        ]
        stmt = self._insert()(schema.users)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"attributes": stmt.excluded.attributes, "updated_at": stmt.excluded.updated_at},
        )
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(stmt, values)
        return len(values)

    def catalog(
        self, item_ids: Iterable[str] | None = None, with_text: bool = False
    ) -> dict[str, CatalogItem]:
        """Item rows by id (all when ``item_ids`` is None). The long ``text`` column is read only
        when asked for: serving keeps the whole catalogue in memory and does not need it."""
        cols = schema.items.c
        columns = [
            cols.item_id,
            cols.title,
            cols.categories,
            cols.attributes,
            cols.available,
            cols.placeholder,
            cols.published_at,
            cols.created_at,
            cols.deleted_at,
        ]
        if with_text:
            columns.append(cols.text)
        query = select(*columns)
        out: dict[str, CatalogItem] = {}
        with self.engine.connect() as conn:
            if item_ids is None:
                batches: list[Select[Any]] = [query]
            else:
                ids = list(dict.fromkeys(item_ids))
                batches = [
                    query.where(cols.item_id.in_(ids[i : i + 5000]))
                    for i in range(0, len(ids), 5000)
                ]
            for q in batches:
                for row in conn.execute(q):
                    out[row.item_id] = CatalogItem(
                        item_id=row.item_id,
                        title=row.title,
                        categories=list(row.categories or []),
                        attributes=dict(row.attributes or {}),
                        # A deleted item is in no answer: to serving it is unavailable.
                        available=bool(row.available) and row.deleted_at is None,
                        placeholder=bool(row.placeholder),
                        published_at=row.published_at,
                        text=row.text if with_text else None,
                        created_at=row.created_at,
                        deleted=row.deleted_at is not None,
                    )
        return out

    def item_exists(self, item_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(schema.items.c.item_id).where(schema.items.c.item_id == item_id)
            ).first()
        return found is not None

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.items)).scalar_one())

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.users)).scalar_one())

    # ----------------------------------------------------------------- events
    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """Store events once each; returns (accepted, duplicates).

        Unknown users are created, unknown items become placeholders, all in the same
        transaction as the events: the batch lands whole or not at all. Keys are written in
        sorted order so that concurrent batches take row locks in one order and cannot
        deadlock; a transient failure (deadlock, busy database) rolls back and is retried.
        """
        if not events:
            return 0, 0
        unique: dict[str, EventRecord] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        in_batch_dupes = len(events) - len(unique)
        rows = sorted(unique.values(), key=lambda e: e.event_id)
        users = sorted({e.user_id for e in rows})
        items = sorted({e.item_id for e in rows})
        inserted = self._write_events(rows, users, items)
        return inserted, in_batch_dupes + (len(rows) - inserted)

    @retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(RETRIES),
        # 10 ms, 20 ms, ... plus up to 10 ms of jitter, so that racing batches spread out.
        wait=wait_exponential(multiplier=0.01, max=1.0) + wait_random(0, 0.01),
        reraise=True,
    )
    def _write_events(self, rows: list[EventRecord], users: list[str], items: list[str]) -> int:
        """One attempt: one transaction, rolled back whole on failure (then retried above)."""
        write = self._add_events_pg if self.dialect == "postgresql" else self._add_events_sqlite
        with self._write_lock:
            return write(rows, users, items, now_ms())

    def _add_events_pg(
        self, rows: list[EventRecord], users: list[str], items: list[str], ts: int
    ) -> int:
        """Three constant statements over arrays (``unnest``): psycopg prepares them once, where
        a multi-row VALUES statement differs per batch and is re-parsed every time."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(_PG_USERS, {"ids": users, "ts": ts})
            conn.exec_driver_sql(_PG_ITEMS, {"ids": items, "ts": ts})
            result = conn.exec_driver_sql(
                _PG_EVENTS,
                {
                    "ids": [e.event_id for e in rows],
                    "users": [e.user_id for e in rows],
                    "items": [e.item_id for e in rows],
                    "types": [e.type for e in rows],
                    "values": [e.value for e in rows],
                    "ts": [e.ts for e in rows],
                    "received": ts,
                },
            )
            return len(result.fetchall())

    def _add_events_sqlite(
        self, rows: list[EventRecord], users: list[str], items: list[str], ts: int
    ) -> int:
        """Plain ``executemany`` with tuples; ``rowcount`` sums the rows really inserted."""
        with self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(_SQLITE_USERS, [(u, ts, ts) for u in users])
                cursor.executemany(_SQLITE_ITEMS, [(i, ts, ts) for i in items])
                cursor.executemany(
                    _SQLITE_EVENTS,
                    [(e.event_id, e.user_id, e.item_id, e.type, e.value, e.ts, ts) for e in rows],
                )
                return int(cursor.rowcount)
            finally:
                cursor.close()

    def snapshot(self, since_ms: int | None = None) -> EventSnapshot:
        """The event log ordered by time: the training input, or the events at or after
        ``since_ms`` (the ``ts`` index)."""
        c = schema.events.c
        users: list[str] = []
        items: list[str] = []
        types: list[str] = []
        values: list[float | None] = []
        times: list[float] = []
        query = select(c.user_id, c.item_id, c.type, c.value, c.ts).order_by(c.ts, c.event_id)
        if since_ms is not None:
            query = query.where(c.ts >= since_ms)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=50_000).execute(query)
            for part in result.partitions():
                for u, i, t, v, ts in part:
                    users.append(u)
                    items.append(i)
                    types.append(t)
                    values.append(v)
                    times.append(ts / 1000.0)
        return EventSnapshot(users, items, types, values, times)

    def user_history(self, user_id: str, limit: int = 500) -> list[tuple[str, str, float | None]]:
        """The user's newest events, newest first: (item_id, type, value).

        On the hot path of every recommendation: one constant statement straight to the driver
        (prepared once by psycopg, cached by sqlite3), no ORM row objects.
        """
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(self._history_sql, (user_id, limit))
                return cursor.fetchall()
            finally:
                cursor.close()

    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """One primary-key look-up per id, in chunks that keep the statement small."""
        c = schema.events.c
        found: set[str] = set()
        ids = list(dict.fromkeys(event_ids))
        with self.engine.connect() as conn:
            for lo in range(0, len(ids), 500):
                chunk = ids[lo : lo + 500]
                query = select(c.event_id).where(c.event_id.in_(chunk))
                found.update(r[0] for r in conn.execute(query))
        return found

    def user_items(self, user_id: str) -> list[str]:
        """Every item the user ever had an event on (for "seen" beyond the history window)."""
        c = schema.events.c
        query = select(c.item_id).where(c.user_id == user_id).distinct()
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def catalog_mark(self) -> int:
        """The newest ``items.updated_at`` (0 on an empty catalog)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(schema.items.c.updated_at))).scalar()
        return int(value or 0)

    def catalog_changes(self, mark: int) -> list[tuple[str, int]]:
        """(item_id, updated_at) of items updated at or after ``mark`` (indexed)."""
        c = schema.items.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.item_id, c.updated_at).where(c.updated_at >= mark))
            return [(r[0], int(r[1])) for r in rows]

    def event_mark(self) -> int:
        """The newest ``events.received_at`` (0 with no events; indexed)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(schema.events.c.received_at))).scalar()
        return int(value or 0)

    def users_with_events_since(self, mark: int) -> list[tuple[str, int]]:
        """(user_id, newest received_at) of users with events received at or after ``mark``
        (indexed): how a replica learns of events another process stored."""
        c = schema.events.c
        query = (
            select(c.user_id, func.max(c.received_at))
            .where(c.received_at >= mark)
            .group_by(c.user_id)
        )
        with self.engine.connect() as conn:
            return [(r[0], int(r[1])) for r in conn.execute(query)]

    def erasures(self, since_ms: int | None = None) -> dict[str, int]:
        """Erased users' keys (``records.erasure_key``) -> when, erased at or after
        ``since_ms`` (all when None)."""
        c = schema.user_erasures.c
        query = select(c.user_key, c.erased_at)
        if since_ms is not None:
            query = query.where(c.erased_at >= since_ms)
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(query)}

    def active_users(self, limit: int) -> list[str]:
        """The ``limit`` users with the most recent events, most recent first."""
        c = schema.events.c
        newest = func.max(c.ts)
        query = (
            select(c.user_id).group_by(c.user_id).order_by(newest.desc(), c.user_id).limit(limit)
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def item_activity(self, since_ms: int | None) -> list[tuple[str, str, float | None, int]]:
        """(item_id, type, value, count) grouped, for events at or after ``since_ms``."""
        c = schema.events.c
        query = select(c.item_id, c.type, c.value, func.count()).group_by(
            c.item_id, c.type, c.value
        )
        if since_ms is not None:
            query = query.where(c.ts >= since_ms)
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2], int(r[3])) for r in conn.execute(query)]

    def newest_event_ms(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(schema.events.c.ts))).scalar()
        return None if value is None else int(value)

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.events)).scalar_one())

    # ----------------------------------------------------------------- jobs
    def create_job(self, job_id: str, request: dict[str, Any]) -> None:
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                insert(schema.training_jobs).values(
                    job_id=job_id,
                    status="queued",
                    request=request,
                    worker=worker_id(),
                    created_at=now_ms(),
                    heartbeat_at=now_ms(),
                )
            )

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                update(schema.training_jobs)
                .where(schema.training_jobs.c.job_id == job_id)
                .values(**fields)
            )

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.training_jobs).where(schema.training_jobs.c.job_id == job_id)
            ).first()
        return None if row is None else dict(row._mapping)

    def heartbeat_jobs(self, job_ids: Sequence[str]) -> None:
        """Mark these (unfinished) jobs as alive now."""
        if not job_ids:
            return
        jobs = schema.training_jobs
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.job_id.in_(list(job_ids)), jobs.c.status.in_(UNFINISHED))
                .values(heartbeat_at=now_ms())
            )

    def unfinished_jobs(self) -> list[str]:
        jobs = schema.training_jobs
        query = (
            select(jobs.c.job_id)
            .where(jobs.c.status.in_(UNFINISHED))
            .order_by(jobs.c.created_at, jobs.c.job_id)
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def fail_orphaned_jobs(self, reason: str, stale_after_ms: int | None = None) -> int:
        """Fail unfinished jobs whose process is gone: a process of this host that no longer
        exists, or (any host) a heartbeat older than ``stale_after_ms``."""
        jobs = schema.training_jobs
        host = socket.gethostname()
        oldest = None if stale_after_ms is None else now_ms() - stale_after_ms
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.job_id, jobs.c.worker, jobs.c.heartbeat_at).where(
                    jobs.c.status.in_(UNFINISHED)
                )
            ).all()
        orphans = [job_id for job_id, worker, beat in rows if is_orphan(worker, beat, host, oldest)]
        if not orphans:
            return 0
        with self._write_lock, self.engine.begin() as conn:
            result = conn.execute(
                update(jobs)
                .where(jobs.c.job_id.in_(orphans), jobs.c.status.in_(UNFINISHED))
                .values(status="failed", error=reason, finished_at=now_ms())
            )
        return int(result.rowcount or 0)


_PG_USERS = """
INSERT INTO users (user_id, attributes, created_at, updated_at)
SELECT u, '{}'::jsonb, %(ts)s, %(ts)s FROM unnest(%(ids)s::varchar[]) AS u ORDER BY u
ON CONFLICT (user_id) DO NOTHING
"""
_PG_ITEMS = """
INSERT INTO items (item_id, title, categories, attributes, text, available, published_at,
                   placeholder, created_at, updated_at)
SELECT i, NULL, '[]'::jsonb, '{}'::jsonb, NULL, true, NULL, true, %(ts)s, %(ts)s
FROM unnest(%(ids)s::varchar[]) AS i ORDER BY i
ON CONFLICT (item_id) DO NOTHING
"""
_PG_EVENTS = """
INSERT INTO events (event_id, user_id, item_id, type, value, ts, received_at)
SELECT e.id, e.u, e.i, e.t, e.v, e.ts, %(received)s
FROM unnest(%(ids)s::varchar[], %(users)s::varchar[], %(items)s::varchar[],
            %(types)s::varchar[], %(values)s::float8[], %(ts)s::int8[])
     AS e(id, u, i, t, v, ts)
ORDER BY e.id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
_SQLITE_USERS = (
    "INSERT INTO users (user_id, attributes, created_at, updated_at) VALUES (?, '{}', ?, ?) "
    "ON CONFLICT (user_id) DO NOTHING"
)
_SQLITE_ITEMS = (
    "INSERT INTO items (item_id, title, categories, attributes, text, available, published_at, "
    "placeholder, created_at, updated_at) VALUES (?, NULL, '[]', '{}', NULL, 1, NULL, 1, ?, ?) "
    "ON CONFLICT (item_id) DO NOTHING"
)
_SQLITE_EVENTS = (
    "INSERT INTO events (event_id, user_id, item_id, type, value, ts, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


def _last_wins(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """A batch naming one id twice keeps the last row (ON CONFLICT cannot touch a row twice)."""
    return list({r[key]: r for r in rows}.values())


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; FULL makes an acknowledged batch survive power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
