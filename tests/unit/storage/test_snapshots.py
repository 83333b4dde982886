"""Parquet snapshots of the event log: written, listed, read back and pruned, on an object
store (``memory://`` here; S3 in tests/e2e/test_snapshot_commands.py)."""

from __future__ import annotations

import io
import json
import uuid
from unittest import mock

import pyarrow.parquet as pq
import pytest

from smartrec.domain import EventRecord
from smartrec.domain.clock import erasure_key
from smartrec.storage.memory import MemoryStore
from smartrec.storage.objects import open_object_store
from smartrec.storage.objects.base import ObjectStore
from smartrec.storage.objects.snapshots import (
    ABANDONED_S,
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    without_users,
    write_snapshot,
)


@pytest.fixture()
def objects() -> ObjectStore:
    return open_object_store(f"memory://snapshots-{uuid.uuid4().hex[:8]}")


def _log() -> MemoryStore:
    store = MemoryStore()
    store.add_events(
        [
            EventRecord("e1", "u1", "a", "view", None, 1_000),
            EventRecord("e2", "u2", "b", "rating", 4.5, 3_000),
            EventRecord("e3", "用户", "é", "purchase", None, 2_000),
        ]
    )
    return store


def test_a_snapshot_reads_back_as_the_log_and_any_parquet_tool_reads_it(
    objects: ObjectStore,
) -> None:
    store = _log()
    info = write_snapshot(store, objects)
    assert info.rows == 3 and info.path.endswith(".parquet") and info.bytes > 0
    assert (info.first_ts, info.last_ts) == (1.0, 3.0)
    got_info, events = read_snapshot(objects)  # the newest
    assert got_info == info
    want = store.snapshot()
    assert (events.user_ids, events.item_ids, events.types, events.values, events.timestamps) == (
        want.user_ids,
        want.item_ids,
        want.types,
        want.values,
        want.timestamps,
    )
    # Plain pyarrow, as pandas or DuckDB would: typed columns, times in UTC.
    table = pq.read_table(io.BytesIO(objects.get(info.path)))
    assert table.column_names == ["user_id", "item_id", "type", "value", "timestamp"]
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert json.loads(objects.get(info.path.replace(".parquet", ".json")))["rows"] == 3


def test_since_keeps_the_newer_events_only_and_is_never_the_latest(objects: ObjectStore) -> None:
    full = write_snapshot(_log(), objects)
    part = write_snapshot(_log(), objects, since_ms=2_000)
    _, events = read_snapshot(objects, part.path)
    assert events.timestamps == [2.0, 3.0] and part.since_ms == 2_000
    assert read_snapshot(objects)[0] == full  # "latest" is the newest of the whole log


def test_erased_users_are_left_out_of_a_snapshot_trained_on() -> None:
    events = _log().snapshot()
    kept = without_users(events, {erasure_key("u1")})
    assert kept.user_ids == ["用户", "u2"] and kept.timestamps == [2.0, 3.0]
    assert without_users(events, set()) is events


def test_snapshots_list_oldest_first_and_a_named_one_is_found(objects: ObjectStore) -> None:
    store = _log()
    first = write_snapshot(store, objects)
    second = write_snapshot(store, objects, since_ms=3_000)
    assert [s.path for s in list_snapshots(objects)] == [first.path, second.path]
    assert read_snapshot(objects, first.path.rsplit("/", 1)[-1])[0] == first
    with pytest.raises(FileNotFoundError, match="no snapshot 'nope'"):
        read_snapshot(objects, "nope")
    with pytest.raises(FileNotFoundError, match="no snapshot of the whole log in"):
        read_snapshot(open_object_store("memory://empty-" + uuid.uuid4().hex[:8]))


def test_a_snapshot_cut_short_is_never_listed_and_pruned_once_abandoned(
    objects: ObjectStore,
) -> None:
    store = _log()
    kept = [write_snapshot(store, objects) for _ in range(3)]
    objects.put("snapshots/events-20260101T000000000000Z.parquet", b"half")  # no manifest
    stranger = f"snapshots/events-{'9' * 8}T999999000000Z.parquet"  # not our stamp
    objects.put(stranger, b"?")
    assert len(list_snapshots(objects)) == 3
    deleted = prune_snapshots(objects, keep=1)
    assert stranger not in deleted and objects.exists(stranger)
    assert kept[0].path in deleted and kept[1].path in deleted
    assert "snapshots/events-20260101T000000000000Z.parquet" in deleted
    assert [s.path for s in list_snapshots(objects)] == [kept[2].path]
    # One being written now (no manifest yet) is left alone.
    fresh = write_snapshot(store, objects)
    objects.delete(fresh.path.replace(".parquet", ".json"))
    with mock.patch("smartrec.storage.objects.snapshots.time.time", return_value=fresh.created_at):
        assert fresh.path not in prune_snapshots(objects, keep=1)
    later = fresh.created_at + ABANDONED_S + 1
    with mock.patch("smartrec.storage.objects.snapshots.time.time", return_value=later):
        assert fresh.path in prune_snapshots(objects, keep=1)
