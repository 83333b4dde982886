"""The memory adapter of the ``Store`` port: everything in this process, nothing on disk.

For unit tests of the service and trainer (no database to start) and for throw-away demos. It
keeps the SQL adapter's rules, checked by the same contract suite (``tests/contract``): events are
stored once by ``event_id``, their unknown users are created and unknown items become
placeholders, an item upsert replaces every field but ``created_at``, and a batch is written whole
or not at all.
"""

from __future__ import annotations

import copy
import heapq
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from smartrec.domain.clock import now_ms
from smartrec.domain.records import CatalogItem, EventRecord, EventSnapshot
from smartrec.storage.jobs import UNFINISHED, is_orphan, worker_id
from smartrec.storage.memory.tables import JOB_COLUMNS, EventRow, Tables


class MemoryStore:
    """Catalog, event log and job table in dicts behind one lock; see the module docstring."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._named_locks: dict[str, threading.Lock] = {}

    # ----------------------------------------------------------------- lifecycle
    def migrate(self) -> None:
        """Nothing to migrate: the tables are born in their newest shape."""

    def close(self) -> None:
        """Nothing to release (the data lives as long as the object)."""

    def ping(self) -> bool:
        return True

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A named lock shared by every user of this store (which lives in one process)."""
        with self.tables.lock:
            named = self._named_locks.setdefault(name, threading.Lock())
        with named:
            yield

    # ----------------------------------------------------------------- catalog
    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert or fully replace items (the last row of an id wins); a placeholder becomes a
        real item and a deleted one comes back. ``created_at`` is kept from the first insert."""
        if not rows:
            return 0
        latest = {r["item_id"]: r for r in rows}
        ts = now_ms()
        with self.tables.lock:
            for item_id, r in latest.items():
                old = self.tables.items.get(item_id)
                self.tables.items[item_id] = {
                    "item_id": item_id,
                    "title": r.get("title"),
                    "categories": list(r.get("categories") or []),
                    "attributes": copy.deepcopy(dict(r.get("attributes") or {})),
                    "text": r.get("text"),
                    "available": bool(r.get("available", True)),
                    "published_at": r.get("published_at"),
                    "placeholder": False,
                    "created_at": ts if old is None else old["created_at"],
                    "updated_at": ts if old is None else row_version(ts, old),
                    "deleted_at": None,
                }
        return len(latest)

    def upsert_users(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        latest = {r["user_id"]: r for r in rows}
        ts = now_ms()
        with self.tables.lock:
            for user_id, r in latest.items():
                old = self.tables.users.get(user_id)
                self.tables.users[user_id] = {
                    "user_id": user_id,
                    "attributes": copy.deepcopy(dict(r.get("attributes") or {})),
                    "created_at": ts if old is None else old["created_at"],
                    "updated_at": ts,
                }
        return len(latest)

    def catalog(
        self, item_ids: Iterable[str] | None = None, with_text: bool = False
    ) -> dict[str, CatalogItem]:
        """Item rows by id (all when ``item_ids`` is None); unknown ids are left out."""
        with self.tables.lock:
            if item_ids is None:
                rows = list(self.tables.items.values())
            else:
                found = (self.tables.items.get(i) for i in dict.fromkeys(item_ids))
                rows = [r for r in found if r is not None]
            return {r["item_id"]: _catalog_item(r, with_text) for r in rows}

    def item_exists(self, item_id: str) -> bool:
        """Deleted items and placeholders exist too (as in the SQL ``items`` table)."""
        with self.tables.lock:
            return item_id in self.tables.items

    def count_items(self) -> int:
        with self.tables.lock:
            return len(self.tables.items)

    def count_users(self) -> int:
        with self.tables.lock:
            return len(self.tables.users)

    def catalog_mark(self) -> int:
        with self.tables.lock:
            return max((r["updated_at"] for r in self.tables.items.values()), default=0)

    def catalog_changes(self, mark: int) -> list[tuple[str, int]]:
        with self.tables.lock:
            return [
                (r["item_id"], r["updated_at"])
                for r in self.tables.items.values()
                if r["updated_at"] >= mark
            ]

    # ----------------------------------------------------------------- events
    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """Store events once each; returns (accepted, duplicates). A batch with a malformed
        event raises ``ValueError`` before anything is stored."""
        if not events:
            return 0, 0
        for index, e in enumerate(events):
            _check_event(index, e)
        unique: dict[str, EventRecord] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        ts = now_ms()
        t = self.tables
        with t.lock:
            # As in SQL, the users and items of every event are made known, duplicates too.
            for e in unique.values():
                if e.user_id not in t.users:
                    t.users[e.user_id] = _new_user(e.user_id, ts)
                if e.item_id not in t.items:
                    t.items[e.item_id] = _placeholder(e.item_id, ts)
            fresh = [e for e in unique.values() if e.event_id not in t.events]
            for e in fresh:
                row = EventRow(e.event_id, e.user_id, e.item_id, e.type, e.value, e.ts, ts)
                t.events[e.event_id] = row
                t.events_by_user.setdefault(e.user_id, {})[e.event_id] = row
        return len(fresh), len(events) - len(fresh)

    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        t = self.tables
        with t.lock:
            return {i for i in event_ids if i in t.events}

    def snapshot(self, since_ms: int | None = None) -> EventSnapshot:
        """The event log ordered by time (then id): the training input, or the events at or
        after ``since_ms``."""
        with self.tables.lock:
            rows = sorted(
                (e for e in self.tables.events.values() if since_ms is None or e.ts >= since_ms),
                key=lambda e: (e.ts, e.event_id),
            )
        return EventSnapshot(
            [e.user_id for e in rows],
            [e.item_id for e in rows],
            [e.type for e in rows],
            [e.value for e in rows],
            [e.ts / 1000.0 for e in rows],
        )

    def user_history(self, user_id: str, limit: int = 500) -> list[tuple[str, str, float | None]]:
        """The user's newest ``limit`` events, newest first: (item_id, type, value)."""
        with self.tables.lock:
            mine = list(self.tables.events_by_user.get(user_id, {}).values())
        newest = heapq.nlargest(max(limit, 0), mine, key=lambda e: (e.ts, e.event_id))
        return [(e.item_id, e.type, e.value) for e in newest]

    def user_items(self, user_id: str) -> list[str]:
        with self.tables.lock:
            mine = self.tables.events_by_user.get(user_id, {})
            return list(dict.fromkeys(e.item_id for e in mine.values()))

    def event_mark(self) -> int:
        with self.tables.lock:
            return max((e.received_at for e in self.tables.events.values()), default=0)

    def users_with_events_since(self, mark: int) -> list[tuple[str, int]]:
        newest: dict[str, int] = {}
        with self.tables.lock:
            for e in self.tables.events.values():
                if e.received_at >= mark:
                    newest[e.user_id] = max(e.received_at, newest.get(e.user_id, e.received_at))
        return list(newest.items())

    def active_users(self, limit: int) -> list[str]:
        """The ``limit`` users with the most recent events, most recent first."""
        with self.tables.lock:
            newest = {
                user: max(e.ts for e in mine.values())
                for user, mine in self.tables.events_by_user.items()
            }
        return sorted(newest, key=lambda u: (-newest[u], u))[: max(limit, 0)]

    def item_activity(self, since_ms: int | None) -> list[tuple[str, str, float | None, int]]:
        with self.tables.lock:
            counts = Counter(
                (e.item_id, e.type, e.value)
                for e in self.tables.events.values()
                if since_ms is None or e.ts >= since_ms
            )
        return [(item, type_, value, n) for (item, type_, value), n in counts.items()]

    def newest_event_ms(self) -> int | None:
        with self.tables.lock:
            return max((e.ts for e in self.tables.events.values()), default=None)

    def count_events(self) -> int:
        with self.tables.lock:
            return len(self.tables.events)

    def erasures(self, since_ms: int | None = None) -> dict[str, int]:
        with self.tables.lock:
            return {
                key: at
                for key, at in self.tables.erasures.items()
                if since_ms is None or at >= since_ms
            }

    # ----------------------------------------------------------------- jobs
    def create_job(self, job_id: str, request: dict[str, Any]) -> None:
        """A queued job owned by this process; ``ValueError`` when the id is taken."""
        ts = now_ms()
        row: dict[str, Any] = dict.fromkeys(JOB_COLUMNS)
        row.update(
            job_id=job_id,
            status="queued",
            request=copy.deepcopy(request),
            worker=worker_id(),
            created_at=ts,
            heartbeat_at=ts,
        )
        with self.tables.lock:
            if job_id in self.tables.jobs:
                raise ValueError(f"a job {job_id!r} exists already")
            self.tables.jobs[job_id] = row

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set these columns of the job (no job: nothing happens, as an SQL UPDATE)."""
        unknown = set(fields) - set(JOB_COLUMNS)
        if unknown:
            raise ValueError(f"training jobs have no column {', '.join(sorted(unknown))}")
        with self.tables.lock:
            row = self.tables.jobs.get(job_id)
            if row is not None:
                row.update(copy.deepcopy(fields))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.tables.lock:
            row = self.tables.jobs.get(job_id)
            return None if row is None else copy.deepcopy(row)

    def heartbeat_jobs(self, job_ids: Sequence[str]) -> None:
        """Mark these (unfinished) jobs as alive now."""
        ts = now_ms()
        with self.tables.lock:
            for job_id in job_ids:
                row = self.tables.jobs.get(job_id)
                if row is not None and row["status"] in UNFINISHED:
                    row["heartbeat_at"] = ts

    def unfinished_jobs(self) -> list[str]:
        with self.tables.lock:
            rows = [r for r in self.tables.jobs.values() if r["status"] in UNFINISHED]
        return [r["job_id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["job_id"]))]

    def fail_orphaned_jobs(self, reason: str, stale_after_ms: int | None = None) -> int:
        """Fail unfinished jobs whose process is gone (see ``storage.jobs.is_orphan``)."""
        host = socket.gethostname()
        ts = now_ms()
        oldest = None if stale_after_ms is None else ts - stale_after_ms
        failed = 0
        with self.tables.lock:
            for row in self.tables.jobs.values():
                if row["status"] in UNFINISHED and is_orphan(
                    row["worker"], row["heartbeat_at"], host, oldest
                ):
                    row.update(status="failed", error=reason, finished_at=ts)
                    failed += 1
        return failed


def _catalog_item(row: dict[str, Any], with_text: bool) -> CatalogItem:
    deleted = row["deleted_at"] is not None
    return CatalogItem(
        item_id=row["item_id"],
        title=row["title"],
        categories=list(row["categories"]),
        attributes=copy.deepcopy(row["attributes"]),
        # A deleted item is in no answer: to serving it is unavailable.
        available=bool(row["available"]) and not deleted,
        placeholder=bool(row["placeholder"]),
        published_at=row["published_at"],
        text=row["text"] if with_text else None,
        created_at=row["created_at"],
        deleted=deleted,
    )


def _new_user(user_id: str, ts: int) -> dict[str, Any]:
    return {"user_id": user_id, "attributes": {}, "created_at": ts, "updated_at": ts}


def _placeholder(item_id: str, ts: int) -> dict[str, Any]:
    """An item known only from an event, until the catalogue sends it."""
    return {
        "item_id": item_id,
        "title": None,
        "categories": [],
        "attributes": {},
        "text": None,
        "available": True,
        "published_at": None,
        "placeholder": True,
        "created_at": ts,
        "updated_at": ts,
        "deleted_at": None,
    }


def _check_event(index: int, e: EventRecord) -> None:
    """What the SQL tables' NOT NULL columns and types refuse, refused here too."""
    for name in ("event_id", "user_id", "item_id", "type"):
        if not isinstance(getattr(e, name), str):
            raise ValueError(f"events[{index}].{name} must be a string")
    if not isinstance(e.ts, int) or isinstance(e.ts, bool):
        raise ValueError(f"events[{index}].ts must be an integer (epoch ms)")
    if e.value is not None and not isinstance(e.value, (int, float)):
        raise ValueError(f"events[{index}].value must be a number or None")


def row_version(stamp: int, row: dict[str, Any]) -> int:
    """An item's new ``updated_at``: ``stamp``, or one past the row's when that is not later
    (two edits within one millisecond must both be changes to ``catalog_changes``)."""
    return max(stamp, int(row["updated_at"]) + 1)
