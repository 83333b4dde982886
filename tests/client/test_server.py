"""The sync client against a real ``smartrec serve`` process: every route, typed answers."""

from __future__ import annotations

import math
import uuid

import httpx
import pytest

from smartrec.client import (
    EventLike,
    InvalidRequest,
    ItemLike,
    NotFound,
    PayloadTooLarge,
    SmartRec,
)
from smartrec.ingest import event_id_for
from smartrec.schemas import EventIn, ItemIn, RecommendationsOut, UserIn
from tests.client.conftest import SERVER_BATCH, CountingTransport, Trained


def _tag() -> str:
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------- health
def test_health_and_ready(client: SmartRec, trained: Trained) -> None:
    assert client.health().status == "ok"
    ready = client.ready()
    assert ready.status == "ready"
    assert ready.model_version == trained.version


# --------------------------------------------------------------------------- ingest
def test_events_are_chunked_to_the_batch_size(trained: Trained) -> None:
    user = f"chunk-{_tag()}"
    items = [i["item_id"] for i in trained.world.items[:10]]
    events = [
        {"user_id": user, "item_id": items[k % 10], "type": "view", "timestamp": 1_700_000_000 + k}
        for k in range(23)
    ]
    transport = CountingTransport()
    with SmartRec(trained.url, batch_size=5, transport=transport) as client:
        out = client.events.send(events)
        assert (out.accepted, out.duplicates) == (23, 0)
        assert transport.requests == [("POST", "/v1/events")] * math.ceil(23 / 5)
        # The whole batch again: every event is known, in the same number of requests.
        again = client.events.send(events, batch_size=10)
        assert (again.accepted, again.duplicates) == (0, 23)
        assert len(transport.requests) == 5 + 3


def test_a_batch_over_the_server_limit_is_payload_too_large(trained: Trained) -> None:
    user = f"big-{_tag()}"
    item = trained.world.items[0]["item_id"]
    events = [
        {"user_id": user, "item_id": item, "type": "view", "timestamp": 1_700_000_000 + k}
        for k in range(SERVER_BATCH + 1)
    ]
    client = SmartRec(trained.url)  # the default batch, 10,000, is over this server's
    with client, pytest.raises(PayloadTooLarge) as caught:
        client.events.send(events)
    assert caught.value.status == 413
    assert "split the batch" in caught.value.detail
    assert any("0 events before this batch" in n for n in caught.value.__notes__)


def test_sending_the_same_events_again_counts_them_once(client: SmartRec, trained: Trained) -> None:
    user = f"idem-{_tag()}"
    ids = [i["item_id"] for i in trained.world.items[:4]]
    # No event_id and no timestamp: the client stamps both on the objects.
    plain = [{"user_id": user, "item_id": i, "type": "click"} for i in ids[:2]]
    models = [EventIn(user_id=user, item_id=i, type="view") for i in ids[2:]]
    events: list[EventLike] = [*plain, *models]
    first = client.events.send(events)
    assert (first.accepted, first.duplicates) == (4, 0)
    second = client.events.send(events)
    assert (second.accepted, second.duplicates) == (0, 4)
    for e in plain:
        ts_ms = round(e["timestamp"] * 1000)
        assert e["event_id"] == event_id_for(user, e["item_id"], "click", ts_ms)
    for m in models:
        assert m.timestamp is not None
        assert m.event_id == event_id_for(user, m.item_id, "view", m.timestamp)


def test_client_event_ids_are_the_servers(client: SmartRec, trained: Trained) -> None:
    """An event sent by anything else without an id is a duplicate of the client's."""
    user = f"same-{_tag()}"
    item = trained.world.items[0]["item_id"]
    raw = {"user_id": user, "item_id": item, "type": "like", "timestamp": "2024-05-01T12:00:00Z"}
    response = httpx.post(f"{trained.url}/v1/events", json={"events": [dict(raw)]})
    assert response.json() == {"accepted": 1, "duplicates": 0}
    out = client.events.send([dict(raw)])
    assert (out.accepted, out.duplicates) == (0, 1)


def test_items_and_users_upsert_take_models_and_dicts(client: SmartRec) -> None:
    tag = _tag()
    items: list[ItemLike] = [
        ItemIn.model_validate({"item_id": f"m-{tag}", "published_at": "2024-05-01T12:00:00Z"}),
        {"item_id": f"d-{tag}", "title": "A dict", "categories": ["c-extra"]},
    ]
    transport = CountingTransport()
    with SmartRec(client.base_url, transport=transport, batch_size=1) as small:
        assert small.items.upsert(items).upserted == 2
        assert (
            small.users.upsert(
                [UserIn(user_id=f"um-{tag}", attributes={"k": 1}), {"user_id": f"ud-{tag}"}]
            ).upserted
            == 2
        )
        assert small.users.upsert({"user_id": f"one-{tag}"}).upserted == 1
    paths = [p for _, p in transport.requests]
    assert paths == ["/v1/items"] * 2 + ["/v1/users"] * 3


