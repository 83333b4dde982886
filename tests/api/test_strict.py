"""Strict inputs: unknown query parameters, content types, malformed JSON, value events without
a value, training parameters checked at POST, 405 with Allow."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Trained, assert_problem, error_fields


@pytest.mark.parametrize(
    ("method", "url", "accepted"),
    [
        ("GET", "/v1/users/u1/recommendations?exlude_seen=false", "exclude_seen"),
        ("GET", "/v1/popular?bogus=1", "window"),
        ("GET", "/v1/items/x/similar?n=3&bogus=1", "category"),
        ("GET", "/v1/items?bogus=1", "updated_since"),
        ("GET", "/healthz?bogus=1", "none"),
        ("POST", "/v1/rankings?bogus=1", "fields"),
    ],
)
def test_unknown_query_parameter_is_named(
    client: TestClient, method: str, url: str, accepted: str
) -> None:
    body = {"json": {"user_id": "u", "item_ids": ["a"]}} if method == "POST" else {}
    problem = assert_problem(client.request(method, url, **body), 422)
    unknown = url.split("?")[1].split("&")[-1].split("=")[0]
    assert repr(unknown) in problem["detail"]
    assert accepted in problem["detail"]
    assert error_fields(problem) == [unknown]


def test_the_feed_lane_does_not_swallow_unknown_parameters(trained: Trained) -> None:
    user = trained.world.heaviest_user()
    client = trained.client
    assert client.get(f"/v1/users/{user}/recommendations?n=3").status_code == 200
    problem = assert_problem(
        client.get(f"/v1/users/{user}/recommendations?n=3&exlude_seen=true"), 422
    )
    assert "'exlude_seen'" in problem["detail"]


def test_value_event_without_value_is_refused(client: TestClient) -> None:
    events = [
        {"user_id": "u", "item_id": "i", "type": "view"},
        {"user_id": "u", "item_id": "i", "type": "rating"},
    ]
    problem = assert_problem(client.post("/v1/events", json={"events": events}), 422)
    assert problem["errors"][0]["index"] == 1
    assert problem["errors"][0]["field"] == "events[1].value"
    assert "needs a value" in problem["detail"]
    ok = client.post("/v1/events", json={"events": [{**events[1], "value": 4}]})
    assert ok.status_code == 202


def test_malformed_json_gives_line_and_column(client: TestClient) -> None:
    body = b'{\n  "items": [\n    {"item_id": "a",}\n  ]\n}'
    problem = assert_problem(
        client.post("/v1/items", content=body, headers={"content-type": "application/json"}), 422
    )
    assert "line 3, column 21" in problem["detail"], problem["detail"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_without_a_json_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/events", content=b'{"events": []}', headers=headers)
    problem = assert_problem(response, 415)
    assert "application/json" in problem["detail"]
    ok = client.post(
        "/v1/events",
        content=b'{"events": []}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 202


@pytest.mark.parametrize(
    ("pipeline", "field", "words"),
    [
        ({"ease": {"l2": "lots"}}, "pipeline.ease.l2", "must be a number"),
        ({"ease": {"bogus": 1}}, "pipeline.ease.bogus", "no parameter 'bogus'"),
        ({"als": {"factors": 12.5}}, "pipeline.als.factors", "must be an integer"),
        ({"itemknn": {"k": True}}, "pipeline.itemknn.k", "must be an integer"),
        ({"nosuch": {}}, "pipeline", "unknown algorithm"),
    ],
)
def test_training_parameters_checked_at_post(
    client: TestClient, pipeline: dict[str, object], field: str, words: str
) -> None:
    problem = assert_problem(client.post("/v1/training-jobs", json={"pipeline": pipeline}), 422)
    assert error_fields(problem) == [field]
    assert words in problem["detail"]


def test_405_carries_allow(client: TestClient) -> None:
    response = client.put("/v1/items/abc")
    problem = assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET"
    assert "allowed: DELETE, GET" in problem["detail"]
    assert client.patch("/v1/popular").headers["allow"] == "GET"


def test_integral_numbers_are_integers(client: TestClient) -> None:
    """JSON has one number type: 16.0 is a fine number of factors (and 3.0 a fine n)."""
    job = client.post("/v1/training-jobs", json={"pipeline": {"als": {"factors": 16.0}}})
    assert job.status_code == 202, job.text
    session = client.post("/v1/sessions/recommendations", json={"item_ids": [], "n": 3.0})
    assert session.status_code == 200, session.text
    assert_problem(
        client.post("/v1/sessions/recommendations", json={"item_ids": [], "n": "3"}), 422
    )


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/items", {"items": [{"item_id": "a/similar"}]}),
        ("/v1/users", {"users": [{"user_id": "u/events"}]}),
        (
            "/v1/events",
            {"events": [{"user_id": "u/recommendations", "item_id": "i", "type": "view"}]},
        ),
    ],
)
def test_ids_that_their_urls_could_not_name_are_refused(
    client: TestClient, url: str, body: dict[str, object]
) -> None:
    problem = assert_problem(client.post(url, json=body), 422)
    assert "may not end in" in problem["detail"]
