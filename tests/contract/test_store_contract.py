"""The ``Store`` port's contract: memory, SQLite and PostgreSQL answer every call alike.

Each test runs once per adapter (``conftest.store``); a rule that holds for one adapter only
belongs to that adapter's own tests (``tests/integration/test_storage.py`` for SQL).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from smartrec.domain import EventRecord
from smartrec.domain.clock import now_ms
from smartrec.storage import RecordStore, Store

JOB_COLUMNS = {
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
}


def ev(
    i: int, user: str = "u1", item: str = "a", type_: str = "view", ts: int = 1000
) -> EventRecord:
    return EventRecord(f"e{i}", user, item, type_, None, ts + i)


def after(mark: int) -> int:
    """Wait until the clock is past ``mark`` (at most a millisecond): later writes get a newer
    time than everything written up to ``mark``."""
    while (now := now_ms()) <= mark:
        pass
    return now


def test_a_new_store_is_empty_and_alive(store: Store) -> None:
    store.migrate()  # again: idempotent
    assert store.ping()
    assert (store.count_items(), store.count_users(), store.count_events()) == (0, 0, 0)
    assert store.catalog() == {} and store.catalog(["a"]) == {}
    assert not store.item_exists("a")
    assert store.catalog_mark() == 0 and store.catalog_changes(0) == []
    assert store.event_mark() == 0 and store.users_with_events_since(0) == []
    assert len(store.snapshot()) == 0
    assert store.user_history("u") == [] and store.user_items("u") == []
    assert store.active_users(10) == [] and store.item_activity(None) == []
    assert store.newest_event_ms() is None
    assert store.erasures() == {}
    assert store.add_events([]) == (0, 0)
    assert store.upsert_items([]) == 0 and store.upsert_users([]) == 0
    assert store.get_job("missing") is None


def test_events_are_idempotent_and_create_users_and_placeholders(store: Store) -> None:
    batch = [ev(i, item="a" if i % 2 else "b") for i in range(6)]
    assert store.add_events(batch) == (6, 0)
    assert store.add_events(batch) == (0, 6)  # across batches
    assert store.add_events([*batch[:2], ev(99), ev(99)]) == (1, 3)  # and within one
    assert store.count_events() == 7
    catalog = store.catalog()
    assert set(catalog) == {"a", "b"}
    assert all(item.placeholder and item.available for item in catalog.values())
    assert all(item.title is None and item.categories == [] for item in catalog.values())
    assert store.item_exists("a") and store.count_items() == 2
    assert store.count_users() == 1
    store.upsert_items([{"item_id": "a", "title": "A", "categories": ["x"]}])
    assert store.catalog(["a"])["a"].placeholder is False
    assert store.catalog(["a"])["a"].categories == ["x"]
    assert store.catalog(["b"])["b"].placeholder is True


def test_known_event_ids_names_the_stored_ones_only(store: Store) -> None:
    """What a bus that writes later asks before it sends (a resent event is a duplicate)."""
    assert store.known_event_ids([]) == set()
    store.add_events([ev(i) for i in range(3)])
    ids = [ev(i).event_id for i in range(5)]
    assert store.known_event_ids(ids + ids[:1]) == set(ids[:3])
    many = [f"x{i}" for i in range(1200)] + [ids[2]]  # more than one chunk of look-ups
    assert store.known_event_ids(many) == {ids[2]}


def test_a_duplicate_event_still_makes_its_user_and_item_known(store: Store) -> None:
    """The event id decides what is a duplicate; its user and item are known either way."""
    store.add_events([EventRecord("same", "u1", "a", "view", None, 1)])
    assert store.add_events([EventRecord("same", "u2", "b", "view", None, 2)]) == (0, 1)
    assert store.count_users() == 2 and set(store.catalog()) == {"a", "b"}
    assert store.user_history("u2") == [] and store.count_events() == 1


def test_upserts_replace_and_last_row_wins(store: Store) -> None:
    assert (
        store.upsert_items(
            [
                {"item_id": "a", "title": "first", "categories": ["x"], "attributes": {"y": 1}},
                {"item_id": "a", "title": "second", "categories": ["z"], "available": False},
            ]
        )
        == 1
    )
    item = store.catalog()["a"]
    assert (item.title, item.categories, item.attributes, item.available) == (
        "second",
        ["z"],
        {},
        False,
    )
    # created_at: when the catalogue first stored the item (a placeholder included); an
    # update keeps it, so an item's age is not reset by editing it.
    created = item.created_at
    assert created is not None and abs(created - now_ms()) < 60_000
    store.add_events([ev(1, user="u", item="p")])
    placeholder_born = store.catalog(["p"])["p"].created_at
    after(max(created, placeholder_born or 0))
    store.upsert_items([{"item_id": "a", "title": "third"}, {"item_id": "p", "title": "P"}])
    now = store.catalog(["a", "p"])
    assert now["a"].title == "third" and now["a"].created_at == created
    assert now["a"].available is True and now["a"].categories == []  # replaced, not merged
    assert now["p"].created_at == placeholder_born is not None and not now["p"].placeholder
    assert store.upsert_users([{"user_id": "u", "attributes": {"age": 3}}]) == 1
    assert store.upsert_users([{"user_id": "u", "attributes": {"age": 4}}]) == 1
    assert store.upsert_users([{"user_id": "v"}, {"user_id": "v", "attributes": {"k": 1}}]) == 1
    assert store.count_users() == 2


def test_catalog_reads_what_was_written(store: Store) -> None:
    store.upsert_items(
        [
            {
                "item_id": "a",
                "title": "A",
                "categories": ["x", "y"],
                "attributes": {"colour": "red", "sizes": [1, 2]},
                "text": "long text",
                "available": True,
                "published_at": 1_700_000_000_000,
            },
            {"item_id": "b"},
        ]
    )
    a = store.catalog(["a", "a", "missing"])
    assert list(a) == ["a"]
    item = a["a"]
    assert (item.title, item.categories, item.attributes) == (
        "A",
        ["x", "y"],
        {"colour": "red", "sizes": [1, 2]},
    )
    assert item.published_at == 1_700_000_000_000 and not item.deleted
    assert item.text is None  # only when asked for
    assert store.catalog(["a"], with_text=True)["a"].text == "long text"
    b = store.catalog(["b"])["b"]
    assert (b.title, b.categories, b.attributes, b.available, b.published_at) == (
        None,
        [],
        {},
        True,
        None,
    )
    # What a reader gets is its own: changing it changes nothing stored.
    item.categories.append("z")
    item.attributes["colour"] = "blue"
    again = store.catalog(["a"])["a"]
    assert again.categories == ["x", "y"] and again.attributes["colour"] == "red"


def test_deleted_items_stay_known_but_unavailable_until_sent_again(
    store: Store, records: RecordStore
) -> None:
    store.upsert_items([{"item_id": "a", "title": "A"}])
    mark = after(store.catalog_mark())
    assert records.delete_item("a", mark)
    gone = store.catalog()["a"]
    assert gone.deleted and not gone.available and gone.title == "A"
    assert store.item_exists("a") and store.count_items() == 1
    assert ("a", mark) in store.catalog_changes(mark)  # replicas see the tombstone
    store.add_events([ev(1, item="a")])  # an event does not bring it back
    assert store.catalog()["a"].deleted and store.count_events() == 1
    store.upsert_items([{"item_id": "a", "title": "A again"}])
    back = store.catalog()["a"]
    assert not back.deleted and back.available and back.title == "A again"


def test_snapshot_history_and_activity(store: Store) -> None:
    store.add_events(
        [
            EventRecord("1", "u1", "a", "view", None, 3_000),
            EventRecord("2", "u1", "b", "rating", 4.0, 1_000),
            EventRecord("3", "u2", "a", "purchase", None, 2_000),
        ]
    )
    snap = store.snapshot()
    assert snap.timestamps == [1.0, 2.0, 3.0]
    assert snap.user_ids == ["u1", "u2", "u1"]
    assert snap.item_ids == ["b", "a", "a"]
    assert snap.types == ["rating", "purchase", "view"]
    assert snap.values == [4.0, None, None]
    recent = store.snapshot(since_ms=2_000)  # at or after: what serving recounts live
    assert recent.timestamps == [2.0, 3.0] and recent.item_ids == ["a", "a"]
    assert len(store.snapshot(since_ms=3_001)) == 0
    assert store.user_history("u1") == [("a", "view", None), ("b", "rating", 4.0)]
    assert store.user_history("nobody") == []
    assert store.newest_event_ms() == 3_000
    assert sorted(store.item_activity(2_000)) == [
        ("a", "purchase", None, 1),
        ("a", "view", None, 1),
    ]
    assert sorted(store.item_activity(None)) == [
        ("a", "purchase", None, 1),
        ("a", "view", None, 1),
        ("b", "rating", 4.0, 1),
    ]


def test_snapshot_orders_equal_times_by_event_id(store: Store) -> None:
    store.add_events([EventRecord(k, "u", k, "view", None, 5) for k in ("c", "a", "b")])
    assert store.snapshot().item_ids == ["a", "b", "c"]


def test_history_is_newest_first_and_limited(store: Store) -> None:
    # Written out of order, in two batches, beside another user's events.
    store.add_events([ev(i, ts=10_000 - 100 * i) for i in range(0, 20, 2)])
    store.add_events([ev(i, ts=10_000 - 100 * i, item=f"i{i}") for i in range(1, 20, 2)])
    store.add_events([ev(100 + i, user="u2", ts=20_000) for i in range(3)])
    history = store.user_history("u1", limit=5)
    assert [item for item, _, _ in history] == ["a", "i1", "a", "i3", "a"]
    full = store.user_history("u1")
    assert len(full) == 20 and full[:5] == history
    assert store.user_history("u1", limit=0) == []
    assert sorted(store.user_items("u1")) == ["a", *sorted(f"i{i}" for i in range(1, 20, 2))]
    assert store.user_items("u2") == ["a"]


def test_active_users_and_repeat_activity(store: Store) -> None:
    store.add_events(
        [
            EventRecord("1", "old", "a", "view", None, 1_000),
            EventRecord("2", "new", "a", "view", None, 5_000),
            EventRecord("3", "mid", "a", "view", None, 3_000),
            EventRecord("4", "old", "b", "view", None, 4_000),
            EventRecord("5", "tie", "b", "view", None, 5_000),
            EventRecord("6", "mid", "a", "view", None, 3_500),
        ]
    )
    assert store.active_users(10) == ["new", "tie", "old", "mid"]  # ties by user id
    assert store.active_users(2) == ["new", "tie"]
    assert sorted(store.item_activity(3_000)) == [("a", "view", None, 3), ("b", "view", None, 2)]


def test_catalog_watermark(store: Store) -> None:
    store.upsert_items([{"item_id": "a"}, {"item_id": "b"}])
    first = store.catalog_mark()
    assert first > 0
    assert sorted(store.catalog_changes(0)) == [("a", first), ("b", first)]
    after(first)
    store.upsert_items([{"item_id": "c"}])
    store.add_events([ev(1, item="a"), ev(2, item="p")])  # a placeholder is a change too
    second = store.catalog_mark()
    assert second > first
    assert ("p", second) in store.catalog_changes(second)
    assert {k for k, _ in store.catalog_changes(first + 1)} == {"c", "p"}
    assert {k for k, _ in store.catalog_changes(first)} == {"a", "b", "c", "p"}
    assert dict(store.catalog_changes(0))["a"] == first  # an event on a known item is no change


def test_a_second_edit_within_the_same_millisecond_is_a_change(
    store: Store, records: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that applied an edit at its millisecond must see a second edit of that item
    in the same millisecond: the row's ``updated_at`` moves past the first."""
    frozen = now_ms()
    for module in ("smartrec.storage.sql.store", "smartrec.storage.memory.store"):
        monkeypatch.setattr(f"{module}.now_ms", lambda: frozen)
    store.upsert_items([{"item_id": "a", "title": "first"}, {"item_id": "b"}])
    mark = store.catalog_mark()
    assert mark == frozen and dict(store.catalog_changes(mark)) == {"a": frozen, "b": frozen}
    store.upsert_items([{"item_id": "a", "title": "second"}])  # the same millisecond
    changed = dict(store.catalog_changes(mark + 1))
    assert changed == {"a": frozen + 1}, changed
    assert store.catalog(["a"])["a"].title == "second"
    assert records.delete_item("a", frozen)  # a tombstone in that millisecond too
    assert dict(store.catalog_changes(frozen + 2)) == {"a": frozen + 2}
    assert dict(store.catalog_changes(0))["b"] == frozen  # the other row did not move


