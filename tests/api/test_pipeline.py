"""The multi-stage pipeline behind ``GET /v1/users/{id}/recommendations``, through HTTP.

A small pipeline (ALS + EASE + popular + content retrievers, LightGBM ranker) is fitted once
per module on the world; each test gets its own app with the world loaded and a copy of that
pipeline installed, so that no test sees the items, events or edits of another (the suite runs in
random order).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smartrec.domain.clock import now_ms
from smartrec.models import create
from smartrec.pipeline.core import TrainedPipeline
from smartrec.pipeline.spec import load_spec
from smartrec.registry import ModelBundle
from smartrec.serving import RecommendRequest
from smartrec.serving.service import COMMIT_MARGIN_MS
from smartrec.training.pipeline_fit import fit_pipeline
from tests.api.conftest import (
    AppFactory,
    World,
    assert_problem,
    error_fields,
    load_world,
    open_client,
    post_events,
    runtime,
)

#: Small models; LightGBM on one thread (its OpenMP threads crawl on a busy 2-core machine).
MODELS: dict[str, dict[str, Any]] = {"als": {"factors": 16, "iterations": 8}, "ease": {"l2": 50.0}}
RANKER = {"n_estimators": 60, "min_child_samples": 10, "num_threads": 1}


@dataclass
class Served:
    client: TestClient
    world: World
    bundle: ModelBundle  # its pipeline is never installed itself: copies are (see install)

    @property
    def pipeline(self) -> TrainedPipeline:
        pipeline: TrainedPipeline = self.bundle.pipeline
        return pipeline

    def install(self, pipeline: TrainedPipeline | None = None, version: str = "p1") -> None:
        """Serve a copy of the pipeline: serving extends a pipeline's content index in place,
        so the pristine one is kept for the next install."""
        copy = dataclasses.replace(pipeline or self.pipeline)
        bundle = dataclasses.replace(self.bundle, pipeline=copy, meta={"version": version})
        runtime(self.client).service.install(bundle)


@pytest.fixture(scope="module")
def fitted(make_module_client: AppFactory, world: World) -> ModelBundle:
    """The pipeline fitted once (the slow part); never installed itself, only copies are."""
    client = make_module_client()
    load_world(client, world)
    trainer = runtime(client).trainer
    data = trainer.load_data()
    spec = load_spec().with_models(MODELS)
    ranker = spec.ranker.model_copy(
        update={"min_users": 10, "params": {**spec.ranker.params, **RANKER}}
    )
    spec = spec.model_copy(update={"ranker": ranker})
    pipeline = fit_pipeline(data, spec, trainer.catalog)
    assert pipeline.info["ranker"] == "lightgbm", pipeline.info
    return ModelBundle(
        model=create("ease", l2=50.0).fit(data),
        popularity=create("popularity").fit(data),
        items=data.items,
        users=data.users,
        pipeline=pipeline,
    )


@pytest.fixture()
def served(
    make_client: AppFactory, world: World, fitted: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> Served:
    """A fresh app per test: the world loaded, the pipeline installed. Installing freezes the
    heap after a full collection, a second in a test process full of MLflow and LightGBM that no
    test here looks at: skipped, so that an app costs a fifth of a second."""
    monkeypatch.setattr("smartrec.serving.service.freeze_heap", lambda: None)
    client = make_client()
    load_world(client, world)
    result = Served(client, world, fitted)
    result.install()
    assert runtime(client).service.state.pipeline is not None
    return result


# --------------------------------------------------------------------------- helpers
def recs(client: TestClient, user: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids_of(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def kinds(item: dict[str, Any]) -> list[str]:
    return [r["kind"] for r in item["reasons"]]


def walk(client: TestClient, user: str, n: int = 7, **params: Any) -> list[list[str]]:
    """Every page of a session, to the end."""
    pages: list[list[str]] = []
    token: str | None = None
    for _ in range(100):
        query = {"n": n, **params, **({"page_token": token} if token else {})}
        body = recs(client, user, **query)
        pages.append(ids_of(body))
        token = body["next_page_token"]
        if token is None:
            return pages
        assert pages[-1], "a page with a next token is not empty"
    raise AssertionError("paging never ended")


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post_items(client: TestClient, items: list[dict[str, Any]]) -> None:
    response = client.post("/v1/items", json={"items": items})
    assert response.status_code == 200, response.text


def new_user(served: Served, category: str, k: int = 8) -> tuple[str, list[str]]:
    """A user (fresh id) who bought k items of one category only; returns (user, items)."""
    user = fresh("u")
    items = sorted(i for i, cats in served.world.item_categories.items() if cats == [category])
    history = items[:k]
    assert len(history) >= 3, (category, items)
    now = int(time.time())
    post_events(
        served.client,
        [
            {"user_id": user, "item_id": i, "type": "purchase", "timestamp": now - 60 + j}
            for j, i in enumerate(history)
        ],
    )
    return user, history


def world_item(world: World, item_id: str) -> dict[str, Any]:
    return next(dict(i) for i in world.items if i["item_id"] == item_id)


def busy_users(world: World, k: int = 6) -> list[str]:
    return sorted(world.seen, key=lambda u: (-len(world.seen[u]), u))[:k]


def catalog(served: Served, item_ids: list[str]) -> dict[str, Any]:
    rows: dict[str, Any] = runtime(served.client).store.catalog(item_ids)
    return rows


def new_items(category: str, k: int, prefix: str = "new", **extra: Any) -> list[dict[str, Any]]:
    """Brand-new catalogue items (fresh ids, published now) that look like the category's."""
    now = int(time.time())
    out = []
    for _ in range(k):
        item_id = fresh(prefix)
        out.append(
            {
                "item_id": item_id,
                "title": f"{category.title()} item {item_id}",
                "categories": [category],
                "attributes": {"price": 12.5, "brand": "brand_0"},
                "published_at": now,
                **extra,
            }
        )
    return out


