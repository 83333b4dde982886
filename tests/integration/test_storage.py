"""The SQL adapter behaves the same on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import socket
import subprocess
import time

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from smartrec.domain import EventRecord
from smartrec.storage.sql import SqlStore
from smartrec.storage.sql.migrate import current, downgrade
from smartrec.storage.sql.schema import VERSION_TABLE, metadata

pytestmark = pytest.mark.integration


def ev(
    i: int, user: str = "u1", item: str = "a", type_: str = "view", ts: int = 1000
) -> EventRecord:
    return EventRecord(f"e{i}", user, item, type_, None, ts + i)


def test_migrations_from_empty_match_the_models(db_url: str) -> None:
    store = SqlStore(db_url)
    assert inspect(store.engine).get_table_names() == []
    store.migrate()
    assert current(store.engine) == "0004"
    assert {"items", "users", "events", "training_jobs", "api_keys", "user_erasures"} <= set(
        inspect(store.engine).get_table_names()
    )
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []
    store.migrate()  # idempotent
    downgrade(store.engine, "base")
    assert "events" not in inspect(store.engine).get_table_names()
    store.close()


def test_events_are_idempotent_and_create_users_and_placeholders(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    batch = [ev(i, item="a" if i % 2 else "b") for i in range(6)]
    assert store.add_events(batch) == (6, 0)
    assert store.add_events(batch) == (0, 6)
    assert store.add_events([*batch[:2], ev(99), ev(99)]) == (1, 3)
    assert store.count_events() == 7
    catalog = store.catalog()
    assert set(catalog) == {"a", "b"}
    assert all(item.placeholder for item in catalog.values())
    assert store.count_users() == 1
    store.upsert_items([{"item_id": "a", "title": "A", "categories": ["x"]}])
    assert store.catalog(["a"])["a"].placeholder is False
    assert store.catalog(["a"])["a"].categories == ["x"]
    store.close()


def test_upserts_replace_and_last_row_wins(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    store.upsert_items(
        [
            {"item_id": "a", "title": "first", "categories": ["x"], "attributes": {"y": 1}},
            {"item_id": "a", "title": "second", "categories": ["z"], "available": False},
        ]
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
    assert created is not None and abs(created - time.time() * 1000) < 60_000
    store.add_events([ev(1, user="u", item="p")])
    placeholder_born = store.catalog(["p"])["p"].created_at
    time.sleep(0.01)
    store.upsert_items([{"item_id": "a", "title": "third"}, {"item_id": "p", "title": "P"}])
    after = store.catalog(["a", "p"])
    assert after["a"].title == "third" and after["a"].created_at == created
    assert after["p"].created_at == placeholder_born is not None
    assert store.upsert_users([{"user_id": "u", "attributes": {"age": 3}}]) == 1
    assert store.upsert_users([{"user_id": "u", "attributes": {"age": 4}}]) == 1
    assert store.count_users() == 1
    store.close()


def test_snapshot_history_and_activity(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    store.add_events(
        [
            EventRecord("1", "u1", "a", "view", None, 3_000),
            EventRecord("2", "u1", "b", "rating", 4.0, 1_000),
            EventRecord("3", "u2", "a", "purchase", None, 2_000),
        ]
    )
    snap = store.snapshot()
    assert snap.timestamps == [1.0, 2.0, 3.0]
    assert snap.item_ids == ["b", "a", "a"]
    assert snap.values == [4.0, None, None]
    assert store.user_history("u1") == [("a", "view", None), ("b", "rating", 4.0)]
    assert store.user_history("nobody") == []
    assert store.newest_event_ms() == 3_000
    assert sorted(store.item_activity(2_000)) == [
        ("a", "purchase", None, 1),
        ("a", "view", None, 1),
    ]
    store.close()


def test_a_failed_batch_writes_nothing(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    bad = [ev(1), EventRecord("e2", "u1", "x" * 300, "view", None, 5)]  # item id too long for PG
    if store.dialect == "sqlite":  # SQLite does not enforce VARCHAR length: use a NULL instead
        bad = [ev(1), EventRecord("e2", "u1", None, "view", None, 5)]  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 - the driver's own integrity/data error
        store.add_events(bad)
    assert store.count_events() == 0
    assert store.count_users() == 0
    store.close()


def test_jobs_roundtrip_and_recovery(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    store.create_job("j1", {"pipeline": None})
    assert store.get_job("j1")["status"] == "queued"  # type: ignore[index]
    store.update_job("j1", status="running")
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
    assert store.get_job("j1")["status"] == "running"  # type: ignore[index]
    assert store.get_job("j3")["status"] == "running"  # type: ignore[index]
    assert store.get_job("missing") is None
    store.close()


def test_concurrent_batches_with_overlapping_new_users_and_items(db_url: str) -> None:
    """Batches racing to create the same users/items neither deadlock nor lose events."""
    from concurrent.futures import ThreadPoolExecutor

    store = SqlStore(db_url)
    store.migrate()

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
    store.close()


def test_jobs_with_a_stale_heartbeat_are_failed_from_any_host(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    for job in ("old", "fresh"):
        store.create_job(job, {})
        store.update_job(job, status="running", worker="another-host:1")
    store.update_job("old", heartbeat_at=1)  # its process stopped beating long ago
    assert store.fail_orphaned_jobs("gone", stale_after_ms=60_000) == 1
    assert store.get_job("old")["status"] == "failed"  # type: ignore[index]
    assert store.get_job("fresh")["status"] == "running"  # type: ignore[index]
    store.heartbeat_jobs(["fresh"])
    beat = store.get_job("fresh")["heartbeat_at"]  # type: ignore[index]
    assert beat is not None and beat > 1
    store.close()


def test_read_back_deletion_erasure_and_keys(db_url: str) -> None:
    """The read-back, deletion, erasure and key tables on both databases (PostgreSQL's
    category filter is a jsonb containment)."""
    from smartrec.domain.clock import erasure_key
    from smartrec.storage.sql.keys import SqlKeyStore
    from smartrec.storage.sql.records import RecordStore

    store = SqlStore(db_url)
    store.migrate()
    records = RecordStore(store)
    store.upsert_items(
        [
            {
                "item_id": f"i{k}",
                "title": f"T{k}",
                "categories": ["even" if k % 2 else "odd", "all"],
            }
            for k in range(7)
        ]
    )
    page = records.list_items(3, category="odd")
    assert [r["item_id"] for r in page.rows] == ["i0", "i2", "i4"]
    rest = records.list_items(3, cursor=page.next_cursor, category="odd")
    assert [r["item_id"] for r in rest.rows] == ["i6"] and rest.next_cursor is None
    assert records.delete_item("i2", 5) and not records.delete_item("i2", 6)
    assert records.get_item("i2") is None and store.catalog(["i2"])["i2"].deleted
    assert "i2" not in [r["item_id"] for r in records.list_items(10, category="all").rows]
    store.add_events([ev(i, user="gone", ts=-5000 + i * 1000) for i in range(5)] + [ev(9)])
    first = records.user_events("gone", 2)
    second = records.user_events("gone", 2, first.next_cursor)
    third = records.user_events("gone", 2, second.next_cursor)
    seen = [r["event_id"] for r in first.rows + second.rows + third.rows]
    assert seen == ["e4", "e3", "e2", "e1", "e0"] and third.next_cursor is None
    assert first.next_cursor.startswith("-")  # before 1970: the cursor still works
    assert records.erase_user("gone", 1234) == (True, 5)
    assert records.user_events("gone", 10).rows == [] and records.get_user("gone") is None
    assert store.erasures() == {erasure_key("gone"): 1234}
    assert store.erasures(since_ms=2000) == {}
    keys = SqlKeyStore(store)
    keys.add(
        {
            "key_id": "abc",
            "name": None,
            "scopes": "read",
            "secret_sha256": "0" * 64,
            "rate_limit": None,
            "created_at": 1,
            "revoked_at": None,
        }
    )
    assert keys.count_active() == 1 and keys.revoke("abc", 2) and not keys.revoke("abc", 3)
    assert keys.get("abc")["revoked_at"] == 2 and keys.count_active() == 0  # type: ignore[index]
    store.close()
