"""Every bad input is an RFC 9457 problem (never a 500) and a rejected batch writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, assert_problem, error_fields, post_events, runtime

T = 1_714_564_800


def good(k: int) -> dict[str, Any]:
    return {"user_id": f"u{k}", "item_id": f"i{k}", "type": "view", "timestamp": T + k}


def batch_with(index: int, row: dict[str, Any], size: int = 6) -> dict[str, Any]:
    rows = [good(k) for k in range(size)]
    rows[index] = row
    return {"events": rows}


def counts(client: TestClient) -> tuple[int, int, int]:
    store = runtime(client).store
    return store.count_events(), store.count_users(), store.count_items()


@pytest.fixture()
def seeded(client: TestClient) -> TestClient:
    """An app holding a few events, so that 'nothing written' is checked against a non-empty log."""
    post_events(client, [good(100), good(101)])
    return client


BAD_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, row at index 3, field named, words expected in detail)
    ("missing user", {"item_id": "i", "type": "view"}, "events[3].user_id", "required"),
    ("empty user", {**good(3), "user_id": ""}, "events[3].user_id", "at least 1"),
    ("blank user", {**good(3), "user_id": "   "}, "events[3].user_id", "at least 1"),
    ("long item", {**good(3), "item_id": "x" * 257}, "events[3].item_id", "at most 256"),
    ("int user", {**good(3), "user_id": 42}, "events[3].user_id", "string"),
    ("list item", {**good(3), "item_id": ["a"]}, "events[3].item_id", "string"),
    ("text value", {**good(3), "value": "high"}, "events[3].value", "number"),
    ("extra field", {**good(3), "colour": "red"}, "events[3].colour", "not permitted"),
    ("bad iso", {**good(3), "timestamp": "yesterday"}, "events[3].timestamp", "ISO 8601"),
    ("bad date", {**good(3), "timestamp": "2024-13-45T00:00:00Z"}, "events[3].timestamp", "ISO"),
    ("before year 1", {**good(3), "timestamp": -7e10}, "events[3].timestamp", "out of range"),
    ("year 10000", {**good(3), "timestamp": 253_402_400_000}, "events[3].timestamp", "range"),
    ("year 3001", {**good(3), "timestamp": 32_600_000_000}, "events[3].timestamp", "ahead"),
    ("bool ts", {**good(3), "timestamp": True}, "events[3].timestamp", "boolean"),
    ("object ts", {**good(3), "timestamp": {"s": 1}}, "events[3].timestamp", "ISO 8601"),
    ("null type", {**good(3), "type": None}, "events[3].type", "string"),
    ("row not object", "view", "events[3]", "object"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(
    ("row", "field", "words"), [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS]
)
def test_bad_event_row_names_index_and_field(
    seeded: TestClient, row: dict[str, Any], field: str, words: str
) -> None:
    before = counts(seeded)
    response = seeded.post("/v1/events", json=batch_with(3, row))
    problem = assert_problem(response, 422)
    assert problem["detail"].startswith(field), problem
    assert words.lower() in problem["detail"].lower(), problem
    assert field in error_fields(problem)
    assert problem["errors"][0]["index"] == 3
    assert problem["instance"] == "/v1/events"
    assert counts(seeded) == before


def test_every_bad_row_is_listed(seeded: TestClient) -> None:
    rows = [good(k) for k in range(6)]
    rows[1] = {**rows[1], "user_id": 7}
    rows[4] = {**rows[4], "timestamp": "soon"}
    problem = assert_problem(seeded.post("/v1/events", json={"events": rows}), 422)
    assert error_fields(problem) == ["events[1].user_id", "events[4].timestamp"]
    assert [e["index"] for e in problem["errors"]] == [1, 4]
    assert "(and 1 more)" in problem["detail"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_value_is_rejected(seeded: TestClient, token: str) -> None:
    before = counts(seeded)
    rows = [json.dumps(good(k)) for k in range(4)]
    rows[2] = json.dumps({**good(2), "type": "rating"})[:-1] + f', "value": {token}}}'
    body = '{"events": [' + ", ".join(rows) + "]}"
    response = seeded.post("/v1/events", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, 422)
    assert problem["detail"].startswith("events[2].value"), problem
    assert "finite" in problem["detail"]
    assert counts(seeded) == before


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_non_finite_timestamp_is_rejected(seeded: TestClient, token: str) -> None:
    body = '{"events": [{"user_id": "u", "item_id": "i", "type": "view", "timestamp": %s}]}'
    response = seeded.post(
        "/v1/events", content=body % token, headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert problem["detail"].startswith("events[0].timestamp"), problem


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/events",
            '{"events": [{"user_id": "u", "item_id": "i", "type": "view", "timestamp": 1%s}]}',
        ),
        ("/v1/items", '{"items": [{"item_id": "i", "published_at": 1%s}]}'),
    ],
    ids=["event-timestamp", "item-published_at"],
)
def test_huge_integer_timestamp_is_a_422(seeded: TestClient, path: str, body: str) -> None:
    response = seeded.post(
        path, content=body % ("0" * 400), headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


def test_unknown_event_type_names_configured_types(seeded: TestClient) -> None:
    before = counts(seeded)
    response = seeded.post("/v1/events", json=batch_with(3, {**good(3), "type": "teleport"}))
    problem = assert_problem(response, 422)
    assert problem["detail"].startswith("events[3].type"), problem
    assert "teleport" in problem["detail"]
    for configured in ("view", "click", "add_to_cart", "purchase", "rating"):
        assert configured in problem["detail"]
    assert problem["errors"] == [
        {"index": 3, "field": "events[3].type", "message": problem["errors"][0]["message"]}
    ]
    assert counts(seeded) == before


def test_configured_event_types_come_from_settings(make_client: AppFactory) -> None:
    client = make_client(event_weights={"play": 1.0, "skip": -1.0}, value_event_types=[])
    assert post_events(client, [{**good(0), "type": "play"}])["accepted"] == 1
    problem = assert_problem(
        client.post("/v1/events", json={"events": [{**good(1), "type": "view"}]}), 422
    )
    assert "play" in problem["detail"] and "skip" in problem["detail"]


def test_malformed_json(seeded: TestClient) -> None:
    before = counts(seeded)
    for body in ('{"events": [', '{"events": [}', "events=1", '{"events": []} trailing'):
        response = seeded.post(
            "/v1/events", content=body, headers={"content-type": "application/json"}
        )
        problem = assert_problem(response, 422)
        assert "not valid JSON" in problem["detail"], problem
    assert counts(seeded) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"events": None}, "events"),
        ({"events": {"user_id": "u"}}, "events"),
        ({"rows": []}, "events"),
        ({"events": [], "extra": 1}, "extra"),
    ],
)
def test_wrong_envelope(seeded: TestClient, body: Any, field: str) -> None:
    problem = assert_problem(seeded.post("/v1/events", json=body), 422)
    assert field in error_fields(problem)


def test_empty_body(seeded: TestClient) -> None:
    response = seeded.post("/v1/events", content=b"", headers={"content-type": "application/json"})
    assert_problem(response, 422)


def test_deeply_nested_json_is_a_problem(seeded: TestClient) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = seeded.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/items",
            {"items": [{"item_id": "a"}, {"item_id": "b", "categories": "x"}]},
            "items[1].categories",
        ),
        ("/v1/items", {"items": [{"item_id": "a"}, {"title": "no id"}]}, "items[1].item_id"),
        ("/v1/items", {"items": [{"item_id": "a", "price": 3}]}, "items[0].price"),
        ("/v1/items", {"items": [{"item_id": "a", "available": "maybe"}]}, "items[0].available"),
        (
            "/v1/items",
            {"items": [{"item_id": "a", "published_at": "later"}]},
            "items[0].published_at",
        ),
        ("/v1/items", {"items": [{"item_id": "a", "attributes": [1]}]}, "items[0].attributes"),
        ("/v1/users", {"users": [{"user_id": "a"}, {"user_id": 5}]}, "users[1].user_id"),
        ("/v1/users", {"users": [{"user_id": "a", "name": "x"}]}, "users[0].name"),
    ],
)
def test_bad_catalog_rows(seeded: TestClient, path: str, body: Any, field: str) -> None:
    before = counts(seeded)
    problem = assert_problem(seeded.post(path, json=body), 422)
    assert field in error_fields(problem)
    assert problem["detail"].startswith(field)
    assert counts(seeded) == before


# --------------------------------------------------------------------------- size limits
@pytest.fixture()
def small(make_client: AppFactory) -> Iterator[TestClient]:
    client = make_client(max_batch_size=5, max_body_bytes=4096)
    post_events(client, [good(100)])
    yield client


@pytest.mark.parametrize(
    ("path", "key", "row"),
    [
        ("/v1/events", "events", good),
        ("/v1/items", "items", lambda k: {"item_id": f"new{k}"}),
        ("/v1/users", "users", lambda k: {"user_id": f"new{k}"}),
    ],
)
def test_oversized_batch_is_413_naming_the_limit(
    small: TestClient, path: str, key: str, row: Any
) -> None:
    before = counts(small)
    response = small.post(path, json={key: [row(k) for k in range(6)]})
    problem = assert_problem(response, 413)
    assert "limit is 5" in problem["detail"], problem
    assert "6" in problem["detail"]
    assert counts(small) == before
    # At the limit it is fine.
    assert small.post(path, json={key: [row(k) for k in range(5)]}).status_code in (200, 202)


def test_body_over_max_body_bytes_is_413(small: TestClient) -> None:
    before = counts(small)
    rows = [{**good(k), "user_id": "u" * 200, "item_id": "i" * 200} for k in range(5)]
    body = json.dumps({"events": rows * 3})
    assert len(body) > 4096
    response = small.post("/v1/events", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, 413)
    assert "4096" in problem["detail"]
    assert problem["limit_bytes"] == 4096
    assert counts(small) == before


def test_streamed_body_over_the_limit_is_413(small: TestClient) -> None:
    """No Content-Length (chunked): the limit is enforced while reading."""
    before = counts(small)
    chunk = json.dumps(good(1)).encode()

    def body() -> Iterator[bytes]:
        yield b'{"events": ['
        for k in range(400):
            yield (b", " if k else b"") + chunk
        yield b"]}"

    response = small.post(
        "/v1/events", content=body(), headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 413)
    assert "4096" in problem["detail"]
    assert counts(small) == before


# --------------------------------------------------------------------------- atomicity
def test_nothing_written_when_a_late_row_is_bad(seeded: TestClient) -> None:
    """Valid rows (new users, new items) before a bad one are not stored either."""
    store = runtime(seeded).store
    before = counts(seeded)
    rows = [{"user_id": f"fresh{k}", "item_id": f"fresh-item{k}", "type": "view"} for k in range(9)]
    rows.append({"user_id": "fresh9", "item_id": "x", "type": "warp"})
    assert_problem(seeded.post("/v1/events", json={"events": rows}), 422)
    assert counts(seeded) == before
    assert store.catalog([f"fresh-item{k}" for k in range(9)]) == {}
    assert store.user_history("fresh0") == []


# --------------------------------------------------------------------------- other routes
def test_unknown_route_and_method(client: TestClient) -> None:
    problem = assert_problem(client.get("/v1/nothing-here"), 404)
    assert "/v1/nothing-here" in problem["detail"]
    assert_problem(client.delete("/v1/items"), 405)
    assert_problem(client.get("/v1/events"), 405)


@pytest.mark.parametrize(
    "query",
    [
        {"n": "abc"},
        {"n": 0},
        {"n": -3},
        {"n": 1.5},
        {"exclude_seen": "perhaps"},
        {"category": "c" * 300},
    ],
)
def test_bad_query_parameters(client: TestClient, query: dict[str, Any]) -> None:
    response = client.get("/v1/users/u1/recommendations", params=query)
    problem = assert_problem(response, 422)
    assert next(iter(query)) in error_fields(problem)


def test_bad_path_ids(client: TestClient) -> None:
    problem = assert_problem(client.get(f"/v1/users/{'x' * 300}/recommendations"), 422)
    assert "user_id" in error_fields(problem)
    problem = assert_problem(client.get(f"/v1/items/{'x' * 300}/similar"), 422)
    assert "item_id" in error_fields(problem)
    problem = assert_problem(client.get("/v1/users/a%00b/recommendations"), 422)
    assert "user_id" in error_fields(problem)
    assert_problem(client.get("/v1/items/a%00b/similar"), 422)
