"""The in-process tables of the memory adapter, shared by its store, records and keys views.

Rows are plain dicts with the same columns as the SQL tables (``storage/sql/schema.py``), so the
read-back API returns the same shape whichever adapter serves it; the contract suite checks it.
Every read and write holds :attr:`Tables.lock`: the adapter is thread-safe, and a batch lands
whole or not at all, as one SQL transaction would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

ITEM_COLUMNS = (
    "item_id",
    "title",
    "categories",
    "attributes",
    "text",
    "available",
    "published_at",
    "placeholder",
    "created_at",
    "updated_at",
    "deleted_at",
)
USER_COLUMNS = ("user_id", "attributes", "created_at", "updated_at")
JOB_COLUMNS = (
    "job_id",
    "status",
    "request",
    "model_version",
    "metrics",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "worker",
    "heartbeat_at",
)
KEY_COLUMNS = (
    "key_id",
    "name",
    "scopes",
    "secret_sha256",
    "rate_limit",
    "created_at",
    "revoked_at",
)


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event: an ``EventRecord`` plus when the store received it (epoch ms)."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    ts: int
    received_at: int

    def as_dict(self) -> dict[str, Any]:
        """The columns the read-back API shows (``received_at`` is the store's own)."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "value": self.value,
            "ts": self.ts,
        }


@dataclass
class Tables:
    """Every table of one memory store; hold ``lock`` to read or write any of them."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, EventRow] = field(default_factory=dict)
    #: user_id -> event_id -> event: one user's history without scanning the whole log.
    events_by_user: dict[str, dict[str, EventRow]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: erasure_key(user_id) -> erased_at.
    erasures: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def remove_event(self, event: EventRow) -> None:
        del self.events[event.event_id]
        mine = self.events_by_user.get(event.user_id)
        if mine is not None:
            mine.pop(event.event_id, None)
            if not mine:
                del self.events_by_user[event.user_id]
