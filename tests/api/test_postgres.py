"""The dialect-sensitive parts of the API on a real PostgreSQL (ON CONFLICT, RETURNING, JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    EASE_ONLY,
    World,
    assert_problem,
    load_world,
    open_client,
    post_events,
    runtime,
    train,
)

pytestmark = pytest.mark.integration
T = 1_714_564_800


@pytest.fixture()
def pg_client(pg_url: str, tmp_path: Path, shared_registry: str) -> Iterator[TestClient]:
    with ExitStack() as stack:
        yield open_client(
            stack,
            tmp_path / "home",
            database_url=pg_url,
            registry_url=shared_registry,
            model_name=f"pg_{tmp_path.name}",
            experiment=f"pg_{tmp_path.name}",
        )


def test_ingest_semantics_on_postgres(pg_client: TestClient) -> None:
    client = pg_client
    store = runtime(client).store
    assert store.dialect == "postgresql"
    events = [
        {"event_id": "e1", "user_id": "u1", "item_id": "ghost", "type": "view", "timestamp": T},
        {"event_id": "e1", "user_id": "u1", "item_id": "ghost", "type": "view", "timestamp": T},
        {"user_id": "u2", "item_id": "a", "type": "click", "timestamp": "2024-05-01T12:00:00Z"},
        {"user_id": "u2", "item_id": "a", "type": "click", "timestamp": T},
    ]
    assert post_events(client, events) == {"accepted": 2, "duplicates": 2}
    assert post_events(client, events) == {"accepted": 0, "duplicates": 4}
    assert store.count_events() == 2
    assert store.count_users() == 2
    assert store.catalog(["ghost"])["ghost"].placeholder is True
    client.post("/v1/items", json={"items": [{"item_id": "ghost", "categories": ["c"]}]})
    assert store.catalog(["ghost"])["ghost"].placeholder is False

    # A rejected batch writes nothing, on PostgreSQL too.
    bad = [{"user_id": f"n{k}", "item_id": f"m{k}", "type": "view"} for k in range(4)]
    bad.append({"user_id": "n9", "item_id": "m9", "type": "levitate"})
    assert_problem(client.post("/v1/events", json={"events": bad}), 422)
    assert (store.count_events(), store.count_users(), store.count_items()) == (2, 2, 2)


def test_training_and_serving_on_postgres(pg_client: TestClient, world: World) -> None:
    client = pg_client
    load_world(client, world)
    job = train(client, EASE_ONLY)
    user = world.heaviest_user()
    body = client.get(f"/v1/users/{user}/recommendations", params={"n": 5}).json()
    assert body["model_version"] == job["model_version"]
    assert len(body["items"]) == 5
    assert not {i["item_id"] for i in body["items"]} & world.seen[user]
    assert client.get("/readyz").status_code == 200


def test_nul_in_a_path_id_is_a_422(pg_client: TestClient) -> None:
    post_events(pg_client, [{"user_id": "u", "item_id": "i", "type": "view"}])
    assert_problem(pg_client.get("/v1/users/a%00b/recommendations"), 422)
    assert_problem(pg_client.get("/v1/items/a%00b/similar"), 422)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", '{"events": [{"user_id": "a\\u0000b", "item_id": "i", "type": "view"}]}'),
        ("/v1/items", '{"items": [{"item_id": "x", "title": "a\\u0000b"}]}'),
        ("/v1/items", '{"items": [{"item_id": "y", "attributes": {"a": NaN}}]}'),
        ("/v1/users", '{"users": [{"user_id": "z", "attributes": {"a": Infinity}}]}'),
    ],
    ids=["nul-user-id", "nul-title", "nan-attribute", "infinite-attribute"],
)
def test_values_postgres_cannot_store_are_a_422(
    pg_client: TestClient, path: str, body: str
) -> None:
    response = pg_client.post(path, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 422)
