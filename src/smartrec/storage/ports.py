"""Small Protocols for each storage concern, so that adapters can be swapped by URL.

Serving, training, the job runner and the runtime depend on these, never on an adapter: every
call they make on a store is declared here. ``storage/memory`` (in-process), ``storage/sql``
(SQLite, PostgreSQL) implement them and pass the same contract suite (``tests/contract``).
``storage.open_store(url)`` picks the adapter by URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from smartrec.domain.records import CatalogItem, EventRecord, EventSnapshot
from smartrec.storage.paging import Page


class CatalogStore(Protocol):
    """Items and users: what the API writes and what serving filters and shows."""

    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> int: ...
    def upsert_users(self, rows: Sequence[dict[str, Any]]) -> int: ...
    def catalog(
        self, item_ids: Iterable[str] | None = None, with_text: bool = False
    ) -> dict[str, CatalogItem]: ...
    def item_exists(self, item_id: str) -> bool: ...
    def count_items(self) -> int: ...
    def count_users(self) -> int: ...
    def catalog_mark(self) -> int:
        """The newest ``updated_at`` (epoch ms): where a catalogue refresh resumes."""
        ...

    def catalog_changes(self, mark: int) -> list[tuple[str, int]]:
        """``(item_id, updated_at)`` of the items changed at or after ``mark``."""
        ...


class EventStore(Protocol):
    """The event log: appended by ingest, read by serving (one user) and training (all)."""

    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]: ...
    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Those of ``event_ids`` already in the log (a bus that writes later counts a resent
        event as a duplicate with it)."""
        ...

    def snapshot(self, since_ms: int | None = None) -> EventSnapshot:
        """The event log ordered by time (then id): all of it, the training input, or the
        events at or after ``since_ms`` (indexed: what serving recounts live)."""
        ...

    def user_history(
        self, user_id: str, limit: int = 500
    ) -> list[tuple[str, str, float | None]]: ...
    def user_items(self, user_id: str) -> list[str]: ...
    def event_mark(self) -> int:
        """The newest ``received_at`` (epoch ms): where the event poll resumes."""
        ...

    def users_with_events_since(self, mark: int) -> list[tuple[str, int]]: ...
    def active_users(self, limit: int) -> list[str]: ...
    def item_activity(self, since_ms: int | None) -> list[tuple[str, str, float | None, int]]: ...
    def newest_event_ms(self) -> int | None: ...
    def count_events(self) -> int: ...
    def erasures(self, since_ms: int | None = None) -> dict[str, int]:
        """Hashed user key -> epoch ms of erasure, for the users erased since ``since_ms``."""
        ...


class JobStore(Protocol):
    """Training jobs: their state survives the process that runs them."""

    def create_job(self, job_id: str, request: dict[str, Any]) -> None: ...
    def update_job(self, job_id: str, **fields: Any) -> None: ...
    def get_job(self, job_id: str) -> dict[str, Any] | None: ...
    def heartbeat_jobs(self, job_ids: Sequence[str]) -> None: ...
    def fail_orphaned_jobs(self, reason: str, stale_after_ms: int | None = None) -> int: ...
    def unfinished_jobs(self) -> list[str]:
        """Ids of the jobs queued or running (by any process), oldest first."""
        ...


class Store(CatalogStore, EventStore, JobStore, Protocol):
    """Everything one deployment's store does, plus its lifecycle and a cross-process lock."""

    def migrate(self) -> None: ...
    def close(self) -> None: ...
    def ping(self) -> bool: ...
    def lock(self, name: str) -> AbstractContextManager[None]: ...


class RecordStore(Protocol):
    """Read-back, item deletion and user erasure: what the catalogue and user routers call.

    Rows are plain dicts with the columns of the adapter's tables (``items``: item_id, title,
    categories, attributes, text, available, published_at, placeholder, created_at, updated_at,
    deleted_at; events: event_id, user_id, item_id, type, value, ts).
    """

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        """The item, or None when there is none or it was deleted."""
        ...

    def list_items(
        self,
        limit: int,
        cursor: str | None = None,
        category: str | None = None,
        updated_since_ms: int | None = None,
    ) -> Page:
        """Undeleted items ordered by id after ``cursor`` (placeholders included)."""
        ...

    def delete_item(self, item_id: str, now_ms: int) -> bool:
        """Tombstone the item (its events stay); False when there is no undeleted one."""
        ...

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """The user row plus ``events`` (how many the user has), or None."""
        ...

    def user_events(self, user_id: str, limit: int, cursor: str | None = None) -> Page:
        """The user's events newest first (by time, then id), after ``cursor``."""
        ...

    def erase_user(self, user_id: str, now_ms: int) -> tuple[bool, int]:
        """Delete the user and every event of the user, and record the erasure (see
        ``EventStore.erasures``). Returns (user row existed, events deleted)."""
        ...


class KeyStore(Protocol):
    """API keys: hashed secrets and scopes, never the token itself."""

    def add(self, row: dict[str, Any]) -> None: ...
    def get(self, key_id: str) -> dict[str, Any] | None: ...
    def all(self) -> list[dict[str, Any]]:
        """Every key, oldest first (by ``created_at``, then ``key_id``)."""
        ...

    def revoke(self, key_id: str, now_ms: int) -> bool:
        """False when there is no such key or it was revoked already."""
        ...

    def count_active(self) -> int: ...