# --------------------------------------------------------------------------- filters
def test_filter_by_category(served: Served) -> None:
    for user in busy_users(served.world, 4):
        for category in ("books", "garden"):
            got = ids_of(recs(served.client, user, n=10, filter=f'category in ["{category}"]'))
            assert got, (user, category)
            rows = catalog(served, got)
            assert all(category in rows[i].categories for i in got), (user, category, got)
            assert not set(got) & served.world.seen[user]


def test_filter_by_numeric_attribute(served: Served) -> None:
    narrowed = False
    for user in busy_users(served.world, 4):
        plain = ids_of(recs(served.client, user, n=10))
        expr = "attributes.price >= 20 and not category == 'home'"
        got = ids_of(recs(served.client, user, n=10, filter=expr))
        assert got, user
        rows = catalog(served, got + plain)
        for i in got:
            assert rows[i].attributes["price"] >= 20, (i, rows[i])
            assert "home" not in rows[i].categories, (i, rows[i])
        narrowed |= any(
            rows[i].attributes.get("price", 0) < 20 or "home" in rows[i].categories for i in plain
        )
        # Paging with a filter: every page filtered, nothing twice.
        pages = walk(served.client, user, n=4, filter="attributes.price < 15")
        flat = [i for p in pages for i in p]
        assert flat and len(flat) == len(set(flat))
        assert all(catalog(served, flat)[i].attributes["price"] < 15 for i in flat)
    assert narrowed, "the filter never removed anything: the test proves nothing"


@pytest.mark.parametrize(
    ("expr", "position"),
    [
        ('category in ["books"', 21),
        ("attributes.price >= ", 21),
        ("attributes.price >> 3", None),
        ("colour == 'red'", 1),
        ("category == 'a' and", None),
        ("attributes.price > 1e999", None),
        ('title == "unterminated', None),
    ],
)
def test_bad_filter_is_422_with_a_position(served: Served, expr: str, position: int | None) -> None:
    user = served.world.heaviest_user()
    response = served.client.get(f"/v1/users/{user}/recommendations", params={"filter": expr})
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["filter"], problem
    assert "position" in problem["detail"], problem
    if position is not None:
        assert f"position {position}" in problem["detail"], problem


HOSTILE = [
    "__import__('os')",
    "__import__('os').system('touch /tmp/smartrec-pwned')",
    "item_id == __class__",
    "(" * 5000,
    "(" * 4000,
    "not " * 1000 + "item_id == 'x'",
    "item_id in [" + ",".join(["1"] * 1001) + "]",
    " or ".join(["title==1"] * 300),
    "item_id == 'a\x00b'",
    "item_id == '\\ud800'",
    "item_id == '\\u12'",
    "'" * 3000,
    "[" * 3000,
    "category in [[[[]]]]",
    "9" * 4000 + " == attributes.x",
    "attributes.price > -",
    "\u202e item_id == 'x'",
]


