"""The registry over HTTP: versions, aliases, promotion and hot swap (also under load)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smartrec.api.app import create_app
from smartrec.config import Settings
from tests.api.conftest import (
    EASE_ONLY,
    POPULARITY_ONLY,
    AppFactory,
    World,
    assert_problem,
    item_ids,
    load_world,
    post_events,
    runtime,
    train,
)


@dataclass(frozen=True)
class TwoVersions:
    client: TestClient
    world: World
    first: dict[str, Any]  # EASE
    second: dict[str, Any]  # popularity
    champion_after_training: str  # read before any test promotes by hand


@pytest.fixture(scope="module")
def two(make_module_client: AppFactory, world: World) -> TwoVersions:
    """Version 1 = EASE, version 2 = popularity; tests promote what they need first."""
    client = make_module_client()
    load_world(client, world)
    first = train(client, EASE_ONLY)
    second = train(client, POPULARITY_ONLY)
    assert (first["model_version"], second["model_version"]) == ("1", "2")
    return TwoVersions(client, world, first, second, champion(client))


def promote(client: TestClient, version: str) -> dict[str, Any]:
    response = client.post(f"/v1/models/{version}/promote")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def champion(client: TestClient) -> str:
    versions = client.get("/v1/models").json()["versions"]
    holders = [v["version"] for v in versions if "champion" in v["aliases"]]
    assert len(holders) == 1, versions
    return str(holders[0])


def serving(client: TestClient, user: str) -> tuple[str, list[dict[str, Any]]]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model_version"], body["items"]


def test_models_list_versions_aliases_and_metrics(two: TwoVersions) -> None:
    client = two.client
    body = client.get("/v1/models").json()
    assert body["model_name"].startswith("model_")
    versions = body["versions"]
    assert [v["version"] for v in versions] == ["2", "1"]
    by_version = {v["version"]: v for v in versions}
    assert by_version["1"]["params"]["algorithm"] == "ease"
    assert by_version["2"]["params"]["algorithm"] == "popularity"
    for v in versions:
        assert {"ndcg@10", "precision@10", "recall@10"} <= set(v["metrics"]), v
        assert v["run_id"]
        assert isinstance(v["created_at"], int)
    job_metrics = two.first["metrics"]
    assert by_version["1"]["metrics"]["ndcg@10"] == pytest.approx(job_metrics["ndcg@10"])
    assert body["serving_version"] == champion(client)
    # The second job said whether it beat the first; the alias agreed (tests promote later).
    assert two.champion_after_training == ("2" if two.second["result"]["promoted"] else "1")


def test_models_empty_registry(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["versions"] == []
    assert body["serving_version"] is None


def test_promote_moves_champion_and_swaps_serving(two: TwoVersions) -> None:
    client = two.client
    user = two.world.heaviest_user()
    assert promote(client, "1") == {"champion": "1", "serving_version": "1"}
    assert champion(client) == "1"
    version, items = serving(client, user)
    assert version == "1"
    assert items[0]["reasons"][0] == {"kind": "personalized", "algorithm": "ease"}

    assert promote(client, "2") == {"champion": "2", "serving_version": "2"}
    assert champion(client) == "2"
    version, items = serving(client, user)
    assert version == "2"
    assert items[0]["reasons"][0] == {"kind": "personalized", "algorithm": "popularity"}
    assert client.get("/readyz").json()["model_version"] == "2"
    metrics = client.get("/metrics").text
    assert 'smartrec_model_version_info{algorithm="popularity",version="2"} 1.0' in metrics
    assert 'version="1"' not in metrics.split("smartrec_model_version_info gauge")[1]

    # Back to the older one: every endpoint follows.
    promote(client, "1")
    assert serving(client, user)[0] == "1"
    assert client.get("/v1/popular").json()["model_version"] == "1"
    assert client.get("/v1/items/i00/similar").json()["model_version"] == "1"
    session = client.post("/v1/sessions/recommendations", json={"item_ids": ["i00"]})
    assert session.json()["model_version"] == "1"
    ranking = client.post("/v1/rankings", json={"user_id": user, "item_ids": ["i00"]})
    assert ranking.json()["model_version"] == "1"


def test_promote_current_champion_is_a_no_op(two: TwoVersions) -> None:
    promote(two.client, "1")
    assert promote(two.client, "1") == {"champion": "1", "serving_version": "1"}


@pytest.mark.parametrize("version", ["99", "0", "abc"])
def test_promote_unknown_version_is_404(two: TwoVersions, version: str) -> None:
    client = two.client
    promote(client, "2")
    problem = assert_problem(client.post(f"/v1/models/{version}/promote"), 404)
    assert version in problem["detail"]
    assert champion(client) == "2"
    assert runtime(client).service.model_version == "2"


def test_hot_swap_under_load(two: TwoVersions) -> None:
    client = two.client
    users = [two.world.heaviest_user(), "cold-visitor", sorted(two.world.seen)[0]]
    promote(client, "1")
    stop = threading.Event()
    failures: list[str] = []
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(user: str) -> None:
        while not stop.is_set():
            try:
                response = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
                ok = response.status_code == 200 and len(response.json()["items"]) == 5
                with lock:
                    if ok:
                        versions[response.json()["model_version"]] += 1
                    else:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
            except Exception as exc:  # a crash in the thread must fail the test
                with lock:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    try:
        for target in ["2", "1", "2", "1", "2"]:
            with lock:
                done = sum(versions.values())
            assert promote(client, target)["serving_version"] == target
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # let requests run against this version
                with lock:
                    if sum(versions.values()) >= done + 10 or failures:
                        break
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:5]
    assert set(versions) == {"1", "2"}, versions
    assert serving(client, users[0])[0] == "2"


def test_new_events_count_without_retraining(two: TwoVersions) -> None:
    """Serving reads the live history: a user unknown to the model gets personal answers."""
    client = two.client
    promote(client, "1")
    _, before = serving(client, "late-comer")
    assert all(i["reasons"] == [{"kind": "popular"}] for i in before)
    post_events(
        client,
        [
            {"user_id": "late-comer", "item_id": "i00", "type": "purchase"},
            {"user_id": "late-comer", "item_id": "i01", "type": "view"},
        ],
    )
    version, after = serving(client, "late-comer")
    assert version == "1"
    assert after[0]["reasons"][0] == {"kind": "personalized", "algorithm": "ease"}
    assert not {i["item_id"] for i in after} & {"i00", "i01"}


def _reopen(client: TestClient, stack: ExitStack, **overrides: Any) -> TestClient:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    again = Settings(**{**settings.model_dump(), **overrides})
    return stack.enter_context(TestClient(create_app(again)))


def test_a_new_process_loads_the_champion(two: TwoVersions, tmp_path: Path) -> None:
    """Start: the champion is loaded, even with an empty event database (ready on the model)."""
    client = two.client
    promote(client, "1")
    with ExitStack() as stack:
        other = _reopen(client, stack, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
        assert runtime(other).store.count_events() == 0
        ready = other.get("/readyz").json()
        assert (ready["status"], ready["model_version"]) == ("ready", "1")
        assert serving(other, "someone")[0] == "1"


def test_other_processes_follow_a_promotion_by_polling(two: TwoVersions) -> None:
    client = two.client
    promote(client, "1")
    with ExitStack() as stack:
        watcher = _reopen(client, stack, reload_interval_s=0.1)
        assert runtime(watcher).service.model_version == "1"
        promote(client, "2")
        deadline = time.monotonic() + 20
        while runtime(watcher).service.model_version != "2":
            assert time.monotonic() < deadline, "the watcher did not pick up the new champion"
            time.sleep(0.05)
        assert serving(watcher, two.world.heaviest_user())[0] == "2"


def test_catalog_changes_apply_without_retraining(two: TwoVersions) -> None:
    """Availability and categories sent after training take effect at once."""
    client = two.client
    promote(client, "1")
    user = two.world.heaviest_user()
    top = serving(client, user)[1][0]["item_id"]
    original = next(i for i in two.world.items if i["item_id"] == top)

    def everywhere() -> set[str]:
        found = {i["item_id"] for i in serving(client, user)[1]}
        found |= set(item_ids(client.get("/v1/popular", params={"n": 100})))
        found |= set(item_ids(client.get("/v1/items/i00/similar", params={"n": 100})))
        session = client.post("/v1/sessions/recommendations", json={"item_ids": ["i00"], "n": 100})
        return found | set(item_ids(session))

    try:
        assert top in everywhere()
        client.post("/v1/items", json={"items": [{**original, "available": False}]})
        assert top not in everywhere()
        client.post("/v1/items", json={"items": [{**original, "categories": ["flash-sale"]}]})
        flash = client.get(f"/v1/users/{user}/recommendations", params={"category": "flash-sale"})
        assert item_ids(flash) == [top]
        assert item_ids(client.get("/v1/popular", params={"category": "flash-sale"})) == [top]
    finally:
        client.post("/v1/items", json={"items": [original]})
    assert serving(client, user)[1][0]["item_id"] == top
