"""Fixtures of the HTTP API suite: apps built with ``create_app(settings)`` and real parts.

Every app runs its lifespan (SQLite migrations under its own home, champion loading) through
``TestClient``. Building an MLflow store takes seconds, so most throw-away apps share one warmed
registry database, each under its own model and experiment names; the session's trained app keeps
the embedded default (the registry under its home) to exercise that path too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from smartrec.api.app import create_app
from smartrec.config import Settings
from smartrec.registry import ModelRegistry
from tests.worlds import World, small_world

PROBLEM_TYPE = "application/problem+json"
#: The pipeline of the brief: two candidates, the best on validation wins.
PIPELINE = {"ease": {"l2": 50.0}, "popularity": {}}
#: One candidate only, so that the served algorithm (and its similar items) is known.
EASE_ONLY = {"ease": {"l2": 50.0}}
POPULARITY_ONLY = {"popularity": {}}
JOB_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- helpers
def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with the given status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_TYPE), response.headers
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"problem without {key!r}: {body}"
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def error_fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


def wait_job(client: TestClient, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Poll a training job until it ends; fails the test if it stays queued/running."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        response = client.get(f"/v1/training-jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        assert job["status"] in ("queued", "running", "succeeded", "failed"), job
        if job["status"] in ("succeeded", "failed"):
            job["_statuses"] = seen
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
        time.sleep(0.05)


def start_job(client: TestClient, pipeline: dict[str, Any] | None) -> str:
    body = {} if pipeline is None else {"pipeline": pipeline}
    response = client.post("/v1/training-jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    assert response.headers["location"] == f"/v1/training-jobs/{job_id}"
    return job_id


def train(client: TestClient, pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a training job to its end and require success."""
    job = wait_job(client, start_job(client, pipeline))
    assert job["status"] == "succeeded", job
    return job


def post_events(client: TestClient, events: list[dict[str, Any]]) -> dict[str, int]:
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202, response.text
    body: dict[str, int] = response.json()
    return body


def item_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["item_id"] for i in response.json()["items"]]


def runtime(client: TestClient) -> Any:
    return client.app.state.runtime  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def world() -> World:
    return small_world()


def load_world(client: TestClient, world: World) -> None:
    response = client.post("/v1/items", json={"items": world.items})
    assert response.status_code == 200, response.text
    assert post_events(client, world.events) == {"accepted": len(world.events), "duplicates": 0}


# --------------------------------------------------------------------------- apps
def open_client(stack: ExitStack, home: Path, **overrides: Any) -> TestClient:
    # No background threads unless a test asks: they would race with what tests check.
    quiet = {
        "reload_interval_s": 0,
        "feed_poll_interval_s": 0,
        "feed_precompute_users": 0,
        "live_stats_interval_s": 0,
    }
    settings = Settings(**{"home": home, **quiet, **overrides})
    return stack.enter_context(TestClient(create_app(settings)))


@pytest.fixture(scope="session")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store, created once; apps use it under their own model/experiment names."""
    path = tmp_path_factory.mktemp("registry")
    url = f"sqlite:///{path / 'mlflow.db'}"
    ModelRegistry(url, str(path / "artifacts"), model_name="warmup").list_versions()
    return url


AppFactory = Callable[..., TestClient]


def _factory(
    stack: ExitStack, tmp_path_factory: pytest.TempPathFactory, registry_url: str
) -> AppFactory:
    def make(**overrides: Any) -> TestClient:
        tag = uuid.uuid4().hex[:10]
        defaults = {
            "registry_url": registry_url,
            "model_name": f"model_{tag}",
            "experiment": f"experiment_{tag}",
        }
        home = overrides.pop("home", None) or tmp_path_factory.mktemp("home")
        return open_client(stack, home, **{**defaults, **overrides})

    return make


@pytest.fixture()
def make_client(
    tmp_path_factory: pytest.TempPathFactory, shared_registry: str
) -> Iterator[AppFactory]:
    """Fresh, empty apps (own SQLite database and model name); closed after the test."""
    with ExitStack() as stack:
        yield _factory(stack, tmp_path_factory, shared_registry)


@pytest.fixture(scope="module")
def make_module_client(
    tmp_path_factory: pytest.TempPathFactory, shared_registry: str
) -> Iterator[AppFactory]:
    with ExitStack() as stack:
        yield _factory(stack, tmp_path_factory, shared_registry)


@pytest.fixture()
def client(make_client: AppFactory) -> TestClient:
    """An empty app: no event, no model."""
    return make_client()


@dataclass(frozen=True)
class Trained:
    client: TestClient
    world: World
    job: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.job["model_version"])


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[Trained]:
    """The world loaded and one EASE model trained and serving (embedded default registry).

    Shared by many tests: they may read, and may add catalog-only items with fresh ids, but must
    not add events nor move the champion.
    """
    with ExitStack() as stack:
        client = open_client(stack, tmp_path_factory.mktemp("trained-home"))
        load_world(client, world)
        job = train(client, EASE_ONLY)
        assert runtime(client).service.model_version == job["model_version"]
        yield Trained(client, world, job)