@pytest.mark.parametrize("expr", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_filters_never_500(served: Served, expr: str) -> None:
    user = served.world.heaviest_user()
    response = served.client.get(f"/v1/users/{user}/recommendations", params={"filter": expr})
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["filter"], problem


@pytest.mark.parametrize(
    "expr",
    [
        "attributes.__class__.__name__ == 'dict'",
        "attributes.__dict__ != null or attributes.keys != null",
        "attributes." + ".".join(["a"] * 1500) + " == 1",
        "(" * 30 + "item_id == 'x'" + ")" * 30,
    ],
    ids=["dunder", "dict", "deep-path", "parens"],
)
def test_odd_but_valid_filters_match_nothing(served: Served, expr: str) -> None:
    """Attribute paths are dictionary keys, never Python attributes: nothing leaks, nothing
    matches."""
    user = served.world.heaviest_user()
    response = served.client.get(f"/v1/users/{user}/recommendations", params={"filter": expr})
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


# --------------------------------------------------------------------------- hidden items
def test_unavailable_and_hidden_items_never_served(served: Served) -> None:
    client, world = served.client, served.world
    user = world.heaviest_user()
    first = ids_of(recs(client, user, n=10))
    gone, hidden = first[0], first[1]
    before = {i: world_item(world, i) for i in (gone, hidden)}
    try:
        post_items(
            client,
            [
                {**before[gone], "available": False},
                {**before[hidden], "attributes": {**before[hidden]["attributes"], "hidden": True}},
            ],
        )
        for params in ({}, {"exclude_seen": False}, {"diversity": 0.5}, {"exploration": 0.3}):
            flat = [i for p in walk(client, user, n=7, **params) for i in p]
            assert flat, params
            assert gone not in flat and hidden not in flat, params
        for other in busy_users(world, 6):
            got = ids_of(recs(client, other, n=50, exclude_seen=False))
            assert gone not in got and hidden not in got, other
            got = ids_of(recs(client, other, n=20, filter=f"item_id in ['{gone}', '{hidden}']"))
            assert got == [], other
        similar = client.get(f"/v1/items/{first[2]}/similar", params={"n": 50})
        assert similar.status_code == 200, similar.text
        assert not {gone, hidden} & set(ids_of(similar.json()))
    finally:
        post_items(client, list(before.values()))
    back = ids_of(recs(client, user, n=10))
    assert gone in back and hidden in back, back


# --------------------------------------------------------------------------- negative feedback
def test_negative_feedback_is_never_recommended(served: Served) -> None:
    client = served.client
    negative = [t for t, w in runtime(client).settings.event_weights.items() if w < 0]
    assert negative, "no negative event type configured"
    user, history = new_user(served, "garden")
    top = ids_of(recs(client, user, n=10, exclude_seen=False))
    disliked = next(i for i in top if i not in history)
    assert disliked in ids_of(recs(client, user, n=10))
    post_events(
        client,
        [
            {
                "user_id": user,
                "item_id": disliked,
                "type": negative[0],
                "timestamp": int(time.time()),
            }
        ],
    )
    for params in ({}, {"exclude_seen": False}, {"exclude_seen": False, "exploration": 0.5}):
        flat = [i for p in walk(client, user, n=7, **params) for i in p]
        assert flat, params
        assert disliked not in flat, params
    # ... and it is no reason for anything either.
    body = recs(client, user, n=30, exclude_seen=False)
    sources = {r.get("item_id") for item in body["items"] for r in item["reasons"]}
    assert disliked not in sources


def test_negative_feedback_on_an_item_newer_than_the_model(served: Served) -> None:
    """Items added after training live past the model's item axis: feedback on them counts."""
    client = served.client
    user, _ = new_user(served, "books")
    fresh_items = new_items("books", 3, prefix="neg")
    post_items(client, fresh_items)
    mine = {i["item_id"] for i in fresh_items}
    body = recs(client, user, n=100)
    shown = [i for i in ids_of(body) if i in mine]
    assert sorted(shown) == sorted(mine), "new items like the user's history are reachable"
    viewed, disliked, untouched = shown
    now = int(time.time())
    post_events(
        client,
        [
            {"user_id": user, "item_id": viewed, "type": "view", "timestamp": now},
            {"user_id": user, "item_id": disliked, "type": "dislike", "timestamp": now},
        ],
    )
    flat = [i for p in walk(client, user, n=10, exploration=0.5) for i in p]
    assert viewed not in flat, "a seen item came back"
    assert disliked not in flat, "a disliked item came back"
    assert untouched in flat
    flat = [i for p in walk(client, user, n=10, exclude_seen=False, exploration=0.5) for i in p]
    assert disliked not in flat, "a disliked item came back with exclude_seen=false"
    assert viewed in flat and untouched in flat


# --------------------------------------------------------------------------- boosts
def test_promoted_item_comes_first(served: Served) -> None:
    client, world = served.client, served.world
    user = world.heaviest_user()
    # A fresh install: the user's feed may date from before items that earlier tests added,
    # and the promoted version below ranks afresh.
    served.install()
    plain = recs(client, user, n=20)
    low = ids_of(plain)[-1]
    assert all("promoted" not in kinds(i) for i in plain["items"])
    base = served.pipeline
    rules = base.spec.rules.model_copy(update={"promoted": [low], "boost_promoted": 1e6})
    promoted = dataclasses.replace(base, spec=base.spec.model_copy(update={"rules": rules}))
    try:
        served.install(promoted, version="promoted")
        body = recs(client, user, n=10)
        assert body["model_version"] == "promoted"
        first = body["items"][0]
        assert first["item_id"] == low, ids_of(body)
        assert {"kind": "promoted"} in first["reasons"]
        assert all("promoted" not in kinds(i) for i in body["items"][1:])
        # The rest keeps its order.
        assert ids_of(body)[1:] == [i for i in ids_of(plain) if i != low][:9]
        # A promoted item still obeys the filter and exclusions.
        got = ids_of(recs(client, user, n=10, filter="attributes.price < 0"))
        assert got == []
    finally:
        served.install()
    assert base.spec.rules.promoted == [], "the shared pipeline was changed"
    assert ids_of(recs(client, user, n=20)) == ids_of(plain)


def test_promoted_filter_boosts_matching_items(served: Served) -> None:
    client, world = served.client, served.world
    user = world.heaviest_user()
    plain = ids_of(recs(client, user, n=30))
    rows = catalog(served, plain)
    cheap = [i for i in plain if rows[i].attributes["price"] < 8]
    assert cheap and cheap[0] != plain[0], "no cheap item below the top: nothing to prove"
    base = served.pipeline
    rules = base.spec.rules.model_copy(
        update={"promoted_filter": "attributes.price < 8", "boost_promoted": 1e6}
    )
    try:
        served.install(
            dataclasses.replace(base, spec=base.spec.model_copy(update={"rules": rules})),
            version="promoted-filter",
        )
        body = recs(client, user, n=len(cheap) + 2)
        head = body["items"][: len(cheap)]
        assert [i["item_id"] for i in head] == cheap
        assert all({"kind": "promoted"} in i["reasons"] for i in head)
        assert all("promoted" not in kinds(i) for i in body["items"][len(cheap) :])
    finally:
        served.install()


# --------------------------------------------------------------------------- diversity
def page_categories(served: Served, ids: list[str]) -> list[list[str]]:
    rows = catalog(served, ids)
    return [rows[i].categories for i in ids]


def test_max_per_category_one(served: Served) -> None:
    """A category repeats on the page only once the items before it span every category (items
    have one or two categories: two items can use all four)."""
    everything = set(served.world.categories)
    repeated_without_cap = False
    for user in busy_users(served.world, 8):
        for n in (2, 3, 4):
            plain = page_categories(served, ids_of(recs(served.client, user, n=n)))
            flat = [c for cats in plain for c in cats]
            repeated_without_cap |= len(flat) != len(set(flat))
            got = ids_of(recs(served.client, user, n=n, max_per_category=1))
            assert len(got) == n
            used: set[str] = set()
            for item, cats in zip(got, page_categories(served, got), strict=True):
                assert used.isdisjoint(cats) or used == everything, (user, n, got, item)
                used |= set(cats)
    assert repeated_without_cap, "pages never repeated a category: the cap proves nothing"


def test_max_per_category_is_a_preference_not_a_short_page(served: Served) -> None:
    user = served.world.heaviest_user()
    body = recs(served.client, user, n=10, max_per_category=1)
    assert len(body["items"]) == 10
    assert len(set(ids_of(body))) == 10


def test_lower_diversity_lambda_gives_more_categories(served: Served) -> None:
    strictly = False
    for user in busy_users(served.world, 8):
        relevant = ids_of(recs(served.client, user, n=5, diversity=1.0))
        varied = ids_of(recs(served.client, user, n=5, diversity=0.2))
        assert len(varied) == 5 and set(varied).isdisjoint(served.world.seen[user])
        n_rel = len({c for cats in page_categories(served, relevant) for c in cats})
        n_var = len({c for cats in page_categories(served, varied) for c in cats})
        assert n_var >= n_rel, (user, relevant, varied)
        strictly |= n_var > n_rel
        assert relevant == ids_of(recs(served.client, user, n=5)), "1.0 is the default: off"
    assert strictly, "diversity never changed a page"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"diversity": 1.5}, "diversity"),
        ({"diversity": -0.1}, "diversity"),
        ({"max_per_category": 0}, "max_per_category"),
        ({"exploration": 0.9}, "exploration"),
        ({"exploration": "lots"}, "exploration"),
    ],
)
def test_bad_rule_parameters_are_422(served: Served, params: dict[str, Any], field: str) -> None:
    user = served.world.heaviest_user()
    response = served.client.get(f"/v1/users/{user}/recommendations", params=params)
    problem = assert_problem(response, 422)
    assert error_fields(problem) == [field]


