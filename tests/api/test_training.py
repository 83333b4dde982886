"""Training jobs: lifecycle, validation of the pipeline, failures that are reported, not hidden."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smartrec.api.app import create_app
from tests.api.conftest import (
    PIPELINE,
    AppFactory,
    Trained,
    World,
    assert_problem,
    error_fields,
    load_world,
    post_events,
    runtime,
    start_job,
    wait_job,
)


def test_trained_job_reports_version_and_metrics(trained: Trained) -> None:
    job = trained.client.get(f"/v1/training-jobs/{trained.job['job_id']}").json()
    assert job["status"] == "succeeded"
    assert job["model_version"] == "1"
    assert job["error"] is None
    assert {"ndcg@10", "precision@10", "recall@10"} <= set(job["metrics"])
    assert all(0.0 <= v <= 1.0 for v in job["metrics"].values())
    assert job["result"]["algorithm"] == "ease"
    assert job["result"]["promoted"] is True
    assert job["result"]["n_events"] == len(trained.world.events)
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]


def test_job_lifecycle_with_two_candidates(make_client: AppFactory, world: World) -> None:
    client = make_client()
    load_world(client, world)
    job_id = start_job(client, PIPELINE)
    first = client.get(f"/v1/training-jobs/{job_id}").json()
    assert first["job_id"] == job_id
    assert first["status"] in ("queued", "running", "succeeded")
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    # Statuses only move forward.
    order = ["queued", "running", "succeeded"]
    assert job["_statuses"] == sorted(job["_statuses"], key=order.index)
    assert job["model_version"] == "1"
    assert set(job["result"]["candidates"]) == {"ease", "popularity"}
    assert job["result"]["algorithm"] in ("ease", "popularity")
    assert job["metrics"]["ndcg@10"] == pytest.approx(
        job["result"]["candidates"][job["result"]["algorithm"]]["ndcg@10"]
    )
    # The first model becomes the champion and is served at once.
    assert runtime(client).service.model_version == "1"
    body = client.get("/v1/users/u00/recommendations").json()
    assert body["model_version"] == "1"


@pytest.mark.parametrize(
    ("pipeline", "words"),
    [
        ({"ease": {}, "deep-magic": {}}, "deep-magic"),
        ({"EASE": {}}, "EASE"),
        ({}, "no algorithm"),
    ],
)
def test_bad_pipeline_is_422(client: TestClient, pipeline: dict[str, Any], words: str) -> None:
    response = client.post("/v1/training-jobs", json={"pipeline": pipeline})
    problem = assert_problem(response, 422)
    assert words in problem["detail"]
    assert error_fields(problem) == ["pipeline"]
    if pipeline:
        for known in ("popularity", "itemknn", "ease", "als", "bpr"):
            assert known in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [{"pipeline": {"ease": 5}}, {"pipeline": ["ease"]}, {"algorithms": {}}, [1]],
)
def test_malformed_job_request_is_422(client: TestClient, body: Any) -> None:
    assert_problem(client.post("/v1/training-jobs", json=body), 422)


def test_unknown_job_is_404(client: TestClient) -> None:
    problem = assert_problem(client.get("/v1/training-jobs/does-not-exist"), 404)
    assert "does-not-exist" in problem["detail"]


def test_job_on_empty_database_fails_clearly(client: TestClient) -> None:
    job = wait_job(client, start_job(client, PIPELINE), timeout=30)
    assert job["status"] == "failed"
    assert job["model_version"] is None
    assert "0 events" in job["error"]
    assert "SMARTREC_MIN_TRAINING_EVENTS" in job["error"]
    assert job["finished_at"] is not None
    # The server is still fine, and still has no model.
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/models").json()["versions"] == []


def test_job_with_default_pipeline_and_no_body(client: TestClient) -> None:
    """No body at all means the configured models; with too few events it fails clearly."""
    post_events(client, [{"user_id": "u", "item_id": "i", "type": "view"}])
    response = client.post("/v1/training-jobs")
    assert response.status_code == 202
    job = wait_job(client, response.json()["job_id"], timeout=30)
    assert job["status"] == "failed"
    assert "only 1 events" in job["error"]


def test_job_whose_every_candidate_fails(make_client: AppFactory, world: World) -> None:
    client = make_client()
    load_world(client, world)
    # The HTTP route refuses such parameters (tests/api/test_strict.py); a job can still get
    # them from configuration, and must then fail with the reason.
    job = wait_job(
        client, runtime(client).jobs.submit({"pipeline": {"ease": {"no_such_param": 1}}})
    )
    assert job["status"] == "failed"
    assert "no_such_param" in job["error"]
    assert runtime(client).service.model_version is None


def test_jobs_left_running_by_a_dead_process_are_failed_at_start(client: TestClient) -> None:
    store = runtime(client).store
    store.create_job("stale-job", {"pipeline": None})
    gone = subprocess.Popen(["true"])  # a process of this host that has exited
    gone.wait()
    owner = f"{socket.gethostname()}:{gone.pid}"
    store.update_job("stale-job", status="running", started_at=1, worker=owner)
    store.create_job("live-job", {"pipeline": None})  # owned by this (living) process
    store.update_job("live-job", status="running", started_at=1)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    with TestClient(create_app(settings)) as restarted:
        job = restarted.get("/v1/training-jobs/stale-job").json()
        live = restarted.get("/v1/training-jobs/live-job").json()
    assert job["status"] == "failed"
    assert "stopped" in job["error"]
    assert live["status"] == "running"


def test_a_job_whose_process_stopped_beating_reads_as_failed(client: TestClient) -> None:
    store = runtime(client).store
    store.create_job("silent-job", {"pipeline": None})
    store.update_job("silent-job", status="running", worker="elsewhere:1", heartbeat_at=1)
    job = client.get("/v1/training-jobs/silent-job").json()
    assert job["status"] == "failed"
    assert "stopped" in job["error"]


def test_job_with_a_tuning_budget_tunes_logs_and_reuses(
    make_client: AppFactory, world: World
) -> None:
    """tune_budget_s: models and the ranking stage are tuned on the training data, logged to
    MLflow, and the next job (without a budget) starts from the chosen values."""
    from smartrec.training.tune import load_tuned_params

    client = make_client(
        models={"ease": {"l2": 50.0}, "als": {"factors": 8, "iterations": 3}},
    )
    load_world(client, world)
    response = client.post("/v1/training-jobs", json={"tune_budget_s": 8})
    assert response.status_code == 202
    job = wait_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert "pipeline" in job["result"]["candidates"]
    tuned = load_tuned_params(runtime(client).registry)
    assert {"ease", "als", "pipeline"} <= set(tuned)
    assert tuned["pipeline"]["kind"] in ("fusion", "lightgbm")
    # The next job reads them back (the configured models pin their values; the ranking stage
    # takes the tuned choices).
    trainer = runtime(client).trainer
    trainer._configured_models(lambda _m: None, 0.0)
    assert trainer._tuned_pipeline == tuned["pipeline"]
    spec = trainer.pipeline_spec({"ease": {"l2": 50.0}})
    assert spec.ranker.kind == tuned["pipeline"]["kind"]


def test_tuning_budget_is_validated(client: TestClient) -> None:
    problem = assert_problem(client.post("/v1/training-jobs", json={"tune_budget_s": -1}), 422)
    assert error_fields(problem) == ["tune_budget_s"]
