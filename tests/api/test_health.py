"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Trained, assert_problem, post_events, runtime


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, labels in any order; None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_empty_database_without_model_is_503(client: TestClient) -> None:
    problem = assert_problem(client.get("/readyz"), 503)
    assert "no model" in problem["detail"]
    # One event is enough for the popularity fallback.
    post_events(client, [{"user_id": "u", "item_id": "i", "type": "view"}])
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["model_version"] is None
    assert body["feeds"] == {
        "enabled": True,
        "cached": 0,
        "shared": False,
        "shared_hits": 0,
        "hits": 0,
        "misses": 0,
        "build": {},
    }


def test_readyz_with_a_model(trained: Trained) -> None:
    response = trained.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["model_version"]) == ("ready", trained.version)


def test_readyz_when_the_database_does_not_answer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_events(client, [{"user_id": "u", "item_id": "i", "type": "view"}])
    monkeypatch.setattr(runtime(client).store, "ping", lambda: False)
    problem = assert_problem(client.get("/readyz"), 503)
    assert "database" in problem["detail"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_scrape(trained: Trained) -> None:
    client = trained.client
    user = trained.world.heaviest_user()
    before = client.get("/metrics").text
    route = "/v1/users/{user_id}/recommendations"
    count = sample(before, "smartrec_http_requests_total", method="GET", route=route, status="200")
    for _ in range(3):
        assert client.get(f"/v1/users/{user}/recommendations").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE smartrec_http_requests_total counter" in text
    after = sample(text, "smartrec_http_requests_total", method="GET", route=route, status="200")
    assert after == (count or 0.0) + 3
    assert "smartrec_http_request_duration_seconds_bucket" in text
    assert "# TYPE smartrec_model_version_info gauge" in text
    info = sample(text, "smartrec_model_version_info", version=trained.version, algorithm="ease")
    assert info == 1.0
    assert sample(text, "smartrec_events_accepted_total") == len(trained.world.events)
    served = sample(text, "smartrec_recommendations_total", kind="user", source="personalized")
    assert (served or 0) >= 3


def test_metrics_label_errors_and_unmatched_routes(client: TestClient) -> None:
    client.get("/v1/nowhere")
    client.get("/v1/popular", params={"n": 0})
    client.get("/healthz")
    text = client.get("/metrics").text
    requests = "smartrec_http_requests_total"
    assert sample(text, requests, method="GET", route="unmatched", status="404") == 1
    assert sample(text, requests, method="GET", route="/v1/popular", status="422") == 1
    assert sample(text, requests, method="GET", route="/healthz", status="200") == 1
    # No model: the gauge is declared but has no sample.
    assert "# TYPE smartrec_model_version_info gauge" in text
    assert not re.search(r"^smartrec_model_version_info\{", text, re.MULTILINE)


def test_openapi_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for path in (
        "/v1/items",
        "/v1/users",
        "/v1/events",
        "/v1/users/{user_id}/recommendations",
        "/v1/items/{item_id}/similar",
        "/v1/popular",
        "/v1/sessions/recommendations",
        "/v1/rankings",
        "/v1/training-jobs",
        "/v1/training-jobs/{job_id}",
        "/v1/models",
        "/v1/models/{version}/promote",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    assert client.get("/docs").status_code == 200


def test_api_docs_are_served_without_a_cdn(client: TestClient) -> None:
    """Swagger UI and ReDoc load their assets from this server: they work air-gapped."""
    for page, assets in (
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        html = client.get(page)
        assert html.status_code == 200
        for asset in assets:
            assert f'"/static/docs/{asset}"' in html.text, (page, asset)
            fetched = client.get(f"/static/docs/{asset}")
            assert fetched.status_code == 200 and len(fetched.content) > 10_000
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text


def test_multiprocess_directory_is_fresh_or_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --workers N`` gets an empty sample directory: a fresh one removed at the end, or
    the operator's own emptied of an earlier run's sample files (and kept)."""
    from smartrec.api.metrics import MULTIPROC_ENV, multiprocess_metrics

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_metrics() as fresh:
        assert os.environ[MULTIPROC_ENV] == str(fresh) and not list(fresh.iterdir())
    assert not fresh.exists() and MULTIPROC_ENV not in os.environ
    given = tmp_path / "prometheus"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    (given / "README").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with multiprocess_metrics() as used:
        assert used == given and [p.name for p in given.iterdir()] == ["README"]
    assert given.exists()