# --------------------------------------------------------------------------- exploration
def test_exploration_shows_new_items_off_the_first_slot(served: Served) -> None:
    client = served.client
    user, _ = new_user(served, "garden")
    # New items of another kind first: the ranker cannot tell new items apart (no model score),
    # exploration must still pick those that look like the user's history.
    decoys = new_items("electronics", 4, prefix="decoy")
    post_items(client, decoys)
    posted = new_items("garden", 4, prefix="explore")
    post_items(client, posted)
    mine = {i["item_id"] for i in posted}
    body = recs(client, user, n=10, exploration=0.3)
    explored = [
        (pos, item["item_id"])
        for pos, item in enumerate(body["items"])
        if {"kind": "new", "exploration": True} in item["reasons"]
    ]
    assert explored, body
    assert all(pos != 0 for pos, _ in explored)
    assert len(explored) <= 3  # 30 % of 10
    assert len(explored) == 3, body
    assert {i for _, i in explored} <= mine, (explored, mine)
    assert [pos for pos, _ in explored] == [2, 5, 9]
    assert not set(ids_of(body)) & served.world.seen.get(user, set())
    # Without exploration: no exploration reasons, and the page is the plain ranking.
    for share in (0, 0.0):
        plain = recs(client, user, n=10, exploration=share)
        assert all(r.get("exploration") is not True for i in plain["items"] for r in i["reasons"])
    assert ids_of(recs(client, user, n=10)) == ids_of(plain)
    # The explored items are new ones: they carry a publication inside the "new" window.
    rows = catalog(served, [i for _, i in explored])
    assert all(rows[i].published_at is not None for _, i in explored)


def test_an_item_without_a_publication_time_is_new_from_when_the_catalogue_stored_it(
    served: Served,
) -> None:
    """No published_at and no events: its birth is when the catalogue first stored it, so it
    is new (explored, boosted, reason "new"); a publication time, when given, still wins."""
    client = served.client
    user, _ = new_user(served, "books")
    undated = new_items("books", 3, prefix="undated", published_at=None)
    old = new_items("books", 3, prefix="oldpub", published_at=int(time.time()) - 400 * 86400)
    post_items(client, undated + old)
    rows = catalog(served, [i["item_id"] for i in undated])
    assert all(r.published_at is None for r in rows.values())
    long_page = recs(client, user, n=200)
    reasons = {item["item_id"]: item["reasons"] for item in long_page["items"]}
    shown = [i["item_id"] for i in undated if i["item_id"] in reasons]
    assert shown, long_page  # reached through content retrieval
    assert all({"kind": "new"} in reasons[i] for i in shown), {i: reasons[i] for i in shown}
    for item in old:
        if item["item_id"] in reasons:
            assert {"kind": "new"} not in reasons[item["item_id"]], reasons[item["item_id"]]
    # Exploration slots go to new items only: the undated ones may compete with items other
    # tests published just now, never with the long-published ones.
    body = recs(client, user, n=10, exploration=0.3)
    explored = {
        item["item_id"]
        for item in body["items"]
        if {"kind": "new", "exploration": True} in item["reasons"]
    }
    assert len(explored) == 3, body
    assert not explored & {i["item_id"] for i in old}


# --------------------------------------------------------------------------- paging
def test_paging_to_the_end_never_repeats(served: Served) -> None:
    client, world = served.client, served.world
    user = world.heaviest_user()
    pages = walk(client, user, n=7)
    flat = [i for p in pages for i in p]
    assert len(pages) >= 3
    assert all(len(p) == 7 for p in pages[:-1])
    assert len(flat) == len(set(flat)), flat
    unseen = set(world.item_categories) - world.seen[user]
    assert unseen <= set(flat), unseen - set(flat)
    assert not set(flat) & world.seen[user]


def test_paging_survives_new_events_between_pages(served: Served) -> None:
    client = served.client
    user, history = new_user(served, "electronics")
    first = recs(client, user, n=7, exclude_seen=False)
    page1 = ids_of(first)
    assert first["next_page_token"]
    # The user touches page-1 items (and others): the ranking moves, seen items are allowed.
    now = int(time.time())
    others = [i for i in served.world.item_categories if i not in page1 and i not in history]
    post_events(
        client,
        [
            {"user_id": user, "item_id": i, "type": "purchase", "timestamp": now + k}
            for k, i in enumerate(page1[:4] + others[:3])
        ],
    )
    second = recs(client, user, n=7, exclude_seen=False, page_token=first["next_page_token"])
    page2 = ids_of(second)
    assert len(page2) == 7
    assert not set(page1) & set(page2), (page1, page2)
    seen_so_far = page1 + page2
    token = second["next_page_token"]
    while token:
        body = recs(client, user, n=7, exclude_seen=False, page_token=token)
        seen_so_far += ids_of(body)
        token = body["next_page_token"]
    assert len(seen_so_far) == len(set(seen_so_far))


