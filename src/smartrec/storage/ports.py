"""Small Protocols for each storage concern, so that adapters can be swapped by URL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One validated event, ready to store. ``ts`` is epoch milliseconds."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    ts: int


@dataclass(frozen=True, slots=True)
class EventSnapshot:
    """Column arrays of the event log (ordered by time), the input of training."""

    user_ids: list[str]
    item_ids: list[str]
    types: list[str]
    values: list[float | None]
    timestamps: list[float]  # epoch seconds

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    title: str | None
    categories: list[str]
    attributes: dict[str, Any]
    available: bool
    placeholder: bool
    published_at: int | None = None  # epoch milliseconds
    text: str | None = None  # only filled when asked for (``catalog(..., with_text=True)``)
    #: Epoch milliseconds the catalogue first stored it: its birth when it has neither a
    #: publication time nor events (None: not known, e.g. a dataset's own catalogue).
    created_at: int | None = None
    #: Taken out of the catalogue (``DELETE /v1/items/{id}``); also reported unavailable.
    deleted: bool = False


class CatalogStore(Protocol):
    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> int: ...
    def upsert_users(self, rows: Sequence[dict[str, Any]]) -> int: ...
    def catalog(
        self, item_ids: Iterable[str] | None = None, with_text: bool = False
    ) -> dict[str, CatalogItem]: ...
    def item_exists(self, item_id: str) -> bool: ...


class EventStore(Protocol):
    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]: ...
    def snapshot(self) -> EventSnapshot: ...
    def user_history(
        self, user_id: str, limit: int = 500
    ) -> list[tuple[str, str, float | None]]: ...
    def item_activity(self, since_ms: int | None) -> list[tuple[str, str, float | None, int]]: ...
    def newest_event_ms(self) -> int | None: ...
    def count_events(self) -> int: ...


class JobStore(Protocol):
    def create_job(self, job_id: str, request: dict[str, Any]) -> None: ...
    def update_job(self, job_id: str, **fields: Any) -> None: ...
    def get_job(self, job_id: str) -> dict[str, Any] | None: ...
