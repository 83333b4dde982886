"""Read-back, item deletion and user erasure over a :class:`MemoryStore` (the ``RecordStore``
port), with the SQL adapter's rules: deleted items are hidden, pages are keyset pages."""

from __future__ import annotations

import copy
from typing import Any

from smartrec.domain.clock import erasure_key
from smartrec.storage.memory.store import MemoryStore, row_version
from smartrec.storage.paging import Page, event_cursor, parse_event_cursor


class MemoryRecordStore:
    def __init__(self, store: MemoryStore) -> None:
        self.tables = store.tables

    # ----------------------------------------------------------------- items
    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self.tables.lock:
            row = self.tables.items.get(item_id)
            if row is None or row["deleted_at"] is not None:
                return None
            return copy.deepcopy(row)

    def list_items(
        self,
        limit: int,
        cursor: str | None = None,
        category: str | None = None,
        updated_since_ms: int | None = None,
    ) -> Page:
        """Items by id, ``limit`` a page; placeholders (ids known only from events) included."""
        with self.tables.lock:
            rows = sorted(
                (
                    r
                    for r in self.tables.items.values()
                    if r["deleted_at"] is None
                    and (cursor is None or r["item_id"] > cursor)
                    and (category is None or category in r["categories"])
                    and (updated_since_ms is None or r["updated_at"] >= updated_since_ms)
                ),
                key=lambda r: r["item_id"],
            )
            page = [copy.deepcopy(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(page, page[-1]["item_id"] if more and page else None)

    def delete_item(self, item_id: str, now_ms: int) -> bool:
        """Tombstone an item (False when there is none); its events stay."""
        with self.tables.lock:
            row = self.tables.items.get(item_id)
            if row is None or row["deleted_at"] is not None:
                return False
            row.update(deleted_at=now_ms, updated_at=row_version(now_ms, row), available=False)
            return True

    # ----------------------------------------------------------------- users
    def get_user(self, user_id: str) -> dict[str, Any] | None:
        with self.tables.lock:
            row = self.tables.users.get(user_id)
            if row is None:
                return None
            events = len(self.tables.events_by_user.get(user_id, {}))
            return {**copy.deepcopy(row), "events": events}

    def user_events(self, user_id: str, limit: int, cursor: str | None = None) -> Page:
        """A user's events, newest first (by event time, then id)."""
        after = None if cursor is None else parse_event_cursor(cursor)
        with self.tables.lock:
            mine = list(self.tables.events_by_user.get(user_id, {}).values())
        rows = sorted(
            (e for e in mine if after is None or (e.ts, e.event_id) < after),
            key=lambda e: (e.ts, e.event_id),
            reverse=True,
        )
        page = [e.as_dict() for e in rows[:limit]]
        more = len(rows) > limit
        last = page[-1] if page else None
        return Page(page, event_cursor(last["ts"], last["event_id"]) if more and last else None)

    def erase_user(self, user_id: str, now_ms: int) -> tuple[bool, int]:
        """Delete the user row and every event of the user at once, and record the erasure
        for other replicas. Returns (user row existed, events deleted)."""
        t = self.tables
        with t.lock:
            mine = list(t.events_by_user.get(user_id, {}).values())
            for e in mine:
                t.remove_event(e)
            existed = t.users.pop(user_id, None) is not None
            if existed or mine:
                t.erasures[erasure_key(user_id)] = now_ms
        return existed, len(mine)