@pytest.mark.parametrize(
    "token", ["garbage", "eyJvZmZzZXQiOiA3fQ", "AAAA", "Ag", "!!!", "A" * 16_000]
)
def test_garbage_page_token_is_422(served: Served, token: str) -> None:
    user = served.world.heaviest_user()
    response = served.client.get(f"/v1/users/{user}/recommendations", params={"page_token": token})
    problem = assert_problem(response, 422)
    assert error_fields(problem) == ["page_token"]


# --------------------------------------------------------------------------- explanations
def test_every_item_is_explained(served: Served) -> None:
    world = served.world
    titles = {i["item_id"]: i["title"] for i in world.items}
    similar = popular = 0
    for user in busy_users(world, 6):
        for params in ({}, {"diversity": 0.5}, {"category": "books"}):
            body = recs(served.client, user, n=15, **params)
            assert body["items"]
            for item in body["items"]:
                assert item["reasons"], item
                for reason in item["reasons"]:
                    assert isinstance(reason, dict) and isinstance(reason.get("kind"), str)
                    if reason["kind"] == "similar_to":
                        similar += 1
                        assert reason["item_id"] in world.seen[user], (user, reason)
                        assert reason["title"] == titles[reason["item_id"]], reason
                        assert reason["item_id"] != item["item_id"]
                    if reason["kind"] == "popular_in":
                        popular += 1
                        assert isinstance(reason.get("window"), str) and reason["window"]
    assert similar and popular


# --------------------------------------------------------------------------- cold items
def test_new_item_is_reachable_by_content(served: Served) -> None:
    client, world = served.client, served.world
    user, history = new_user(served, "home")
    twin_of = history[0]
    twin = {
        **world_item(world, twin_of),
        "item_id": fresh("cold"),
        "published_at": int(time.time()),
    }
    sibling = {**twin, "item_id": fresh("cold")}
    post_items(client, [twin, sibling])
    # Its similar items, by content, name it.
    response = client.get(f"/v1/items/{twin['item_id']}/similar", params={"n": 5})
    body = response.json()
    assert response.status_code == 200 and len(body["items"]) == 5, body
    for item in body["items"]:
        assert {
            "kind": "similar_to",
            "item_id": twin["item_id"],
            "title": twin["title"],
            "via": "content",
        } in item["reasons"], item
    got = ids_of(body)
    assert got[0] in (sibling["item_id"], twin_of), got
    rows = catalog(served, got)
    assert all("home" in rows[i].categories for i in got), got
    # The warm item it copies answers from the model; a cold item of the same kind, by content,
    # reaches the new ones.
    warm = client.get(f"/v1/items/{twin_of}/similar", params={"n": 10})
    assert warm.status_code == 200 and warm.json()["items"]
    assert twin["item_id"] not in ids_of(warm.json())  # the model has never seen it
    # Recommendations: on a long page, and on an exploration slot.
    assert twin["item_id"] in ids_of(recs(client, user, n=100))
    explored = recs(client, user, n=10, exploration=0.5)
    assert {twin["item_id"], sibling["item_id"]} & set(ids_of(explored)), explored


def test_an_edited_item_is_revectorised_for_content(served: Served) -> None:
    """Editing an item's title, categories and attributes moves its content vector at once: its
    similar items follow the edit, without a retraining."""
    client, world = served.client, served.world
    home = sorted(i for i, cats in world.item_categories.items() if cats == ["home"])
    garden = sorted(i for i, cats in world.item_categories.items() if cats == ["garden"])
    item = {**world_item(world, home[0]), "item_id": fresh("edit")}
    post_items(client, [item])

    def similar() -> list[str]:
        response = client.get(f"/v1/items/{item['item_id']}/similar", params={"n": 5})
        assert response.status_code == 200, response.text
        return ids_of(response.json())

    before = similar()
    rows = catalog(served, before)
    assert all("home" in rows[i].categories for i in before), before
    like_garden = world_item(world, garden[0])
    post_items(client, [{**like_garden, "item_id": item["item_id"]}])
    after = similar()
    rows = catalog(served, after)
    assert all("garden" in rows[i].categories for i in after), after
    assert garden[0] in after


def test_truncated_page_token_is_refused_not_forgotten(served: Served) -> None:
    """A token cut short (copy-paste, a proxy's URL limit) must not silently forget the items
    already shown: refused with 422, or at least no repeats."""
    client, world = served.client, served.world
    user = world.heaviest_user()
    first = recs(client, user, n=7)
    second = recs(client, user, n=7, page_token=first["next_page_token"])
    token = second["next_page_token"]
    shown = set(ids_of(first) + ids_of(second))
    for cut in range(1, len(token) - 4):
        response = client.get(
            f"/v1/users/{user}/recommendations", params={"n": 7, "page_token": token[:-cut]}
        )
        if response.status_code == 200:
            assert not set(ids_of(response.json())) & shown, cut
        else:
            assert error_fields(assert_problem(response, 422)) == ["page_token"]


def test_items_added_before_the_model_is_installed_are_reachable(served: Served) -> None:
    """An item posted while a model trains (or before a restart) is in no model: serving must
    still put it on the content axis when the model is installed."""
    client = served.client
    user, _ = new_user(served, "electronics")
    early, later = new_items("electronics", 2, prefix="early")
    post_items(client, [early])
    stamped = now_ms()
    while now_ms() == stamped:  # the next row gets a later updated_at
        time.sleep(0.001)
    post_items(client, [later])  # the catalogue moves on after it
    try:
        served.install(version="p2")  # a hot swap, or a restart that loads the champion
        body = client.get(f"/v1/items/{early['item_id']}/similar", params={"n": 5}).json()
        assert body["items"], body
        assert all(
            r
            == {
                "kind": "similar_to",
                "item_id": early["item_id"],
                "title": early["title"],
                "via": "content",
            }
            for item in body["items"]
            for r in item["reasons"]
        ), body
        assert early["item_id"] in ids_of(recs(client, user, n=100))
    finally:
        served.install()


