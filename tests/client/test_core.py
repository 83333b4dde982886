"""The shared request building, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from smartrec.client import _core as core
from smartrec.ingest import event_id_for
from smartrec.schemas import EventIn, ItemIn


def test_event_ids_are_the_servers() -> None:
    assert core.event_id_for("u", "i", "view", 123) == event_id_for("u", "i", "view", 123)


def test_identify_stamps_the_object_once() -> None:
    event = {"user_id": " u1 ", "item_id": "i1", "type": "view"}
    row = core.identify(event, now_ms=1_714_639_200_123)
    assert row is event and event["timestamp"] == 1_714_639_200.123
    assert event["event_id"] == event_id_for("u1", "i1", "view", 1_714_639_200_123)
    first = event["event_id"]
    core.identify(event, now_ms=1)  # a later retry: nothing changes
    assert event["event_id"] == first and event["timestamp"] == 1_714_639_200.123


def test_identify_keeps_given_ids_and_reads_any_timestamp() -> None:
    given = {"event_id": "e1", "user_id": "u", "item_id": "i", "type": "view"}
    assert core.identify(given, 5)["event_id"] == "e1"
    iso = {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "2024-05-01T12:00:00Z"}
    assert core.identify(iso, 5)["event_id"] == event_id_for("u", "i", "view", 1714564800000)
    bad = {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "yesterday"}
    assert "event_id" not in core.identify(bad, 5)  # the server names the row
    frozen = {"user_id": 1, "item_id": "i", "type": "view"}
    assert "event_id" not in core.identify(frozen, 5)


def test_models_go_on_the_wire_in_epoch_seconds() -> None:
    event = EventIn.model_validate(
        {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "2024-05-01T12:00:00Z"}
    )
    row = core.identify(event, 5)
    assert row["timestamp"] == 1714564800.0 and event.timestamp == 1714564800000
    assert EventIn.model_validate(json.loads(core._encode(row))).timestamp == event.timestamp
    published = datetime(2024, 5, 1, 12, 0, 0, 1000, tzinfo=UTC)
    item = ItemIn.model_validate({"item_id": "x", "published_at": published})
    wire = core.item_wire(item)
    assert ItemIn.model_validate(wire).published_at == item.published_at == 1714564800001


def test_batches_respect_rows_and_bytes() -> None:
    rows = [b"x" * 10] * 7
    assert [len(b) for b in core._batches(rows, 3, 10_000)] == [3, 3, 1]
    # 11 bytes per row with its comma: two fit in 25 bytes, three do not.
    assert [len(b) for b in core._batches(rows, 100, 25)] == [2, 2, 2, 1]
    assert [len(b) for b in core._batches([b"y" * 50, b"z"], 100, 25)] == [1, 1]
    with pytest.raises(ValueError):
        list(core._batches(rows, 0, 10))


def test_fields_and_params() -> None:
    assert core._fields(["title", "attributes"]) == "title,attributes"
    assert core._fields("title,categories") == "title,categories"
    assert core._fields(None) is None
    with pytest.raises(ValueError):
        core._fields(["price"])
    when = datetime(2024, 5, 1, tzinfo=UTC)
    assert core._params(a=None, b=when) == [("b", "2024-05-01T00:00:00+00:00")]
