"""A retriever kind serving has no code for (``covisit``) explains its finds in HTTP answers.

Serving asks each retriever why it found an item (``Retriever.sources`` / ``reason``), so adding
the co-visitation block of ``default_pipeline.toml`` to the pipeline is all it takes for its
reason, ``{"kind": "similar_to", ..., "via": "covisit"}``, to reach answers: from a feed built
ahead, from one built on demand, and from a request no feed answers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smartrec.models import create
from smartrec.pipeline.spec import load_spec, parse_spec
from smartrec.registry import ModelBundle
from smartrec.training.pipeline_fit import fit_pipeline
from tests.api.conftest import AppFactory, World, load_world, runtime

MODELS: dict[str, dict[str, Any]] = {"als": {"factors": 8, "iterations": 4}, "ease": {"l2": 50.0}}
#: The block of default_pipeline.toml, uncommented.
COVISIT = {
    "name": "covisit",
    "kind": "covisit",
    "n": 50,
    "recent": 20,
    "weight": 0.5,
    "params": {"session_gap_hours": 24, "pair_window": 10, "half_life_days": 30, "neighbours": 100},
}


@dataclasses.dataclass
class App:
    client: TestClient
    world: World
    bundle: ModelBundle

    def install(self) -> None:
        """Serve a copy of the pipeline (serving extends its content index in place); the
        install drops every feed, so each test starts without any."""
        assert self.bundle.pipeline is not None
        copy = dataclasses.replace(self.bundle.pipeline)
        runtime(self.client).service.install(dataclasses.replace(self.bundle, pipeline=copy))

    def get(self, user: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(f"/v1/users/{user}/recommendations", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def app(make_module_client: AppFactory, world: World) -> App:
    """One app with the world loaded and a pipeline with a covisit retriever (score fusion:
    the retriever's weight puts its finds on pages)."""
    client = make_module_client(feed_precompute_users=0)
    load_world(client, world)
    trainer = runtime(client).trainer
    data = trainer.load_data()
    spec = load_spec().with_models(MODELS)
    extra = parse_spec({"retrievers": [COVISIT]}).retrievers
    spec = spec.model_copy(
        update={
            "retrievers": [*spec.retrievers, *extra],
            "ranker": spec.ranker.model_copy(update={"kind": "fusion"}),
        }
    )
    pipeline = fit_pipeline(data, spec, trainer.catalog)
    assert [r.kind for r in pipeline.retrievers][-1] == "covisit"
    bundle = ModelBundle(
        model=create("ease", l2=50.0).fit(data),
        popularity=create("popularity").fit(data),
        items=data.items,
        users=data.users,
        meta={"version": "covisit-1"},
        pipeline=pipeline,
    )
    return App(client, world, bundle)


def covisit_reasons(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for item in body["items"] for r in item["reasons"] if r.get("via") == "covisit"]


def users(world: World) -> list[str]:
    """The ten heaviest users: the ones with sessions to co-visit from."""
    return sorted(world.seen, key=lambda u: (-len(world.seen[u]), u))[:10]


def assert_covisit_reason_shape(world: World, user: str, reason: dict[str, Any]) -> None:
    assert list(reason) == ["kind", "item_id", "title", "via"]
    assert reason["kind"] == "similar_to"
    assert reason["item_id"] in world.seen[user]  # an item of the user's history
    titles = {i["item_id"]: i["title"] for i in world.items}
    assert reason["title"] == titles[reason["item_id"]]


def test_covisit_reasons_in_answers_no_feed_gives(app: App) -> None:
    app.install()
    service = runtime(app.client).service
    hits = service.feeds.hits  # the app is shared with the module's other tests
    found = 0
    for user in users(app.world):
        # exclude_seen=false is never answered from a feed: the reasons are worked out per page.
        body = app.get(user, n=20, exclude_seen="false")
        for reason in covisit_reasons(body):
            assert_covisit_reason_shape(app.world, user, reason)
            found += 1
    assert found > 0
    assert service.feeds.hits == hits


def test_covisit_reasons_in_answers_from_feeds(app: App) -> None:
    app.install()
    service = runtime(app.client).service
    heavy = users(app.world)
    assert service.build_feeds(len(app.world.seen)) >= len(heavy)  # built ahead, in batches
    found = 0
    for user in heavy:
        hits = service.feeds.hits
        body = app.get(user, n=20)
        assert service.feeds.hits == hits + 1  # the feed answered
        for reason in covisit_reasons(body):
            assert_covisit_reason_shape(app.world, user, reason)
            found += 1
    assert found > 0


def test_a_feed_answers_with_the_reasons_a_request_works_out(app: App) -> None:
    """The history items a feed keeps per retriever are the ones a page would ask for."""
    app.install()
    service = runtime(app.client).service
    for user in users(app.world):
        hits = service.feeds.hits
        first = app.get(user, n=20)  # ranked now; the feed is stored on the way
        again = app.get(user, n=20)  # from that feed
        assert service.feeds.hits == hits + 1
        assert again["items"] == first["items"]
    assert any(covisit_reasons(app.get(u, n=20)) for u in users(app.world))
