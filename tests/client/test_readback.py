"""Read-back, erasure, keys and ``fields``: GET/DELETE items and users, user events, /v1/keys."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pytest

from smartrec.client import NotFound, SmartRec
from smartrec.schemas import EventOut, ItemIn, ItemOut
from tests.client.conftest import CountingTransport, Trained


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def test_get_item(client: SmartRec, trained: Trained) -> None:
    source = trained.world.items[0]
    item = client.items.get(source["item_id"])
    assert isinstance(item, ItemOut)
    assert item.item_id == source["item_id"]
    assert item.categories == list(source["categories"])
    assert item.title == source.get("title")
    with pytest.raises(NotFound):
        client.items.get(f"nope-{_tag()}")


def test_item_times_and_odd_ids_round_trip(client: SmartRec) -> None:
    odd = f"sku/{_tag()} ?#"
    item = ItemIn.model_validate({"item_id": odd, "published_at": "2024-05-01T12:00:00Z"})
    client.items.upsert([item])
    back = client.items.get(odd)
    assert back.item_id == odd
    assert back.published_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_list_items_pages_through_everything(trained: Trained) -> None:
    transport = CountingTransport()
    with SmartRec(trained.url, transport=transport) as client:
        listed = list(client.items.list(limit=7))
        ids = [i.item_id for i in listed]
        assert len(ids) == len(set(ids))
        assert {i["item_id"] for i in trained.world.items} <= set(ids)
        requests = len(transport.requests)
        pages = list(client.items.pages(limit=7))
        assert len(pages) == requests >= math.ceil(len(ids) / 7)
        assert all(len(p.items) <= 7 for p in pages)
        assert sum(len(p.items) for p in pages) == len(ids)
        assert pages[-1].next_cursor is None

        category = trained.world.categories[0]
        in_category = {i.item_id for i in client.items.list(category=category, limit=10)}
        assert trained.world.items_of(category) <= in_category
        assert all(category in client.items.get(i).categories for i in list(in_category)[:5])

        future = datetime(2999, 1, 1, tzinfo=UTC)
        assert list(client.items.list(updated_since=future)) == []
        past = datetime(2000, 1, 1, tzinfo=UTC)
        assert len(list(client.items.list(updated_since=past, limit=50))) == len(ids)


def test_delete_item(client: SmartRec) -> None:
    item_id = f"del/{_tag()}"
    client.items.upsert({"item_id": item_id, "title": "doomed"})
    deleted = client.items.delete(item_id)
    assert deleted.item_id == item_id and deleted.deleted
    with pytest.raises(NotFound):
        client.items.get(item_id)


def test_get_user_and_their_events(client: SmartRec, trained: Trained) -> None:
    world = trained.world
    user_id = world.heaviest_user()
    expected = world.events_of(user_id)
    user = client.users.get(user_id)
    assert user.user_id == user_id and user.events == len(expected)

    events = list(client.users.events(user_id, limit=25))
    assert all(isinstance(e, EventOut) for e in events)
    assert sorted(e.event_id for e in events) == sorted(e["event_id"] for e in expected)
    times = [e.timestamp for e in events]
    assert times == sorted(times, reverse=True)  # newest first
    pages = list(client.users.event_pages(user_id, limit=25))
    assert len(pages) >= math.ceil(len(expected) / 25)
    assert all(len(p.events) <= 25 for p in pages)


def test_erase_user(client: SmartRec, trained: Trained) -> None:
    user = f"gone/{_tag()}"
    items = [i["item_id"] for i in trained.world.items[:3]]
    client.users.upsert({"user_id": user, "attributes": {"plan": "free"}})
    client.events.send([{"user_id": user, "item_id": i, "type": "view"} for i in items])
    assert len(list(client.users.events(user))) == 3
    erased = client.users.delete(user)
    assert (erased.user_id, erased.erased_events, erased.user_deleted) == (user, 3, True)
    with pytest.raises(NotFound):  # nothing is left of the user
        client.users.get(user)
    with pytest.raises(NotFound):
        list(client.users.events(user))
    with pytest.raises(NotFound):
        client.users.delete(user)


def test_api_keys(client: SmartRec) -> None:
    name = f"ci-{_tag()}"
    created = client.keys.create(["read", "ingest"], name=name)
    assert created.token and created.name == name
    assert sorted(created.scopes) == ["ingest", "read"]
    listed = {k.key_id: k for k in client.keys.list().keys}
    assert created.key_id in listed and listed[created.key_id].revoked_at is None
    assert not hasattr(listed[created.key_id], "token")
    revoked = client.keys.revoke(created.key_id)
    assert revoked.key_id == created.key_id and revoked.revoked_at is not None
    after = {k.key_id: k for k in client.keys.list().keys}
    assert after[created.key_id].revoked_at is not None
    with pytest.raises(NotFound):
        client.keys.revoke("0123456789abcdef")


def test_fields_add_item_details(client: SmartRec, trained: Trained) -> None:
    world = trained.world
    user = world.heaviest_user()
    out = client.users.recommendations(user, n=3, fields=["title", "categories"])
    assert out.items and all(i.categories is not None for i in out.items)
    assert all(i.attributes is None for i in out.items)
    popular = client.popular(3, fields=("title", "categories", "attributes"))
    assert all(i.attributes is not None for i in popular.items)
    item = next(iter(world.seen[user]))
    similar = client.items.similar(item, n=3, fields="categories")
    for i in similar.items:
        assert i.categories == world.item_categories[i.item_id]
