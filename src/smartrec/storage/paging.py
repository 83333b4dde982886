"""Keyset pages of the read-back API, shared by every adapter.

A cursor is the last row's sort key in plain text (an item id; an event's time and id), so any
cursor a client sends has a meaning and no adapter needs OFFSET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smartrec.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def event_cursor(ts: int, event_id: str) -> str:
    """``<event time in ms>:<event id>`` of the last event of a page."""
    return f"{ts}:{event_id}"


def parse_event_cursor(cursor: str) -> tuple[int, str]:
    ts, sep, event_id = cursor.partition(":")
    digits = ts[1:] if ts.startswith("-") else ts
    if not sep or not digits.isdigit() or len(digits) > 15 or not event_id:
        raise ValidationFailed(
            "cursor is '<epoch ms>:<event id>': pass next_cursor from the previous page",
            field="cursor",
        )
    return int(ts), event_id