def test_new_item_text_counts_for_content(served: Served) -> None:
    """The free text of an item added after training is part of its content, as in training."""
    client = served.client
    item = {
        "item_id": fresh("text"),
        "title": "Zyxwv",
        "text": "garden garden garden",
        "published_at": int(time.time()),
    }
    post_items(client, [item])
    body = client.get(f"/v1/items/{item['item_id']}/similar", params={"n": 5}).json()
    assert len(body["items"]) == 5, body
    assert all(
        {"kind": "similar_to", "item_id": item["item_id"], "title": "Zyxwv", "via": "content"}
        in i["reasons"]
        for i in body["items"]
    ), body
    rows = catalog(served, ids_of(body))
    assert all("garden" in (rows[i].title or "").lower() for i in ids_of(body)), body


def test_rankings_use_the_pipeline_and_explain(served: Served) -> None:
    """POST /v1/rankings: the caller's list scored by the same pipeline, each item explained;
    items it recommends first rank above items it ranks far down; unknown ids go last."""
    user = busy_users(served.world)[0]
    pages = walk(served.client, user, n=10)
    assert len(pages) >= 3
    strong, weak = pages[0][:4], pages[-1][-4:]
    given = weak + strong + ["no-such-item"]
    response = served.client.post("/v1/rankings", json={"user_id": user, "item_ids": given})
    assert response.status_code == 200
    body = response.json()
    ranked = [i["item_id"] for i in body["items"]]
    assert sorted(ranked) == sorted(given)
    assert ranked[-1] == "no-such-item"
    assert body["items"][-1]["reasons"] == [{"kind": "unknown_item"}]
    assert len(set(ranked[:4]) & set(strong)) >= 3
    assert all(i["reasons"] for i in body["items"])
    assert body["model_version"] == "p1"


