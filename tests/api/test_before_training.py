"""Before any training the server answers from the event log (popularity), never an error."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import assert_problem, item_ids, post_events

T = 1_714_564_800
DAY = 86_400


@pytest.fixture()
def log_only(client: TestClient) -> TestClient:
    """Popularity by weighted events: a (3 views + purchase) > b (3 views) > c (2) > d (1)."""
    client.post(
        "/v1/items",
        json={
            "items": [
                {"item_id": "a", "categories": ["books"]},
                {"item_id": "b", "categories": ["music"]},
                {"item_id": "c", "categories": ["books"]},
                {"item_id": "d", "categories": ["music", "books"]},
                {"item_id": "gone", "available": False},
            ]
        },
    )
    rows = [
        ("u1", "a", "view", T),
        ("u2", "a", "view", T),
        ("u3", "a", "purchase", T - 20 * DAY),
        ("u1", "b", "view", T),
        ("u2", "b", "view", T),
        ("u4", "b", "view", T - 20 * DAY),
        ("u1", "c", "view", T),
        ("u4", "c", "view", T - 20 * DAY),
        ("u4", "d", "view", T - 20 * DAY),
        ("u5", "gone", "purchase", T),
        ("u5", "a", "dislike", T),
    ]
    events = [{"user_id": u, "item_id": i, "type": k, "timestamp": t} for u, i, k, t in rows]
    assert post_events(client, events)["accepted"] == len(rows)
    return client


def test_new_user_gets_popular_items(log_only: TestClient) -> None:
    body = log_only.get("/v1/users/stranger/recommendations").json()
    assert body["model_version"] is None
    assert body["user_id"] == "stranger"
    assert [i["item_id"] for i in body["items"]] == ["a", "b", "c", "d"]  # never unavailable
    assert all(i["reasons"] == [{"kind": "popular"}] for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_seen_items_excluded_before_training(log_only: TestClient) -> None:
    assert item_ids(log_only.get("/v1/users/u1/recommendations")) == ["d"]
    assert item_ids(log_only.get("/v1/users/u1/recommendations?exclude_seen=false")) == [
        "a",
        "b",
        "c",
        "d",
    ]
    # A disliked item counts as seen.
    assert "a" not in item_ids(log_only.get("/v1/users/u5/recommendations"))


def test_category_and_paging_before_training(log_only: TestClient) -> None:
    assert item_ids(log_only.get("/v1/users/x/recommendations?category=books")) == ["a", "c", "d"]
    page1 = log_only.get("/v1/users/x/recommendations", params={"n": 2}).json()
    assert [i["item_id"] for i in page1["items"]] == ["a", "b"]
    page2 = log_only.get(
        "/v1/users/x/recommendations", params={"n": 2, "page_token": page1["next_page_token"]}
    ).json()
    assert [i["item_id"] for i in page2["items"]] == ["c", "d"]
    assert page2["next_page_token"] is None


def test_popular_before_training(log_only: TestClient) -> None:
    body = log_only.get("/v1/popular").json()
    assert body["model_version"] is None
    assert [i["item_id"] for i in body["items"]] == ["a", "b", "c", "d"]
    assert item_ids(log_only.get("/v1/popular?category=music")) == ["b", "d"]
    # Only the last week (before the newest event): a and b have two views each, c one.
    recent = log_only.get("/v1/popular", params={"window": "7d"}).json()
    assert [i["item_id"] for i in recent["items"]] == ["a", "b", "c"]
    assert recent["items"][0]["reasons"] == [{"kind": "popular_in", "window": "7d"}]
    assert_problem(log_only.get("/v1/popular", params={"window": "soon"}), 422)


def test_similar_before_training(log_only: TestClient) -> None:
    """No model: a catalog item gets popular items of its (first) category, never itself."""
    body = log_only.get("/v1/items/c/similar").json()
    assert body["model_version"] is None
    assert [i["item_id"] for i in body["items"]] == ["a", "d"]
    assert all(i["reasons"][0]["kind"] == "popular_in" for i in body["items"])
    assert item_ids(log_only.get("/v1/items/c/similar?category=music")) == ["b", "d"]
    assert_problem(log_only.get("/v1/items/zzz/similar"), 404)


def test_session_and_ranking_before_training(log_only: TestClient) -> None:
    body = log_only.post("/v1/sessions/recommendations", json={"item_ids": ["a"], "n": 2}).json()
    assert [i["item_id"] for i in body["items"]] == ["b", "c"]
    assert body["model_version"] is None
    body = log_only.post(
        "/v1/rankings", json={"user_id": "u9", "item_ids": ["zzz", "d", "a", "b"]}
    ).json()
    ids = [i["item_id"] for i in body["items"]]
    assert ids == ["a", "b", "d", "zzz"]


def test_empty_server_answers_empty_lists(client: TestClient) -> None:
    """No event and no model: empty answers, still 200."""
    for path in ("/v1/users/u/recommendations", "/v1/popular"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    response = client.post("/v1/sessions/recommendations", json={"item_ids": ["x"]})
    assert response.status_code == 200 and response.json()["items"] == []
    response = client.post("/v1/rankings", json={"user_id": "u", "item_ids": ["x", "y"]})
    assert [i["item_id"] for i in response.json()["items"]] == ["x", "y"]


def test_ids_with_reserved_characters(client: TestClient) -> None:
    """Any string is an id: "/", "?", "%", "#" and non-ASCII work in paths when escaped."""
    odd = ["a/b", "q?x", "50%", "é #1", "x/recommendations"]
    client.post("/v1/items", json={"items": [{"item_id": i, "categories": ["k"]} for i in odd]})
    events = [
        {"user_id": "team/1", "item_id": "a/b", "type": "purchase", "timestamp": T},
        {"user_id": "u?2", "item_id": "q?x", "type": "view", "timestamp": T},
        {"user_id": "u?2", "item_id": "50%", "type": "view", "timestamp": T},
        {"user_id": "u?2", "item_id": "é #1", "type": "view", "timestamp": T},
        {"user_id": "u?2", "item_id": "x/recommendations", "type": "view", "timestamp": T},
    ]
    post_events(client, events)
    body = client.get(f"/v1/users/{quote('team/1', safe='')}/recommendations").json()
    assert body["user_id"] == "team/1"
    assert sorted(i["item_id"] for i in body["items"]) == sorted(set(odd) - {"a/b"})
    for item in odd:
        response = client.get(f"/v1/items/{quote(item, safe='')}/similar")
        assert response.status_code == 200, (item, response.text)
        assert response.json()["item_id"] == item
        assert item not in item_ids(response)
    text = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/recommendations",status="200"' in text
    assert 'route="/v1/items/{item_id}/similar",status="200"' in text
