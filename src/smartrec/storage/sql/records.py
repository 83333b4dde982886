"""Reading the catalogue and the event log back, item deletion and user erasure.

Apart from :class:`~smartrec.storage.sql.store.SqlStore` (which owns the write and serving
paths) so that each module keeps one concern; it shares the store's engine and write lock.
Pages are keyset-paginated (no OFFSET): see :mod:`smartrec.storage.paging`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, and_, delete, func, or_, select, text, update

from smartrec.domain.clock import erasure_key
from smartrec.storage.paging import Page, event_cursor, parse_event_cursor
from smartrec.storage.sql import schema

if TYPE_CHECKING:
    from smartrec.storage.sql.store import SqlStore

__all__ = ["Page", "RecordStore", "event_cursor", "parse_event_cursor"]


class RecordStore:
    """Read-back, deletion and erasure over the same database as the :class:`SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine

    # ----------------------------------------------------------------- items
    def get_item(self, item_id: str) -> dict[str, Any] | None:
        c = schema.items.c
        query = select(schema.items).where(c.item_id == item_id, c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def list_items(
        self,
        limit: int,
        cursor: str | None = None,
        category: str | None = None,
        updated_since_ms: int | None = None,
    ) -> Page:
        """Items by id, ``limit`` a page; placeholders (ids known only from events) included."""
        c = schema.items.c
        query = select(schema.items).where(c.deleted_at.is_(None))
        if cursor is not None:
            query = query.where(c.item_id > cursor)
        if category is not None:
            query = query.where(self._has_category(category))
        if updated_since_ms is not None:
            query = query.where(c.updated_at >= updated_since_ms)
        query = query.order_by(c.item_id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, rows[-1]["item_id"] if more else None)

    def _has_category(self, category: str) -> TextClause:
        if self.store.dialect == "postgresql":
            return text("items.categories @> CAST(:cats AS jsonb)").bindparams(
                cats=json.dumps([category])
            )
        return text(
            "EXISTS (SELECT 1 FROM json_each(items.categories) WHERE json_each.value = :cat)"
        ).bindparams(cat=category)

    def delete_item(self, item_id: str, now_ms: int) -> bool:
        """Tombstone an item (False when there is none). Its events stay: they are behaviour
        history, and a later training simply finds the item unavailable."""
        c = schema.items.c
        query = (
            update(schema.items)
            .where(c.item_id == item_id, c.deleted_at.is_(None))
            .values(deleted_at=now_ms, updated_at=schema.item_row_version(now_ms), available=False)
        )
        with self.store._write_lock, self.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    # ----------------------------------------------------------------- users
    def get_user(self, user_id: str) -> dict[str, Any] | None:
        c = schema.users.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.users).where(c.user_id == user_id)).first()
            if row is None:
                return None
            count = conn.execute(
                select(func.count())
                .select_from(schema.events)
                .where(schema.events.c.user_id == user_id)
            ).scalar_one()
        return {**dict(row._mapping), "events": int(count)}

    def user_events(self, user_id: str, limit: int, cursor: str | None = None) -> Page:
        """A user's events, newest first (by event time, then id)."""
        c = schema.events.c
        query = select(c.event_id, c.user_id, c.item_id, c.type, c.value, c.ts).where(
            c.user_id == user_id
        )
        if cursor is not None:
            ts, event_id = parse_event_cursor(cursor)
            query = query.where(or_(c.ts < ts, and_(c.ts == ts, c.event_id < event_id)))
        query = query.order_by(c.ts.desc(), c.event_id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows else None
        return Page(rows, event_cursor(last["ts"], last["event_id"]) if more and last else None)

    def erase_user(self, user_id: str, now_ms: int) -> tuple[bool, int]:
        """Delete the user row and every event of the user in one transaction, and record the
        erasure for other replicas. Returns (user row existed, events deleted)."""
        erasures = schema.user_erasures
        with self.store._write_lock, self.engine.begin() as conn:
            events = conn.execute(
                delete(schema.events).where(schema.events.c.user_id == user_id)
            ).rowcount
            user = conn.execute(
                delete(schema.users).where(schema.users.c.user_id == user_id)
            ).rowcount
            if user or events:
                key = erasure_key(user_id)
                stmt = self.store._insert()(erasures).values(user_key=key, erased_at=now_ms)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_key"], set_={"erased_at": now_ms}
                    )
                )
        return bool(user), int(events or 0)
