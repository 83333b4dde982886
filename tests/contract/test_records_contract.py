"""The ``RecordStore`` and ``KeyStore`` ports' contract on memory, SQLite and PostgreSQL: the
read-back API, deletion, erasure and API keys answer alike whichever adapter serves them."""

from __future__ import annotations

import pytest

from smartrec.domain import EventRecord
from smartrec.domain.clock import erasure_key
from smartrec.errors import ValidationFailed
from smartrec.storage import KeyStore, RecordStore, Store

ITEM_COLUMNS = {
    "item_id",
    "title",
    "categories",
    "attributes",
    "text",
    "available",
    "published_at",
    "placeholder",
    "created_at",
    "updated_at",
    "deleted_at",
}
EVENT_COLUMNS = {"event_id", "user_id", "item_id", "type", "value", "ts"}


def ev(i: int, user: str = "u1", item: str = "a", ts: int = 1000) -> EventRecord:
    return EventRecord(f"e{i}", user, item, "view", None, ts + i)


def key_row(key_id: str, created_at: int) -> dict[str, object]:
    return {
        "key_id": key_id,
        "name": None,
        "scopes": "read",
        "secret_sha256": "0" * 64,
        "rate_limit": None,
        "created_at": created_at,
        "revoked_at": None,
    }


def test_items_are_read_back_by_pages_and_category(store: Store, records: RecordStore) -> None:
    store.upsert_items(
        [
            {
                "item_id": f"i{k}",
                "title": f"T{k}",
                "categories": ["even" if k % 2 else "odd", "all"],
                "attributes": {"k": k},
                "text": f"text {k}",
            }
            for k in range(7)
        ]
    )
    store.add_events([ev(1, item="p")])  # a placeholder is listed too
    row = records.get_item("i3")
    assert row is not None and set(row) == ITEM_COLUMNS
    assert (row["title"], row["categories"], row["attributes"], row["text"]) == (
        "T3",
        ["even", "all"],
        {"k": 3},
        "text 3",
    )
    assert row["available"] and not row["placeholder"] and row["deleted_at"] is None
    assert records.get_item("missing") is None
    page = records.list_items(3, category="odd")
    assert [r["item_id"] for r in page.rows] == ["i0", "i2", "i4"]
    rest = records.list_items(3, cursor=page.next_cursor, category="odd")
    assert [r["item_id"] for r in rest.rows] == ["i6"] and rest.next_cursor is None
    everything = records.list_items(100)
    assert [r["item_id"] for r in everything.rows] == [*(f"i{k}" for k in range(7)), "p"]
    assert everything.next_cursor is None
    exact = records.list_items(8)
    assert len(exact.rows) == 8 and exact.next_cursor is None  # no empty page after
    newest = store.catalog_mark()
    assert [r["item_id"] for r in records.list_items(10, updated_since_ms=newest + 1).rows] == []
    assert "p" in [r["item_id"] for r in records.list_items(10, updated_since_ms=newest).rows]
    assert records.list_items(10, category="none").rows == []


def test_deleted_items_are_hidden_from_read_back(store: Store, records: RecordStore) -> None:
    store.upsert_items([{"item_id": f"i{k}", "categories": ["all"]} for k in range(3)])
    assert records.delete_item("i1", 5) and not records.delete_item("i1", 6)
    assert not records.delete_item("missing", 5)
    assert records.get_item("i1") is None and store.catalog(["i1"])["i1"].deleted
    assert [r["item_id"] for r in records.list_items(10, category="all").rows] == ["i0", "i2"]
    store.upsert_items([{"item_id": "i1"}])  # sent again: back
    assert records.get_item("i1") is not None


def test_user_events_are_paged_newest_first(store: Store, records: RecordStore) -> None:
    store.add_events([ev(i, user="gone", ts=-5000 + i * 1000) for i in range(5)] + [ev(9)])
    store.add_events([EventRecord("z", "gone", "b", "view", None, -996)])  # e4's time: id decides
    first = records.user_events("gone", 2)
    assert set(first.rows[0]) == EVENT_COLUMNS
    second = records.user_events("gone", 2, first.next_cursor)
    third = records.user_events("gone", 2, second.next_cursor)
    seen = [r["event_id"] for r in first.rows + second.rows + third.rows]
    assert seen == ["z", "e4", "e3", "e2", "e1", "e0"]
    assert third.next_cursor is None
    assert first.next_cursor is not None and first.next_cursor.startswith("-")  # before 1970
    with pytest.raises(ValidationFailed):
        records.user_events("gone", 2, "not-a-cursor")
    user = records.get_user("gone")
    assert user is not None and user["events"] == 6
    assert {"user_id", "attributes", "created_at", "updated_at"} <= set(user)
    assert records.get_user("nobody") is None
    assert records.user_events("nobody", 10).rows == []


def test_erasure_deletes_the_user_and_the_events(store: Store, records: RecordStore) -> None:
    store.add_events([ev(i, user="gone") for i in range(5)] + [ev(9, user="stays")])
    assert records.erase_user("gone", 1234) == (True, 5)
    assert records.user_events("gone", 10).rows == [] and records.get_user("gone") is None
    assert store.user_history("gone") == [] and store.count_events() == 1
    assert store.snapshot().user_ids == ["stays"]
    assert store.catalog(["a"])["a"].item_id == "a"  # items stay
    assert store.erasures() == {erasure_key("gone"): 1234}
    assert store.erasures(since_ms=1234) == {erasure_key("gone"): 1234}
    assert store.erasures(since_ms=2000) == {}
    assert records.erase_user("gone", 5000) == (False, 0)  # nothing left: nothing recorded
    assert store.erasures() == {erasure_key("gone"): 1234}
    store.upsert_users([{"user_id": "attrs-only"}])
    assert records.erase_user("attrs-only", 6000) == (True, 0)
    assert store.erasures(since_ms=6000) == {erasure_key("attrs-only"): 6000}
    store.add_events([ev(20, user="gone")])  # erased users may come back as new ones
    assert records.erase_user("gone", 7000) == (True, 1)
    assert store.erasures()[erasure_key("gone")] == 7000


def test_api_keys(keys: KeyStore) -> None:
    assert keys.all() == [] and keys.count_active() == 0 and keys.get("abc") is None
    keys.add(key_row("abc", created_at=2))
    keys.add(key_row("abb", created_at=2))
    keys.add(key_row("zzz", created_at=1))
    assert [k["key_id"] for k in keys.all()] == ["zzz", "abb", "abc"]
    assert keys.get("abc") == key_row("abc", created_at=2)
    assert keys.count_active() == 3 and keys.revoke("abc", 2) and not keys.revoke("abc", 3)
    assert not keys.revoke("missing", 3)
    assert keys.get("abc")["revoked_at"] == 2 and keys.count_active() == 2  # type: ignore[index]
