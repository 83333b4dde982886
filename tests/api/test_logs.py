"""Logs an operator can use: an access line per request, JSON lines, training job lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tests.api.conftest import EASE_ONLY, AppFactory, World, load_world, runtime, train


def test_access_log_line_per_request(make_client: AppFactory, world: World) -> None:
    client = make_client()
    load_world(client, world)
    train(client, EASE_ONLY)
    version = runtime(client).service.model_version
    log = client.app.state.access_log  # type: ignore[attr-defined]
    log.flush()
    log.stream = out = io.StringIO()
    client.get("/v1/popular?n=2")
    client.get("/v1/nowhere")
    log.flush()  # the background writer may have written some already: the stream has them all
    first, second = out.getvalue().splitlines()
    assert " INFO smartrec.access: GET /v1/popular?n=2 200 " in first
    assert f"model={version} key=-" in first
    assert " GET /v1/nowhere 404 " in second


def test_access_log_as_json_lines(make_client: AppFactory) -> None:
    client = make_client(log_format="json")
    log = client.app.state.access_log  # type: ignore[attr-defined]
    log.flush()
    log.stream = out = io.StringIO()
    client.get("/healthz")
    log.flush()
    (line,) = out.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["logger"] == "smartrec.access" and parsed["level"] == "info"
    assert parsed["http"]["path"] == "/healthz" and parsed["http"]["status"] == 200
    assert parsed["http"]["duration_ms"] > 0 and parsed["time"].endswith("+00:00")


def test_access_log_is_written_in_the_background_and_at_shutdown(
    make_client: AppFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    with make_client() as client:
        client.get("/healthz?")
    assert "GET /healthz 200" in capfd.readouterr().err  # flushed when the app stopped


def test_access_log_can_be_turned_off(
    make_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(access_log=False)
    assert client.app.state.access_log is None  # type: ignore[attr-defined]
    assert client.get("/healthz").status_code == 200


def test_log_level_warning_leaves_the_access_log_out(make_client: AppFactory) -> None:
    client = make_client(log_level="warning")
    log = client.app.state.access_log  # type: ignore[attr-defined]
    client.get("/healthz")
    assert log.flush() == 0


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