# --------------------------------------------------------------------------- reading
def test_user_recommendations(client: SmartRec, trained: Trained) -> None:
    world = trained.world
    user = world.heaviest_user()
    out = client.users.recommendations(user, n=5)
    assert isinstance(out, RecommendationsOut)
    assert out.user_id == user and out.model_version == trained.version
    assert len(out.items) == 5
    assert not {i.item_id for i in out.items} & world.seen[user]
    category = world.categories[0]
    only = client.users.recommendations(user, n=3, category=category, exclude_seen=False)
    assert only.items and {i.item_id for i in only.items} <= world.items_of(category)
    filtered = client.users.recommendations(
        user, n=3, filter=f'category == "{category}"', diversity=0.5, max_per_category=2
    )
    assert {i.item_id for i in filtered.items} <= world.items_of(category)
    explored = client.users.recommendations(user, n=3, exploration=0.2)
    assert len(explored.items) == 3


def test_recommendation_pages_follow_the_token(client: SmartRec, trained: Trained) -> None:
    user = trained.world.heaviest_user()
    pages = list(client.users.recommendation_pages(user, n=4, max_pages=3))
    assert len(pages) == 3
    ids = [i.item_id for p in pages for i in p.items]
    assert len(ids) == len(set(ids)) == 12
    first = client.users.recommendations(user, n=4)
    second = client.users.recommendations(user, n=4, page_token=first.next_page_token)
    assert [i.item_id for i in second.items] == [i.item_id for i in pages[1].items]
    # Without a cap the iterator stops where the server has no more.
    every = list(client.users.recommendation_pages(user, n=50))
    assert every[-1].next_page_token is None or not every[-1].items


def test_ids_in_paths_are_percent_encoded(client: SmartRec, trained: Trained) -> None:
    odd = f"a/b c?d#e%{_tag()}"
    out = client.users.recommendations(odd, n=2)
    assert out.user_id == odd
    client.items.upsert([{"item_id": odd, "title": "odd id"}])
    similar = client.items.similar(odd, n=2)
    assert similar.item_id == odd


def test_similar_popular_sessions_rankings(client: SmartRec, trained: Trained) -> None:
    world = trained.world
    item = next(iter(world.seen[world.heaviest_user()]))
    similar = client.items.similar(item, n=4)
    assert similar.item_id == item and 0 < len(similar.items) <= 4
    assert item not in {i.item_id for i in similar.items}
    category = world.categories[1]
    in_category = client.items.similar(item, n=4, category=category)
    assert {i.item_id for i in in_category.items} <= world.items_of(category)

    popular = client.popular(5)
    assert len(popular.items) == 5
    scores = [i.score for i in popular.items]
    assert scores == sorted(scores, reverse=True)
    assert client.popular(3, category=category).items
    assert {i.item_id for i in client.popular(3, category=category).items} <= world.items_of(
        category
    )
    assert client.popular(3, window="3650d").items

    basket = [i["item_id"] for i in world.items[:3]]
    session = client.sessions.recommend(basket, n=5)
    assert session.items and not {i.item_id for i in session.items} & set(basket)

    user = world.heaviest_user()
    candidates = [i["item_id"] for i in world.items[5:15]]
    ranked = client.rankings.rank(user, candidates)
    assert ranked.user_id == user
    assert sorted(i.item_id for i in ranked.items) == sorted(candidates)


# --------------------------------------------------------------------------- errors
def test_not_found_is_typed(client: SmartRec) -> None:
    with pytest.raises(NotFound) as caught:
        client.items.similar(f"nope-{_tag()}")
    error = caught.value
    assert error.status == 404 and error.title == "Not found"
    assert "does not exist" in error.detail
    assert error.problem["type"].endswith("/not-found")
    with pytest.raises(NotFound):
        client.training.get("no-such-job")
    with pytest.raises(NotFound):
        client.models.promote("9999")


def test_invalid_requests_are_typed(client: SmartRec, trained: Trained) -> None:
    user = trained.world.heaviest_user()
    with pytest.raises(InvalidRequest) as caught:
        client.users.recommendations(user, n=0)
    assert caught.value.status == 422
    assert [e["field"] for e in caught.value.errors] == ["n"]

    bad = [{"user_id": f"bad-{_tag()}", "item_id": "x", "type": "wishlist"}]
    with pytest.raises(InvalidRequest) as caught:
        client.events.send(bad)
    assert caught.value.errors[0]["index"] == 0
    assert caught.value.errors[0]["field"] == "events[0].type"
    assert "wishlist" in caught.value.detail

    with pytest.raises(InvalidRequest):
        client.popular(3, window="7x")
    with pytest.raises(InvalidRequest) as caught:
        client.training.start({"lightgbm": {}})
    assert "unknown algorithm" in caught.value.detail
    with pytest.raises(ValueError, match="unknown item field"):
        client.popular(3, fields=["price"])


# --------------------------------------------------------------------------- training, models
def test_training_job_and_models(client: SmartRec, trained: Trained) -> None:
    job = client.training.get(trained.job.job_id)
    assert job.status == "succeeded" and job.model_version == trained.version
    assert job.metrics and "ndcg@10" in job.metrics
    assert client.training.wait(trained.job.job_id, timeout=1).status == "succeeded"

    models = client.models.list()
    assert models.serving_version == trained.version
    versions = {v.version: v for v in models.versions}
    assert "champion" in versions[trained.version].aliases
    promoted = client.models.promote(trained.version)  # already the champion: no change
    assert (promoted.champion, promoted.serving_version) == (trained.version, trained.version)
