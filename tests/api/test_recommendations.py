"""The reading side with a trained EASE model: user, similar, popular, session, ranking."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    EASE_ONLY,
    AppFactory,
    Trained,
    World,
    assert_problem,
    error_fields,
    item_ids,
    load_world,
    post_events,
    train,
)

PERSONAL_KINDS = {"personalized", "similar_to"}


def kinds(item: dict[str, Any]) -> list[str]:
    return [r["kind"] for r in item["reasons"]]


def recs(client: TestClient, user: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- users
def test_user_recommendations_shape(trained: Trained) -> None:
    user = trained.world.heaviest_user()
    body = recs(trained.client, user, n=7)
    assert body["user_id"] == user
    assert body["model_version"] == trained.version
    assert len(body["items"]) == 7
    assert len({i["item_id"] for i in body["items"]}) == 7
    for item in body["items"]:
        assert set(item) == {"item_id", "score", "reasons"}
        assert item["reasons"], item
        assert item["reasons"][0] == {"kind": "personalized", "algorithm": "ease"}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # The explanation names an item of the user's own history.
    because = [r for i in body["items"] for r in i["reasons"] if r["kind"] == "similar_to"]
    assert because
    assert all(r["item_id"] in trained.world.seen[user] for r in because)
    assert all(r["title"] for r in because)


def test_default_n_is_ten(trained: Trained) -> None:
    assert len(recs(trained.client, trained.world.heaviest_user())["items"]) == 10


def test_seen_items_are_excluded_by_default(trained: Trained) -> None:
    world = trained.world
    for user in sorted(world.seen, key=lambda u: -len(world.seen[u]))[:5]:
        ids = {i["item_id"] for i in recs(trained.client, user, n=20)["items"]}
        assert ids, user
        assert not ids & world.seen[user], user
        ids_explicit = {
            i["item_id"] for i in recs(trained.client, user, n=20, exclude_seen=True)["items"]
        }
        assert ids_explicit == ids


def test_seen_items_may_come_back_with_exclude_seen_false(trained: Trained) -> None:
    user = trained.world.heaviest_user()
    ids = [i["item_id"] for i in recs(trained.client, user, n=20, exclude_seen="false")["items"]]
    assert len(ids) == 20
    assert set(ids) & trained.world.seen[user]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_disliked_items_never_come_back_on_a_single_model_champion(
    make_client: AppFactory, world: World, exclude_seen: bool
) -> None:
    """exclude_seen=false brings back what the user liked, never what they disliked: with a
    page as long as the catalogue every other item shows, so only the exclusion can keep the
    disliked ones out (the model scores them, the popular fill would add them)."""
    client = make_client()
    load_world(client, world)
    train(client, EASE_ONLY)
    popular = [i["item_id"] for i in client.get("/v1/popular", params={"n": 6}).json()["items"]]
    liked, disliked = popular[:3], popular[3:]
    user = "h5-picky"
    post_events(
        client,
        [{"user_id": user, "item_id": i, "type": "purchase"} for i in liked]
        + [{"user_id": user, "item_id": i, "type": "dislike"} for i in disliked],
    )
    body = recs(client, user, n=len(world.items), exclude_seen=exclude_seen)
    assert body["items"][0]["reasons"][0] == {"kind": "personalized", "algorithm": "ease"}
    ids = {i["item_id"] for i in body["items"]}
    assert not ids & set(disliked)
    if exclude_seen:
        assert not ids & set(liked)
    else:
        assert set(liked) <= ids


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_category_filter(trained: Trained, exclude_seen: bool) -> None:
    world = trained.world
    user = world.heaviest_user()
    for category in world.categories:
        body = recs(trained.client, user, n=15, category=category, exclude_seen=exclude_seen)
        assert body["items"], category
        for item in body["items"]:
            assert category in world.item_categories[item["item_id"]], (category, item)
            if "popular_in" in kinds(item):
                assert item["reasons"][0] == {"kind": "popular_in", "category": category}


def test_unknown_category_is_empty_not_an_error(trained: Trained) -> None:
    body = recs(trained.client, trained.world.heaviest_user(), category="no-such-category")
    assert body["items"] == []


def test_paging(trained: Trained) -> None:
    user = sorted(trained.world.seen)[3]
    client = trained.client
    page1 = recs(client, user, n=5)
    assert page1["next_page_token"]
    page2 = recs(client, user, n=5, page_token=page1["next_page_token"])
    ids1 = [i["item_id"] for i in page1["items"]]
    ids2 = [i["item_id"] for i in page2["items"]]
    assert len(ids2) == 5
    assert not set(ids1) & set(ids2)
    assert ids1 + ids2 == [i["item_id"] for i in recs(client, user, n=10)["items"]]
    assert page2["model_version"] == trained.version


def test_paging_reaches_an_end(trained: Trained) -> None:
    user = trained.world.heaviest_user()
    client = trained.client
    seen: list[str] = []
    token = None
    for _ in range(100):
        params: dict[str, Any] = {"n": 7}
        if token:
            params["page_token"] = token
        body = recs(client, user, **params)
        seen += [i["item_id"] for i in body["items"]]
        token = body["next_page_token"]
        if token is None:
            break
    assert token is None
    assert len(seen) == len(set(seen)), "an item was repeated across pages"
    # Every item the model knows and the user has not seen, each once.
    modelled = {e["item_id"] for e in trained.world.events}
    assert set(seen) == modelled - trained.world.seen[user]
    assert len(seen) > 7 * 2  # several pages


@pytest.mark.parametrize(
    "token", ["garbage", "NQ", "e30", "eyJvIjogLTV9", "!!!", "eyJvIjogMWU5OX0"]
)
def test_bad_page_token(trained: Trained, token: str) -> None:
    response = trained.client.get(
        f"/v1/users/{trained.world.heaviest_user()}/recommendations", params={"page_token": token}
    )
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["page_token"]
    assert "page_token" in problem["detail"]


def test_n_over_max_n(trained: Trained) -> None:
    max_n = trained.client.app.state.settings.max_n  # type: ignore[attr-defined]
    user = trained.world.heaviest_user()
    response = trained.client.get(f"/v1/users/{user}/recommendations", params={"n": max_n + 1})
    problem = assert_problem(response, 422)
    assert str(max_n) in problem["detail"]
    assert error_fields(problem) == ["n"]
    # At the limit it answers (with what there is).
    response = trained.client.get(f"/v1/users/{user}/recommendations", params={"n": max_n})
    assert response.status_code == 200


def test_filter_is_not_supported_yet(trained: Trained) -> None:
    response = trained.client.get(
        f"/v1/users/{trained.world.heaviest_user()}/recommendations",
        params={"filter": "price < 10"},
    )
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["filter"]
    assert "category" in problem["detail"]


@pytest.mark.parametrize("user", ["never-seen-user", "ünïcødé user", "x" * 256])
def test_cold_user_gets_popular_items(trained: Trained, user: str) -> None:
    body = recs(trained.client, user, n=8)
    assert body["user_id"] == user
    assert body["model_version"] == trained.version
    assert len(body["items"]) == 8
    assert all(i["reasons"] == [{"kind": "popular"}] for i in body["items"])
    popular = item_ids(trained.client.get("/v1/popular", params={"n": 8}))
    assert [i["item_id"] for i in body["items"]] == popular


def test_cold_user_category(trained: Trained) -> None:
    category = trained.world.categories[0]
    body = recs(trained.client, "cold-user", n=5, category=category)
    assert len(body["items"]) == 5
    for item in body["items"]:
        assert category in trained.world.item_categories[item["item_id"]]
        assert item["reasons"] == [{"kind": "popular_in", "category": category}]


# --------------------------------------------------------------------------- similar
def test_similar_items(trained: Trained) -> None:
    item = "i00"
    response = trained.client.get(f"/v1/items/{item}/similar", params={"n": 6})
    body = response.json()
    assert response.status_code == 200
    assert body["item_id"] == item
    assert body["model_version"] == trained.version
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert item not in ids
    for rec in body["items"]:
        assert rec["reasons"][0]["kind"] == "similar_to"
        assert rec["reasons"][0]["item_id"] == item
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(item_ids(trained.client.get(f"/v1/items/{item}/similar"))) == 10


def test_similar_items_category(trained: Trained) -> None:
    world = trained.world
    for category in world.categories:
        ids = item_ids(
            trained.client.get("/v1/items/i05/similar", params={"n": 5, "category": category})
        )
        assert ids, category
        assert all(category in world.item_categories[i] for i in ids)
        assert "i05" not in ids


def test_similar_unknown_item_is_404(trained: Trained) -> None:
    problem = assert_problem(trained.client.get("/v1/items/no-such-item/similar"), 404)
    assert "no-such-item" in problem["detail"]


def test_similar_item_known_only_to_the_catalog(trained: Trained) -> None:
    """An item the model never saw: popular items of its category, never itself."""
    world = trained.world
    category = world.categories[1]
    response = trained.client.post(
        "/v1/items",
        json={"items": [{"item_id": "catalog-only-1", "title": "New", "categories": [category]}]},
    )
    assert response.status_code == 200
    body = trained.client.get("/v1/items/catalog-only-1/similar", params={"n": 5}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 5
    assert "catalog-only-1" not in ids
    assert all(category in world.item_categories[i] for i in ids)
    assert all(i["reasons"][0]["kind"] == "popular_in" for i in body["items"])
    assert ids == item_ids(trained.client.get("/v1/popular", params={"n": 5, "category": category}))


def test_similar_n_over_max(trained: Trained) -> None:
    assert_problem(trained.client.get("/v1/items/i00/similar", params={"n": 100_000}), 422)


# --------------------------------------------------------------------------- popular
def test_popular(trained: Trained) -> None:
    body = trained.client.get("/v1/popular", params={"n": 6}).json()
    assert body["model_version"] == trained.version
    assert len(body["items"]) == 6
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reasons"] == [{"kind": "popular"}] for i in body["items"])
    assert len(item_ids(trained.client.get("/v1/popular"))) == 10


def test_popular_category(trained: Trained) -> None:
    world = trained.world
    for category in world.categories:
        ids = item_ids(trained.client.get("/v1/popular", params={"n": 5, "category": category}))
        assert len(ids) == 5
        assert all(category in world.item_categories[i] for i in ids)


def test_popular_window(trained: Trained) -> None:
    world = trained.world
    body = trained.client.get("/v1/popular", params={"n": 50, "window": "7d"}).json()
    ids = [i["item_id"] for i in body["items"]]
    recent = world.active_since(world.newest_ts - 7 * 86400)
    assert ids
    assert set(ids) <= recent
    assert len(ids) == min(50, len(recent))
    assert all(i["reasons"][0] == {"kind": "popular_in", "window": "7d"} for i in body["items"])
    # A wider window counts more events.
    wide = trained.client.get("/v1/popular", params={"n": 100, "window": "52w"}).json()
    assert len(wide["items"]) > len(ids)
    # Window and category together.
    category = world.categories[2]
    ids_cat = item_ids(
        trained.client.get("/v1/popular", params={"n": 50, "window": "7d", "category": category})
    )
    assert set(ids_cat) <= recent & world.items_of(category)


@pytest.mark.parametrize("window", ["7x", "0d", "-1d", "d", "abc", "7 days", "9" * 31 + "d"])
def test_bad_window(trained: Trained, window: str) -> None:
    response = trained.client.get("/v1/popular", params={"window": window})
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["window"]


def test_popular_n_over_max(trained: Trained) -> None:
    assert_problem(trained.client.get("/v1/popular", params={"n": 1001}), 422)


# --------------------------------------------------------------------------- sessions
def test_session_recommendations(trained: Trained) -> None:
    given = ["i01", "i02", "i07"]
    response = trained.client.post("/v1/sessions/recommendations", json={"item_ids": given, "n": 6})
    body = response.json()
    assert response.status_code == 200
    assert body["model_version"] == trained.version
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert not set(ids) & set(given)
    assert body["items"][0]["reasons"][0] == {"kind": "session", "algorithm": "ease"}
    because = {
        r["item_id"] for i in body["items"] for r in i["reasons"] if r["kind"] == "similar_to"
    }
    assert because and because <= set(given)


@pytest.mark.parametrize("given", [[], ["nope-1", "nope-2"]])
def test_session_without_known_items_gets_popular(trained: Trained, given: list[str]) -> None:
    response = trained.client.post("/v1/sessions/recommendations", json={"item_ids": given, "n": 5})
    body = response.json()
    assert response.status_code == 200
    assert len(body["items"]) == 5
    assert all(i["reasons"] == [{"kind": "popular"}] for i in body["items"])
    assert [i["item_id"] for i in body["items"]] == item_ids(
        trained.client.get("/v1/popular", params={"n": 5})
    )


def test_session_excludes_given_items_even_when_popular(trained: Trained) -> None:
    top = item_ids(trained.client.get("/v1/popular", params={"n": 3}))
    body = trained.client.post(
        "/v1/sessions/recommendations", json={"item_ids": [*top, "unknown"], "n": 10}
    ).json()
    assert not {i["item_id"] for i in body["items"]} & set(top)


@pytest.mark.parametrize(
    "body",
    [{"item_ids": ["a"], "n": 0}, {"item_ids": ["a"], "n": 5000}, {"item_ids": "a"}, {"n": 3}],
)
def test_bad_session_request(trained: Trained, body: dict[str, Any]) -> None:
    assert_problem(trained.client.post("/v1/sessions/recommendations", json=body), 422)


# --------------------------------------------------------------------------- rankings
def test_rankings_return_exactly_the_given_items(trained: Trained) -> None:
    user = trained.world.heaviest_user()
    given = ["i03", "unknown-a", "i10", "i01", "unknown-b", "i44"]
    response = trained.client.post("/v1/rankings", json={"user_id": user, "item_ids": given})
    body = response.json()
    assert response.status_code == 200
    assert body["user_id"] == user
    assert body["model_version"] == trained.version
    ids = [i["item_id"] for i in body["items"]]
    assert sorted(ids) == sorted(given)
    assert ids[-2:] == ["unknown-a", "unknown-b"]  # unknown last, in the given order
    assert [i["reasons"] for i in body["items"][-2:]] == [[{"kind": "unknown_item"}]] * 2
    known = body["items"][:-2]
    assert all(i["reasons"] == [{"kind": "personalized", "algorithm": "ease"}] for i in known)
    scores = [i["score"] for i in known]
    assert scores == sorted(scores, reverse=True)


def test_rankings_follow_the_model(trained: Trained) -> None:
    """The model's own top items, shuffled, come back in the model's order."""
    user = sorted(trained.world.seen)[5]
    top = [i["item_id"] for i in recs(trained.client, user, n=6)["items"]]
    shuffled = top[::-1]
    body = trained.client.post("/v1/rankings", json={"user_id": user, "item_ids": shuffled}).json()
    assert [i["item_id"] for i in body["items"]] == top


def test_rankings_for_a_cold_user_use_popularity(trained: Trained) -> None:
    top = item_ids(trained.client.get("/v1/popular", params={"n": 4}))
    body = trained.client.post(
        "/v1/rankings", json={"user_id": "cold-ranker", "item_ids": top[::-1]}
    ).json()
    assert [i["item_id"] for i in body["items"]] == top
    assert all(i["reasons"] == [{"kind": "popular"}] for i in body["items"])


def test_rankings_with_duplicates_return_each_item_once(trained: Trained) -> None:
    body = trained.client.post(
        "/v1/rankings", json={"user_id": "u1", "item_ids": ["i01", "i02", "i01"]}
    ).json()
    assert sorted(i["item_id"] for i in body["items"]) == ["i01", "i02"]


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "u", "item_ids": []},
        {"user_id": "u"},
        {"item_ids": ["a"]},
        {"user_id": "u", "item_ids": [1, 2]},
        {"user_id": "u", "item_ids": ["a"], "n": 3},
    ],
)
def test_bad_ranking_request(trained: Trained, body: dict[str, Any]) -> None:
    assert_problem(trained.client.post("/v1/rankings", json=body), 422)
