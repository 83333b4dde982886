"""The multi-stage pipeline as champion, end to end through MLflow and two real processes.

A ``smartrec serve`` process is fed the small world over HTTP and trains through
``POST /v1/training-jobs`` (the real training path: candidates, the default pipeline, MLflow
registration, promotion under the lock). The configured single model is a weak item-kNN, so the
pipeline (that kNN as one retriever beside popularity and content, LightGBM ranking) wins on
this world. The MLflow client then reads the ``champion`` alias from the home's registry, and a
fresh process started on the same home loads it from the registry and serves it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from mlflow import MlflowClient

from smartrec.config import Settings
from tests.e2e.commands import wait_until
from tests.serverproc import smartrec_serve
from tests.worlds import small_world

#: The single model the pipeline must beat (and uses as its neighbours retriever).
MODELS = {"SMARTREC_MODELS": json.dumps({"itemknn": {"k": 5}})}
JOB_TIMEOUT_S = 300.0


def _finished_job(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] = client.get(f"/v1/training-jobs/{job_id}").json()
    return job if job["status"] in ("succeeded", "failed") else None


def test_a_trained_pipeline_is_the_mlflow_champion_and_a_new_process_serves_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    world = small_world()
    with smartrec_serve(home, **MODELS) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/items", json={"items": world.items}).status_code == 200
        assert client.post("/v1/events", json={"events": world.events}).status_code == 202
        started = client.post("/v1/training-jobs", json={})
        assert started.status_code == 202, started.text
        job = wait_until(
            lambda: _finished_job(client, started.json()["job_id"]), JOB_TIMEOUT_S, "training"
        )
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert set(result["candidates"]) == {"itemknn", "pipeline"}
    assert result["algorithm"] == "pipeline", result["candidates"]
    assert result["promoted"] is True
    version = str(result["model_version"])

    settings = Settings(home=home)
    registry = MlflowClient(tracking_uri=settings.resolved_registry_url)
    champion = registry.get_model_version_by_alias(settings.model_name, "champion")
    assert str(champion.version) == version
    run = registry.get_run(champion.run_id)
    assert run.data.params["algorithm"] == "pipeline"
    retrievers = set(run.data.params["pipeline.retrievers"].split(","))
    assert {"neighbours", "popular", "content"} <= retrievers, retrievers

    user = world.heaviest_user()
    with smartrec_serve(home, **MODELS) as url:
        assert httpx.get(f"{url}/readyz", timeout=30).json()["model_version"] == version
        response = httpx.get(f"{url}/v1/users/{user}/recommendations", params={"n": 15}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version
    reasons = [r for item in body["items"] for r in item["reasons"]]
    # The pipeline's retrievers speak: the popular retriever names its window, the neighbours
    # retriever an item of the user's history; a single model never says "popular_in".
    assert any(r["kind"] == "popular_in" and r.get("window") for r in reasons), reasons
    assert any(r["kind"] == "similar_to" and r["item_id"] in world.seen[user] for r in reasons)
    assert not set(i["item_id"] for i in body["items"]) & world.seen[user]
