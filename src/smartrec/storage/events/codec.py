"""Events on the wire of the bus: one JSON object per message, versioned, keyed by user id.

JSON rather than a binary schema: any consumer (a data team's own Kafka tooling included) can
read the topic, and the worker can say exactly what is wrong with a message it cannot use.
"""

from __future__ import annotations

import json
import math
from typing import Any

from smartrec.domain.records import EventRecord

#: Bump when the message shape changes incompatibly; the worker refuses versions it does not know.
VERSION = 1
_KEYS = ("event_id", "user_id", "item_id", "type", "value", "ts")


class MalformedEvent(ValueError):
    """A message that is not an event: the worker dead-letters it with this reason."""


def encode(event: EventRecord) -> bytes:
    return json.dumps(
        {
            "v": VERSION,
            "event_id": event.event_id,
            "user_id": event.user_id,
            "item_id": event.item_id,
            "type": event.type,
            "value": event.value,
            "ts": event.ts,
        },
        separators=(",", ":"),
    ).encode()


def key(event: EventRecord) -> bytes:
    """The partition key: a user's events stay in one partition, in order."""
    return event.user_id.encode()


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise MalformedEvent(f"{name} must be a non-empty string without NUL, got {value!r}")
    return value


def decode(raw: bytes | None) -> EventRecord:
    """The event in ``raw``, or :class:`MalformedEvent` saying what is wrong with it."""
    if raw is None:
        raise MalformedEvent("empty message (no value)")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent(f"not a JSON object but {type(obj).__name__}")
    if obj.get("v") != VERSION:
        raise MalformedEvent(f"unknown message version {obj.get('v')!r} (this worker reads 1)")
    unknown = sorted(set(obj) - {"v", *_KEYS})
    if unknown:
        raise MalformedEvent(f"unknown fields: {', '.join(unknown)}")
    value = obj.get("value")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise MalformedEvent(f"value must be a finite number or null, got {value!r}")
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise MalformedEvent(f"ts must be an integer (epoch milliseconds), got {ts!r}")
    return EventRecord(
        _text(obj, "event_id"),
        _text(obj, "user_id"),
        _text(obj, "item_id"),
        _text(obj, "type"),
        None if value is None else float(value),
        ts,
    )