def test_event_watermark(store: Store) -> None:
    store.add_events([ev(1, user="u1"), ev(2, user="u2")])
    first = store.event_mark()
    assert first > 0
    assert sorted(store.users_with_events_since(first)) == [("u1", first), ("u2", first)]
    after(first)
    store.add_events([ev(3, user="u2"), ev(4, user="u3")])
    store.add_events([ev(1, user="u1")])  # a duplicate is not news
    second = store.event_mark()
    assert second > first
    assert sorted(store.users_with_events_since(second)) == [("u2", second), ("u3", second)]
    assert sorted(store.users_with_events_since(first)) == [
        ("u1", first),
        ("u2", second),
        ("u3", second),
    ]
    assert store.users_with_events_since(second + 1) == []


def test_a_malformed_batch_writes_nothing(store: Store) -> None:
    """Users and items are written before events: a refused event must take them back too."""
    bad = [ev(1, item="new"), EventRecord("e2", "u2", "b", None, None, 5)]  # type: ignore[arg-type]
    with pytest.raises((ValueError, IntegrityError, sqlite3.IntegrityError)):
        store.add_events(bad)
    assert store.count_events() == 0
    assert store.count_users() == 0
    assert store.count_items() == 0


def test_jobs_roundtrip_and_recovery(store: Store) -> None:
    request = {"pipeline": None, "params": {"k": [1, 2]}}
    store.create_job("j1", request)
    job = store.get_job("j1")
    assert job is not None and set(job) == JOB_COLUMNS
    assert job["status"] == "queued" and job["request"] == request
    assert job["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    assert job["created_at"] == job["heartbeat_at"] and job["finished_at"] is None
    job["request"]["pipeline"] = "changed"  # a reader's copy
    assert store.get_job("j1")["request"]["pipeline"] is None  # type: ignore[index]
    store.update_job("j1", status="running", started_at=5, metrics={"ndcg@10": 0.5})
    job = store.get_job("j1")
    assert job is not None and (job["status"], job["started_at"], job["metrics"]) == (
        "running",
        5,
        {"ndcg@10": 0.5},
    )
    store.update_job("missing", status="running")  # nothing to update: no error, no row
    assert store.get_job("missing") is None
    assert store.fail_orphaned_jobs("restarted") == 0  # its process (this one) is alive
    store.create_job("j2", {})
    store.create_job("j3", {})
    child = subprocess.Popen(["true"])  # a process that has exited: its pid is free
    child.wait()
    store.update_job("j2", status="running", worker=f"{socket.gethostname()}:{child.pid}")
    store.update_job("j3", status="running", worker=f"elsewhere:{child.pid}")
    assert store.fail_orphaned_jobs("restarted") == 1
    job = store.get_job("j2")
    assert job is not None and job["status"] == "failed" and job["error"] == "restarted"
    assert job["finished_at"] is not None
    assert store.get_job("j1")["status"] == "running"  # type: ignore[index]
    assert store.get_job("j3")["status"] == "running"  # type: ignore[index]
    assert store.fail_orphaned_jobs("again") == 0  # a failed job is not failed twice
    assert store.unfinished_jobs() == ["j1", "j3"]  # by creation time: what blocks a schedule
    store.update_job("j1", status="succeeded")
    assert store.unfinished_jobs() == ["j3"]


def test_jobs_with_a_stale_heartbeat_are_failed_from_any_host(store: Store) -> None:
    for job in ("old", "fresh", "done"):
        store.create_job(job, {})
        store.update_job(job, status="running", worker="another-host:1")
    store.update_job("old", heartbeat_at=1)  # its process stopped beating long ago
    store.update_job("done", status="succeeded", heartbeat_at=1)
    assert store.fail_orphaned_jobs("gone", stale_after_ms=60_000) == 1
    assert store.get_job("old")["status"] == "failed"  # type: ignore[index]
    assert store.get_job("fresh")["status"] == "running"  # type: ignore[index]
    assert store.get_job("done")["status"] == "succeeded"  # type: ignore[index]
    store.update_job("fresh", heartbeat_at=1)
    store.heartbeat_jobs(["fresh", "done", "missing"])
    store.heartbeat_jobs([])
    beat = store.get_job("fresh")["heartbeat_at"]  # type: ignore[index]
    assert beat is not None and abs(beat - now_ms()) < 60_000
    assert store.get_job("done")["heartbeat_at"] == 1  # type: ignore[index]  # finished


def test_concurrent_batches_with_overlapping_new_users_and_items(store: Store) -> None:
    """Batches racing to create the same users/items neither deadlock nor lose events."""

    def batch(k: int) -> tuple[int, int]:
        rng = np.random.default_rng(k)
        users, items = rng.permutation(50), rng.permutation(50)
        group = k // 8  # eight concurrent batches create the same new ids, in different orders
        events = [
            EventRecord(
                f"b{k}-{j}", f"u{group}-{users[j]}", f"i{group}-{items[j]}", "view", None, j
            )
            for j in range(50)
        ]
        return store.add_events(events)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(batch, range(80)))
    assert sum(a for a, _ in results) == 80 * 50
    assert store.count_events() == 4000
    assert store.count_users() == 500 and len(store.catalog()) == 500


def test_lock_excludes_other_holders_of_the_same_name(store: Store) -> None:
    entered = threading.Event()

    def contender() -> None:
        with store.lock("startup"):
            entered.set()

    with store.lock("startup"):
        thread = threading.Thread(target=contender)
        thread.start()
        # Bounded wait for what must not happen while the lock is held.
        assert not entered.wait(0.3)
        with store.lock("another-name"):  # other names are free
            pass
    thread.join(timeout=30)
    assert entered.is_set()
