"""Logs an operator can use: an access line per request, JSON lines, training job lines."""

from __future__ import annotations

import json
import logging

import pytest

from smartrec.logs import JsonFormatter
from tests.api.conftest import EASE_ONLY, AppFactory, World, load_world, runtime, train


def test_access_log_line_per_request(
    make_client: AppFactory, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    load_world(client, world)
    train(client, EASE_ONLY)
    version = runtime(client).service.model_version
    with caplog.at_level(logging.INFO, logger="smartrec.access"):
        client.get("/v1/popular?n=2")
        client.get("/v1/nowhere")
    lines = [r for r in caplog.records if r.name == "smartrec.access"]
    assert len(lines) == 2
    first = lines[0]
    assert first.getMessage().startswith("GET /v1/popular?n=2 200 ")
    assert f"model={version}" in first.getMessage()
    http = first.http  # type: ignore[attr-defined]
    assert http["status"] == 200 and http["model_version"] == version and http["duration_ms"] > 0
    assert lines[1].http["status"] == 404  # type: ignore[attr-defined]
    # As a JSON line: one object with the request's fields.
    parsed = json.loads(JsonFormatter().format(first))
    assert parsed["logger"] == "smartrec.access" and parsed["level"] == "info"
    assert parsed["http"]["path"] == "/v1/popular?n=2"


def test_access_log_can_be_turned_off(
    make_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(access_log=False)
    with caplog.at_level(logging.INFO, logger="smartrec.access"):
        client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "smartrec.access"]


def test_training_jobs_log_start_scores_decision_and_failure(
    make_client: AppFactory, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    load_world(client, world)
    with caplog.at_level(logging.INFO):
        job = train(client, EASE_ONLY)
        failed = runtime(client).jobs.submit({"pipeline": {"ease": {"no_such_param": 1}}})
        runtime(client).jobs.wait(failed, timeout=60)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"training job {job['job_id']} started: models ease" in text
    assert "ease: ndcg@10=" in text  # each model's score
    assert f"training job {job['job_id']} succeeded: version {job['model_version']}" in text
    assert "promoted to champion" in text
    assert f"training job {failed} failed: " in text and "no_such_param" in text
