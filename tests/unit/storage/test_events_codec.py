"""The bus's wire format: what the API writes, the worker reads back exactly; anything else is
refused with a reason a person can act on."""

from __future__ import annotations

import json

import pytest

from smartrec.domain.records import EventRecord
from smartrec.storage.events import codec
from smartrec.storage.events.codec import MalformedEvent


def _raw(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": 1,
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "view",
        "value": None,
        "ts": 1_700_000_000_000,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize("value", [None, 4.5, 0.0, -1.0])
def test_round_trip(value: float | None) -> None:
    e = EventRecord("e1", "ü-user", "i/1", "rating", value, 1_700_000_000_123)
    assert codec.decode(codec.encode(e)) == e
    assert codec.key(e) == "ü-user".encode()


def test_an_integer_value_comes_back_as_a_float() -> None:
    assert codec.decode(_raw(value=3)).value == 3.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (_raw(v=2), "unknown message version 2"),
        (_raw(v=...), "unknown message version None"),
        (_raw(extra=1), "unknown fields: extra"),
        (_raw(user_id=""), "user_id must be a non-empty string"),
        (_raw(item_id=7), "item_id must be a non-empty string"),
        (_raw(event_id="a\x00b"), "event_id must be a non-empty string without NUL"),
        (_raw(type=...), "type must be a non-empty string"),
        (_raw(ts="2024-01-01"), "ts must be an integer"),
        (_raw(ts=1.5), "ts must be an integer"),
        (_raw(ts=True), "ts must be an integer"),
        (_raw(value="5"), "value must be a finite number or null"),
        (_raw(value=True), "value must be a finite number or null"),
        (
            b'{"v":1,"event_id":"e","user_id":"u","item_id":"i","type":"t","value":NaN,"ts":1}',
            "value must be a finite number or null",
        ),
    ],
)
def test_malformed_messages_are_refused_with_their_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        codec.decode(raw)
    assert reason in str(info.value)
