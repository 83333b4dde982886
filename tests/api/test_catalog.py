"""Reading the catalogue back, item deletion, user erasure, and ``fields=`` on answers."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.conftest import (
    EASE_ONLY,
    AppFactory,
    Trained,
    World,
    assert_problem,
    item_ids,
    load_world,
    post_events,
    runtime,
    train,
)


def all_pages(client: TestClient, url: str, key: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body[key]
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


def test_items_read_back_paged_and_filtered(trained: Trained) -> None:
    client, world = trained.client, trained.world
    # The app is shared: other tests may have added catalogue-only items; the world's own
    # items must all be there, and every page in key order.
    world_ids = {i["item_id"] for i in world.items}
    items = all_pages(client, "/v1/items", "items", limit=7)
    read = [i["item_id"] for i in items]
    assert read == sorted(read) and [i for i in read if i in world_ids] == sorted(world_ids)
    one = client.get(f"/v1/items/{world.items[3]['item_id']}").json()
    sent = world.items[3]
    assert one["title"] == sent["title"] and one["categories"] == sent["categories"]
    assert one["attributes"] == sent["attributes"]
    assert one["created_at"].endswith("Z") or "+00:00" in one["created_at"]
    category = world.categories[0]
    in_cat = all_pages(client, "/v1/items", "items", limit=5, category=category)
    assert {i["item_id"] for i in in_cat} & world_ids == world.items_of(category)
    assert all_pages(client, "/v1/items", "items", updated_since="2999-01-01T00:00:00Z") == []
    assert len(all_pages(client, "/v1/items", "items", updated_since=0)) >= len(world.items)
    assert_problem(client.get("/v1/items/no-such-item"), 404)
    ids = sorted(i["item_id"] for i in world.items)
    after = client.get("/v1/items", params={"cursor": ids[10], "limit": 3}).json()
    page = [i["item_id"] for i in after["items"]]
    assert len(page) == 3 and all(i > ids[10] for i in page) and page == sorted(page)
    assert [i for i in page if i in world_ids] == ids[11 : 11 + len(set(page) & world_ids)]
    user = world.heaviest_user()
    assert_problem(client.get(f"/v1/users/{user}/events", params={"cursor": "nope"}), 422)
    assert_problem(client.get("/v1/items", params={"updated_since": "yesterday"}), 422)


def test_user_and_events_newest_first(trained: Trained) -> None:
    client, world = trained.client, trained.world
    user = world.heaviest_user()
    got = client.get(f"/v1/users/{user}").json()
    mine = [e for e in world.events if e["user_id"] == user]
    assert got["user_id"] == user and got["events"] == len(mine)
    events = all_pages(client, f"/v1/users/{user}/events", "events", limit=4)
    assert len(events) == len(mine)
    assert {e["event_id"] for e in events} == {e["event_id"] for e in mine}
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert_problem(client.get("/v1/users/nobody-at-all"), 404)
    assert_problem(client.get("/v1/users/nobody-at-all/events"), 404)


def test_fields_on_every_answer_that_lists_items(trained: Trained) -> None:
    client, world = trained.client, trained.world
    titles = {i["item_id"]: i["title"] for i in world.items}
    user, item = world.heaviest_user(), world.items[0]["item_id"]
    answers = [
        client.get(
            f"/v1/users/{user}/recommendations", params={"n": 3, "fields": "title,categories"}
        ),
        client.get(f"/v1/items/{item}/similar", params={"n": 3, "fields": "title,categories"}),
        client.get("/v1/popular", params={"n": 3, "fields": "title,categories"}),
        client.post(
            "/v1/sessions/recommendations?fields=title,categories",
            json={"item_ids": [item], "n": 3},
        ),
        client.post(
            "/v1/rankings?fields=title,categories",
            json={"user_id": user, "item_ids": list(titles)[:4]},
        ),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        for entry in response.json()["items"]:
            assert entry["title"] == titles[entry["item_id"]]
            assert entry["categories"] == world.item_categories[entry["item_id"]]
            assert "attributes" not in entry
    plain = client.get("/v1/popular", params={"n": 3}).json()["items"]
    assert all("title" not in e for e in plain)
    assert_problem(client.get("/v1/popular", params={"fields": "title,price"}), 422)


def test_deleted_item_is_gone_from_every_answer_at_once(
    make_client: AppFactory, world: World
) -> None:
    client = make_client()
    load_world(client, world)
    train(client, EASE_ONLY)
    user = world.heaviest_user()
    top = item_ids(client.get(f"/v1/users/{user}/recommendations", params={"n": 5}))
    popular = item_ids(client.get("/v1/popular", params={"n": 5}))
    victim = popular[0]
    other = top[0]
    assert_problem(client.delete("/v1/items/never-existed"), 404)
    deleted = client.delete(f"/v1/items/{victim}")
    assert deleted.status_code == 200 and deleted.json() == {"item_id": victim, "deleted": True}
    assert_problem(client.get(f"/v1/items/{victim}"), 404)
    assert victim not in {
        i["item_id"] for i in client.get("/v1/items", params={"limit": 1000}).json()["items"]
    }
    assert victim not in item_ids(client.get("/v1/popular", params={"n": 20}))
    assert victim not in item_ids(client.get(f"/v1/users/{user}/recommendations", params={"n": 50}))
    assert victim not in item_ids(client.get(f"/v1/items/{other}/similar", params={"n": 50}))
    session = client.post("/v1/sessions/recommendations", json={"item_ids": [other], "n": 50})
    assert victim not in item_ids(session)
    ranked = client.post("/v1/rankings", json={"user_id": user, "item_ids": [victim, other]})
    assert item_ids(ranked) == [other]
    assert_problem(client.delete(f"/v1/items/{victim}"), 404)  # once
    # Events naming it do not bring it back; sending the item again does.
    post_events(client, [{"user_id": user, "item_id": victim, "type": "view"}])
    assert_problem(client.get(f"/v1/items/{victim}"), 404)
    again = next(i for i in world.items if i["item_id"] == victim)
    assert client.post("/v1/items", json={"items": [again]}).status_code == 200
    assert client.get(f"/v1/items/{victim}").status_code == 200


def test_erasure_leaves_nothing_of_the_user(make_client: AppFactory, world: World) -> None:
    client = make_client()
    load_world(client, world)
    user = world.heaviest_user()
    client.post("/v1/users", json={"users": [{"user_id": user, "attributes": {"age": 31}}]})
    train(client, EASE_ONLY)
    before = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
    assert before.status_code == 200
    n_events = sum(e["user_id"] == user for e in world.events)
    erased = client.delete(f"/v1/users/{user}")
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"user_id": user, "erased_events": n_events, "user_deleted": True}
    # Nothing of the user is left in any table but the erasure record itself.
    store = runtime(client).store
    with store.engine.connect() as conn:
        tables = [
            r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        ]
        for table in tables:  # the erasure record keeps a hash of the id, not the id
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).fetchall()
            assert not [r for r in rows if user in {str(v) for v in r}], table
    assert_problem(client.get(f"/v1/users/{user}"), 404)
    assert_problem(client.get(f"/v1/users/{user}/events"), 404)
    assert_problem(client.delete(f"/v1/users/{user}"), 404)
    # Answers no longer use what the model learnt of the user: the answer is a cold start's.
    after = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
    cold = client.get("/v1/users/a-brand-new-user/recommendations", params={"n": 5})
    assert item_ids(after) == item_ids(cold)
    # No later training sees the erased events.
    job = train(client, EASE_ONLY)
    assert job["result"]["n_events"] == len(world.events) - n_events


def test_erasure_reaches_every_replica_and_restarts(
    make_client: AppFactory, world: World, tmp_path_factory: Any
) -> None:
    """A factor model keeps a learnt vector per user: after erasure no process uses it, the
    one that erased, another on the same database (at its event poll), or one started later."""
    shared = {"home": tmp_path_factory.mktemp("shared-home"), "model_name": "erasure_m"}
    shared["experiment"] = "erasure_e"
    first = make_client(**shared)
    load_world(first, world)
    train(first, {"als": {"factors": 16, "iterations": 5}})
    second = make_client(**shared)  # another replica: loads the same champion
    user = world.heaviest_user()
    url = f"/v1/users/{user}/recommendations"
    before = item_ids(second.get(url, params={"n": 5}))
    assert first.delete(f"/v1/users/{user}").status_code == 200
    cold = item_ids(first.get("/v1/users/someone-new/recommendations", params={"n": 5}))
    assert before != cold  # the model did know the user
    assert item_ids(first.get(url, params={"n": 5})) == cold
    assert runtime(second).service.refresh_erasures() == 1  # its watcher's or poll's call
    assert item_ids(second.get(url, params={"n": 5})) == cold
    restarted = make_client(**shared)
    assert item_ids(restarted.get(url, params={"n": 5})) == cold
