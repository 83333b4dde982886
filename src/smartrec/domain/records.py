"""The records the storage ports exchange: plain values, no I/O, so every layer may use them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