def test_feeds_answer_until_the_user_acts(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's ranking is kept as a feed: later requests with other parameters run the
    rules only, until an event of the user makes it stale."""
    service = runtime(served.client).service
    calls: list[str] = []
    real = service._rank_user

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "_rank_user", counting)
    category = served.world.item_categories[served.world.items[0]["item_id"]][0]
    user, _ = new_user(served, category)
    first = recs(served.client, user, n=5)
    again = recs(served.client, user, n=5)
    assert again == first and len(calls) == 1  # the second answer came from the feed
    six = recs(served.client, user, n=6, diversity=0.8)
    assert len(calls) == 1 and len(six["items"]) == 6  # other rules: the same feed
    page2 = recs(served.client, user, n=5, page_token=first["next_page_token"])
    assert len(calls) == 1 and not set(ids_of(page2)) & set(ids_of(first))
    # An event from the user drops the feed, so the next answer is ranked afresh and never
    # shows the item just bought.
    bought = first["items"][0]["item_id"]
    post_events(
        served.client,
        [{"user_id": user, "item_id": bought, "type": "purchase", "timestamp": int(time.time())}],
    )
    after = recs(served.client, user, n=5)
    assert len(calls) == 2 and bought not in ids_of(after)
    assert service.feed_status()["hits"] >= 3


def test_a_narrow_filter_finds_items_retrieval_did_not(served: Served) -> None:
    """Filters run after ranking; when few candidates pass, matching items are looked up
    further down the catalogue instead of answering with an empty page."""
    spec = served.pipeline.spec
    narrow = spec.model_copy(update={"ranker": spec.ranker.model_copy(update={"candidates": 10})})
    served.install(dataclasses.replace(served.pipeline, spec=narrow), version="narrow")
    try:
        user = busy_users(served.world)[0]
        candidates = set(ids_of(recs(served.client, user, n=10)))
        unseen = [
            i["item_id"]
            for i in served.world.items
            if i["item_id"] not in candidates and i["item_id"] not in served.world.seen[user]
        ]
        assert unseen
        target = unseen[-1]
        body = recs(served.client, user, n=5, filter=f'item_id == "{target}"')
        assert ids_of(body) == [target]
        assert body["items"][0]["reasons"] == [{"kind": "popular"}]
    finally:
        served.install()


# --------------------------------------------------------------------------- feeds
def test_feeds_built_ahead_answer_without_ranking_or_a_database_read(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feeds for the most active users are built in batches (one ranker call per batch) and
    give the same pages as ranking afresh; a request answered from one reads no database."""
    client = served.client
    service = runtime(client).service
    served.install(version="feeds-ahead")
    users = busy_users(served.world, 4)
    assert service.build_feeds(10_000) >= len(users)
    assert service.feed_status()["build"]["done"]
    ahead = {u: recs(client, u, n=10, diversity=0.7) for u in users}
    ranked: list[str] = []
    real = service._rank_user
    monkeypatch.setattr(service, "_rank_user", lambda *a, **k: ranked.append(a[1]) or real(*a, **k))

    def no_reads(*_: Any, **__: Any) -> Any:
        raise AssertionError("a feed answer read the database")

    with monkeypatch.context() as m:
        m.setattr(service.store, "user_history", no_reads)
        m.setattr(service.store, "catalog", no_reads)
        for u in users:
            assert recs(client, u, n=10, diversity=0.7) == ahead[u]
            assert service.recommend_fast(RecommendRequest(u, 10)) is not None
        # A filter reads item rows: not on the event loop, but still from the feed.
        narrow = RecommendRequest(users[0], 10, filter="attributes.price >= 0")
        assert service.recommend_fast(narrow) is None
    assert ranked == []
    service._feeds.clear()  # ranked afresh, one request at a time: the same pages
    for u in users:
        assert recs(client, u, n=10, diversity=0.7) == ahead[u]
    assert sorted(ranked) == sorted(users)


def test_an_event_stored_by_another_process_drops_the_feed_at_the_next_poll(
    served: Served,
) -> None:
    from smartrec.domain import EventRecord

    client = served.client
    service = runtime(client).service
    served.install(version="feeds-poll")
    service.poll_events()  # sets the mark
    user = busy_users(served.world, 1)[0]
    first = ids_of(recs(client, user, n=10))
    assert user in service._feeds
    bought = first[0]
    # Another process (an importer, another replica) stores an event of the user.
    now_ms = int(time.time() * 1000)
    runtime(client).store.add_events(
        [EventRecord(fresh("e"), user, bought, "purchase", None, now_ms)]
    )
    assert service.poll_events() == 1
    assert user not in service._feeds
    after = ids_of(recs(client, user, n=10))
    assert bought not in after
    # A feed built after the poll is kept by the next poll once the commit margin has passed:
    # here it is within it, so it is dropped again (at most one rebuild per event).
    assert service.poll_events() <= 1


def test_a_feed_keeps_items_hidden_for_a_while(served: Served) -> None:
    """Feeds are ranked over the whole catalogue and masked per request: an item hidden and
    shown again comes back without a rebuild, and is never served while hidden."""
    client, world = served.client, served.world
    service = runtime(client).service
    served.install(version="feeds-hidden")
    # A user no poll has seen an event of (a polled event keeps feeds from being stored for
    # the commit margin).
    user, _ = new_user(served, world.item_categories[world.items[0]["item_id"]][0])
    first = ids_of(recs(client, user, n=10))
    target = first[0]
    before = world_item(world, target)
    hits = service.feed_status()["hits"]
    try:
        post_items(client, [{**before, "available": False}])
        hidden = ids_of(recs(client, user, n=10))
        assert target not in hidden and hidden[:9] == first[1:10]
    finally:
        post_items(client, [before])
    assert ids_of(recs(client, user, n=10)) == first
    assert service.feed_status()["hits"] == hits + 2  # both from the feed
    # Operators see the same on /metrics.
    from tests.api.test_health import sample

    text = client.get("/metrics").text
    assert sample(text, "smartrec_feeds", what="hits") == service.feed_status()["hits"]
    assert sample(text, "smartrec_feeds", what="cached") == len(service._feeds) >= 1


def test_background_feed_build_and_event_poll(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """In a running server: feeds are built after the install without a request, and an
    event stored by another process drops the user's feed within the poll interval."""
    from smartrec.domain import EventRecord

    with ExitStack() as stack:
        client = open_client(
            stack,
            tmp_path_factory.mktemp("feeds-home"),
            feed_poll_interval_s=0.1,
            feed_precompute_users=5,
        )
        load_world(client, served.world)
        loaded = now_ms()
        service = runtime(client).service
        # The world's events were received before ``loaded``: wait until they are past the
        # poll's look-back, so that the poll does not drop the feeds built below.
        while now_ms() <= loaded + COMMIT_MARGIN_MS:
            time.sleep(0.01)
        service.install(dataclasses.replace(served.bundle, meta={"version": "bg"}))
        deadline = time.monotonic() + 60
        while not service.feed_status()["build"].get("done") and time.monotonic() < deadline:
            time.sleep(0.05)
        build = service.feed_status()["build"]
        assert build["done"] and build["built"] == build["target"] == 5, build
        user = runtime(client).store.active_users(1)[0]
        assert user in service._feeds
        item = served.world.items[0]["item_id"]
        event = EventRecord(fresh("e"), user, item, "view", None, int(time.time() * 1000))
        runtime(client).store.add_events([event])
        while user in service._feeds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert user not in service._feeds


def test_an_event_during_a_request_never_leaves_a_stale_feed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request read the history, then the user's event was stored by this process before
    the request stored its ranking: that ranking must not become the user's feed."""
    client = served.client
    service = runtime(client).service
    served.install(version="feeds-race")
    category = served.world.item_categories[served.world.items[0]["item_id"]][0]
    user, _ = new_user(served, category)
    real = service.store.user_history

    def history_then_event(user_id: str, limit: int = 500) -> Any:
        rows = real(user_id, limit)
        service.events_arrived([user_id])  # an event commits right after the read
        return rows

    monkeypatch.setattr(service.store, "user_history", history_then_event)
    recs(client, user, n=10)
    assert user not in service._feeds
    monkeypatch.setattr(service.store, "user_history", real)
    recs(client, user, n=10)
    assert user in service._feeds


def test_paging_from_a_feed_hashes_only_the_feed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Later pages answered from a feed look at the feed's items only (on the event loop,
    hashing the catalogue would stall every request)."""
    client = served.client
    service = runtime(client).service
    served.install(version="feeds-paging")
    user = busy_users(served.world, 3)[2]
    first = recs(client, user, n=5)
    assert user in service._feeds

    def no_catalogue_scan(*_: Any) -> Any:
        raise AssertionError("the catalogue was hashed")

    monkeypatch.setattr(service, "_shown_positions", no_catalogue_scan)
    page2 = service.recommend_fast(RecommendRequest(user, 5, page_token=first["next_page_token"]))
    assert page2 is not None and len(page2.items) == 5
    assert not {r.item_id for r in page2.items} & set(ids_of(first))


# --------------------------------------------------------------------------- the feed lane
def _routed_client(served: Served) -> TestClient:
    """An app without the feed lane, sharing the served app's runtime: every request goes
    through FastAPI's router and the route (no lifespan: the runtime is already running)."""
    from smartrec.api import create_app

    app = create_app(served.client.app.state.settings.model_copy(update={"feed_lane": False}))  # type: ignore[attr-defined]
    app.state.runtime = runtime(served.client)
    return TestClient(app)


def _lane_counts(client: TestClient) -> dict[str, float]:
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    outcomes = ("answered", "ranked", "routed")
    return {o: metrics.feed_lane.labels(o)._value.get() for o in outcomes}


def test_the_feed_lane_answers_as_the_route_does(served: Served) -> None:
    """The lane answers from feeds before FastAPI's router: same status, headers and bytes as
    the route, for plain requests, rules, later pages and anything it hands on (bad input
    gets the route's 422 problem)."""
    lane = served.client
    routed = _routed_client(served)
    served.install(version="feed-lane")
    users = busy_users(served.world, 4)
    category = served.world.item_categories[served.world.items[0]["item_id"]][0]
    # Requests a fresh feed of a busy user always answers: the lane must take them itself.
    lane_takes: list[dict[str, Any]] = [
        {},
        {"n": 3},
        {"n": 7, "diversity": 0.6},
        {"n": 5, "max_per_category": 1},
        {"n": 4, "exclude_seen": "true"},
    ]
    # From the feed or ranked, by the lane either way.
    lane_either: list[dict[str, Any]] = [
        {"n": 6, "exploration": 0.3},
        {"n": 4, "category": category},
    ]
    # Readable, but not from a feed (not excluding seen; a filter that reads rows): ranked.
    lane_ranks: list[dict[str, Any]] = [
        {"n": 4, "exclude_seen": "false"},
        {"n": 4, "filter": 'category in ["x"]'},
    ]
    # Unreadable, out of range, or an error: the router's validation and problem.
    router_takes: list[dict[str, Any]] = [
        {"n": 0},
        {"n": "010"},
        {"n": 10_000},
        {"diversity": 2},
        {"diversity": ".5"},
        {"exploration": 0.9},
        {"page_token": "garbage!"},
        {"n": 3, "unknown": 1},
        {"filter": "category in"},  # a bad expression: the route's 422
    ]
    queries = lane_takes + lane_either + lane_ranks + router_takes
    for user in users:
        recs(routed, user, n=5)  # the feed exists before the comparison
        for params in queries:
            before = _lane_counts(lane)
            a, b = (
                lane.get(f"/v1/users/{user}/recommendations", params=params),
                routed.get(f"/v1/users/{user}/recommendations", params=params),
            )
            assert (a.status_code, a.content) == (b.status_code, b.content), params
            assert a.headers["content-type"] == b.headers["content-type"], params
            assert a.headers["content-length"] == b.headers["content-length"], params
            after = _lane_counts(lane)
            answered = after["answered"] - before["answered"]
            ranked = after["ranked"] - before["ranked"]
            if params in lane_takes:
                assert (answered, ranked) == (1, 0), params
            elif params in lane_ranks:  # readable, but no feed answers it: the lane ranks
                assert (answered, ranked) == (0, 1), params
            elif params in router_takes:  # unreadable, out of range, or an error: the route
                assert after["routed"] - before["routed"] == 1, params
            else:
                assert params in lane_either
                assert answered + ranked == 1, params
        # Pages: the lane's token, followed by either path, never repeats an item.
        first = recs(lane, user, n=4)
        second = recs(routed, user, n=4, page_token=first["next_page_token"])
        assert recs(lane, user, n=4, page_token=first["next_page_token"]) == second
        assert not set(ids_of(first)) & set(ids_of(second))


def test_the_feed_lane_reads_ids_and_values_as_the_router_does(served: Served) -> None:
    """Ids with "/" (the route's ``{user_id:path}``) or a newline (which the route's pattern
    does not match: 404), and values in ``+`` or ``%20`` form."""
    from urllib.parse import quote

    lane, routed = served.client, _routed_client(served)
    served.install(version="feed-lane-ids")
    category = served.world.item_categories[served.world.items[0]["item_id"]][0]
    slash, _ = new_user(served, category)
    slash_user = "team/" + slash
    newline_user = "line\n" + slash
    for user in (slash_user, newline_user):
        post_events(
            lane,
            [
                {"user_id": user, "item_id": i, "type": "purchase", "timestamp": int(time.time())}
                for i in sorted(served.world.items_of(category))[:5]
            ],
        )
    recs(routed, slash_user, n=5)  # builds the feed
    # The router never reaches a newline id, but feeds built ahead (active users) do.
    assert runtime(lane).service.recommend(RecommendRequest(newline_user, 5)).items
    assert newline_user in runtime(lane).service._feeds
    for user, status in ((slash_user, 200), (newline_user, 404)):
        path = f"/v1/users/{quote(user, safe='/')}/recommendations"
        for query in (
            "n=4",
            "n=4&category=" + quote(category),
            "n=4&category=" + category.replace(" ", "+"),
        ):
            before = _lane_counts(lane)["answered"]
            a, b = lane.get(f"{path}?{query}"), routed.get(f"{path}?{query}")
            assert (a.status_code, a.content) == (b.status_code, b.content), (user, query)
            assert a.status_code == status, (user, query)
            if query == "n=4":  # the feed answers it: the lane took it (or, for 404, did not)
                assert _lane_counts(lane)["answered"] - before == (status == 200)
    assert (
        lane.get(f"/v1/users/{quote(slash_user, safe='')}/recommendations?n=4").status_code == 200
    )


def test_the_feed_lane_keeps_metrics_and_ranks_without_a_feed(served: Served) -> None:
    client = served.client
    served.install(version="feed-lane-metrics")
    user, _ = new_user(served, served.world.item_categories[served.world.items[0]["item_id"]][0])
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    ok = metrics.requests.labels("GET", "/v1/users/{user_id}/recommendations", "200")
    before, answered_ok = _lane_counts(client), ok._value.get()
    first = recs(client, user, n=5)  # no feed yet: the lane ranks in a thread, and keeps one
    assert _lane_counts(client)["ranked"] == before["ranked"] + 1
    assert _lane_counts(client)["routed"] == before["routed"]
    assert recs(client, user, n=5) == first
    assert _lane_counts(client)["answered"] == before["answered"] + 1
    assert ok._value.get() == answered_ok + 2  # the lane's answer counted under the route
    text = client.get("/metrics").text
    assert 'smartrec_feed_lane_requests_total{outcome="answered"}' in text
