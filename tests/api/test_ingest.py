"""POST /v1/items, /v1/users, /v1/events: happy paths, counts, idempotency, placeholders."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api.conftest import post_events, runtime

T = 1_714_564_800  # 2024-05-01T12:00:00Z
T_ISO = "2024-05-01T12:00:00Z"


def ev(user: str, item: str, kind: str = "view", **extra: object) -> dict[str, object]:
    return {"user_id": user, "item_id": item, "type": kind, **extra}


def test_items_upsert_counts_and_replaces(client: TestClient) -> None:
    store = runtime(client).store
    items = [
        {"item_id": "a", "title": "A", "categories": ["books"], "attributes": {"price": 3.5}},
        {"item_id": "b", "title": "B", "available": False, "published_at": T_ISO},
        {"item_id": "c", "text": "plain", "published_at": T},
    ]
    response = client.post("/v1/items", json={"items": items})
    assert response.status_code == 200
    assert response.json() == {"upserted": 3}
    assert store.count_items() == 3
    catalog = store.catalog()
    assert catalog["a"].categories == ["books"]
    assert catalog["a"].attributes == {"price": 3.5}
    assert catalog["b"].available is False
    assert not any(item.placeholder for item in catalog.values())

    # An upsert replaces every field of an existing item; no new row.
    response = client.post("/v1/items", json={"items": [{"item_id": "a", "title": "A2"}]})
    assert response.json() == {"upserted": 1}
    assert store.count_items() == 3
    again = store.catalog(["a"])["a"]
    assert again.title == "A2"
    assert again.categories == []


def test_items_empty_batch(client: TestClient) -> None:
    response = client.post("/v1/items", json={"items": []})
    assert response.status_code == 200
    assert response.json() == {"upserted": 0}


def test_users_upsert_counts(client: TestClient) -> None:
    store = runtime(client).store
    users = [{"user_id": "u1", "attributes": {"country": "fr"}}, {"user_id": "u2"}]
    response = client.post("/v1/users", json={"users": users})
    assert response.status_code == 200
    assert response.json() == {"upserted": 2}
    assert store.count_users() == 2
    response = client.post("/v1/users", json={"users": [{"user_id": "u1"}, {"user_id": "u3"}]})
    assert response.json() == {"upserted": 2}
    assert store.count_users() == 3


def test_events_accepted_and_stored(client: TestClient) -> None:
    store = runtime(client).store
    events = [
        ev("u1", "a", "view", timestamp=T),
        ev("u1", "b", "purchase", timestamp=T + 1),
        ev("u2", "a", "rating", value=4.5, timestamp=T + 2),
        ev("u2", "c", "click"),  # no timestamp: the server's clock
    ]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202
    assert response.json() == {"accepted": 4, "duplicates": 0}
    assert store.count_events() == 4
    assert [h[:2] for h in store.user_history("u1")] == [("b", "purchase"), ("a", "view")]
    assert store.user_history("u2")[-1] == ("a", "rating", 4.5)


def test_resent_batch_with_event_ids_counts_as_duplicates(client: TestClient) -> None:
    store = runtime(client).store
    events = [ev("u1", f"i{k}", "view", event_id=f"e{k}", timestamp=T + k) for k in range(5)]
    assert post_events(client, events) == {"accepted": 5, "duplicates": 0}
    assert post_events(client, events) == {"accepted": 0, "duplicates": 5}
    # Same ids with different content: still the same events (the id decides).
    changed = [{**e, "type": "click"} for e in events[:2]] + [
        ev("u1", "new", "view", event_id="e-new", timestamp=T)
    ]
    assert post_events(client, changed) == {"accepted": 1, "duplicates": 2}
    assert store.count_events() == 6


def test_events_without_id_dedupe_on_content(client: TestClient) -> None:
    store = runtime(client).store
    events = [ev("u1", "a", "view", timestamp=T), ev("u1", "a", "click", timestamp=T)]
    assert post_events(client, events) == {"accepted": 2, "duplicates": 0}
    assert post_events(client, events) == {"accepted": 0, "duplicates": 2}
    # Any differing field (time, item, user) makes another event.
    others = [
        ev("u1", "a", "view", timestamp=T + 1),
        ev("u1", "b", "view", timestamp=T),
        ev("u2", "a", "view", timestamp=T),
    ]
    assert post_events(client, others) == {"accepted": 3, "duplicates": 0}
    assert store.count_events() == 5


def test_same_instant_as_iso_and_epoch_is_one_event(client: TestClient) -> None:
    """The deterministic id is computed on the parsed time, not on its spelling."""
    events = [
        ev("u1", "a", "view", timestamp=T_ISO),
        ev("u1", "a", "view", timestamp=T),
        ev("u1", "a", "view", timestamp=float(T)),
        ev("u1", "a", "view", timestamp="2024-05-01T14:00:00+02:00"),
    ]
    assert post_events(client, events) == {"accepted": 1, "duplicates": 3}


def test_duplicate_ids_inside_one_batch(client: TestClient) -> None:
    store = runtime(client).store
    events = [
        ev("u1", "a", "view", event_id="x", timestamp=T),
        ev("u1", "b", "view", event_id="y", timestamp=T),
        ev("u1", "a", "view", event_id="x", timestamp=T),
        ev("u2", "c", "click", event_id="x", timestamp=T + 5),
    ]
    assert post_events(client, events) == {"accepted": 2, "duplicates": 2}
    assert store.count_events() == 2
    # The first row with an id wins.
    assert store.user_history("u2") == []


def test_iso_and_epoch_timestamps_are_accepted(client: TestClient) -> None:
    store = runtime(client).store
    stamps: list[object] = [
        T_ISO,
        "2024-05-01T12:00:01+00:00",
        "2024-05-01T12:00:02",  # naive: UTC
        "2024-05-01T12:00:03.500Z",
        T + 4,
        T + 5.25,
        str(T + 6),
    ]
    events = [ev("u1", f"i{k}", "view", timestamp=s) for k, s in enumerate(stamps)]
    assert post_events(client, events) == {"accepted": len(stamps), "duplicates": 0}
    snapshot = store.snapshot()
    by_item = dict(zip(snapshot.item_ids, snapshot.timestamps, strict=True))
    expected = [T, T + 1, T + 2, T + 3.5, T + 4, T + 5.25, T + 6]
    assert [by_item[f"i{k}"] for k in range(len(stamps))] == expected


def test_event_without_timestamp_uses_server_time(client: TestClient) -> None:
    before = datetime.now(UTC).timestamp()
    post_events(client, [ev("u1", "a")])
    after = datetime.now(UTC).timestamp()
    (stamp,) = runtime(client).store.snapshot().timestamps
    assert before - 1 <= stamp <= after + 1


def test_unknown_user_created_and_unknown_item_placeholder(client: TestClient) -> None:
    store = runtime(client).store
    client.post("/v1/items", json={"items": [{"item_id": "known", "title": "Known"}]})
    assert store.count_users() == 0
    post_events(client, [ev("newbie", "known", timestamp=T), ev("newbie", "ghost", timestamp=T)])
    assert store.count_users() == 1
    catalog = store.catalog(["known", "ghost"])
    assert catalog["known"].placeholder is False
    assert catalog["known"].title == "Known"  # an event never overwrites a real item
    assert catalog["ghost"].placeholder is True
    assert catalog["ghost"].title is None

    # An upsert of the placeholder makes it a real item; its events stay.
    response = client.post(
        "/v1/items", json={"items": [{"item_id": "ghost", "title": "Ghost", "categories": ["x"]}]}
    )
    assert response.json() == {"upserted": 1}
    ghost = store.catalog(["ghost"])["ghost"]
    assert ghost.placeholder is False
    assert ghost.title == "Ghost"
    assert ghost.categories == ["x"]
    assert store.count_items() == 2
    assert store.count_events() == 2
    # Another event on it leaves it real.
    post_events(client, [ev("other", "ghost", timestamp=T + 1)])
    assert store.catalog(["ghost"])["ghost"].placeholder is False


def test_event_ids_and_fields_are_stripped(client: TestClient) -> None:
    """Surrounding blanks do not make a second id."""
    assert post_events(client, [ev("u1", "a", event_id="e1", timestamp=T)])["accepted"] == 1
    assert post_events(client, [ev(" u1 ", " a ", event_id=" e1 ", timestamp=T)]) == {
        "accepted": 0,
        "duplicates": 1,
    }


def test_ingest_metrics_count_events(client: TestClient) -> None:
    post_events(client, [ev("u1", "a", event_id="m1"), ev("u1", "b", event_id="m2")])
    post_events(client, [ev("u1", "a", event_id="m1")])
    text = client.get("/metrics").text
    assert "smartrec_events_accepted_total 2.0" in text
    assert "smartrec_events_duplicate_total 1.0" in text
