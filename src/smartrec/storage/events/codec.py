"""Events on the wire of the bus: one JSON object per message, versioned, keyed by user id.

JSON rather than a binary schema: any consumer (a data team's own Kafka tooling included) can
read the topic, and the worker can say exactly what is wrong with a message it cannot use.
"""

from __future__ import annotations

import json
import math
from typing import Any

from smartrec.domain.records import EventRecord
from smartrec.schemas import ITEM_SUFFIXES, USER_SUFFIXES

#: Bump when the message shape changes incompatibly; the worker refuses versions it does not know.
VERSION = 1
_KEYS = ("event_id", "user_id", "item_id", "type", "value", "ts")
#: The limits ``POST /v1/events`` applies (``smartrec.schemas.EventIn``): a message another
#: producer wrote past them would be refused by the event log, so it is refused here.
MAX_ID = 256
MAX_TYPE = 64
#: Epoch milliseconds the event log's BIGINT holds with room to spare.
MAX_TS = 2**62


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


def _text(
    obj: dict[str, Any], name: str, limit: int = MAX_ID, suffixes: tuple[str, ...] = ()
) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise MalformedEvent(f"{name} must be a non-empty string without NUL, got {value!r:.80}")
    if len(value) > limit:
        raise MalformedEvent(f"{name} is {len(value)} characters long (at most {limit})")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise MalformedEvent(f"{name} is not valid Unicode (a lone surrogate)") from None
    if suffixes and value.endswith(suffixes):
        raise MalformedEvent(f"{name} may not end in {' or '.join(suffixes)}")
    return value


def decode(raw: bytes | None) -> EventRecord:
    """The event in ``raw``, or :class:`MalformedEvent` saying what is wrong with it."""
    if raw is None:
        raise MalformedEvent("empty message (no value)")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError: both
        raise MalformedEvent(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent(f"not a JSON object but {type(obj).__name__}")
    if obj.get("v") != VERSION:
        raise MalformedEvent(f"unknown message version {obj.get('v')!r} (this worker reads 1)")
    unknown = sorted(set(obj) - {"v", *_KEYS})
    if unknown:
        raise MalformedEvent(f"unknown fields: {', '.join(unknown)}")
    value = obj.get("value")
    if value is not None:
        try:
            number = float(value) if isinstance(value, int | float) else math.nan
        except OverflowError:  # an integer beyond any float
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise MalformedEvent(f"value must be a finite number or null, got {value!r:.80}")
        value = number
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not -MAX_TS < ts < MAX_TS:
        raise MalformedEvent(f"ts must be an integer (epoch milliseconds), got {ts!r:.80}")
    return EventRecord(
        _text(obj, "event_id"),
        _text(obj, "user_id", suffixes=USER_SUFFIXES),
        _text(obj, "item_id", suffixes=ITEM_SUFFIXES),
        _text(obj, "type", limit=MAX_TYPE),
        value,
        ts,
    )
