"""The whole flow over HTTP: ingest -> train -> register in MLflow -> serve, on both databases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from smartrec.api import create_app
from smartrec.config import Settings
from smartrec.datasets.synthetic import generate

pytestmark = pytest.mark.integration


def wait_for_job(client: TestClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/training-jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def ingest(client: TestClient, data: Any, start: int = 0, stop: int | None = None) -> int:
    users, items = data.event_user_ids(), data.event_item_ids()
    types, times = data.event_type_names(), data.timestamp
    stop = data.n_events if stop is None else stop
    accepted = 0
    for lo in range(start, stop, 1000):
        hi = min(lo + 1000, stop)
        events = [
            {"user_id": users[k], "item_id": items[k], "type": types[k], "timestamp": int(times[k])}
            for k in range(lo, hi)
        ]
        r = client.post("/v1/events", json={"events": events})
        assert r.status_code == 202, r.text
        accepted += r.json()["accepted"]
    return accepted


@pytest.mark.parametrize(
    ("database", "registry"),
    [("sqlite", "sqlite"), ("postgresql", "sqlite"), ("postgresql", "postgresql")],
    ids=["sqlite", "postgresql", "postgresql-with-mlflow-on-postgresql"],
)
def test_ingest_train_register_serve(
    database: str, registry: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db_url = f"sqlite:///{tmp_path / 'smartrec.db'}"
    registry_url = None
    if database == "postgresql":
        db_url = request.getfixturevalue("pg_url")
    if registry == "postgresql":
        # MLflow and smartrec share one database: each keeps its own Alembic version table.
        registry_url = db_url.replace("postgresql://", "postgresql+psycopg://")
    data = generate(n_users=300, n_items=400, n_events=12_000, n_categories=8, seed=7)
    settings = Settings(
        home=tmp_path / "home",
        database_url=db_url,
        registry_url=registry_url,
        reload_interval_s=0,
        models={"popularity": {}, "itemknn": {"k": 50}, "ease": {"l2": 100.0}},
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/items", json={"items": data.items()}).json() == {"upserted": 400}
        split = 10_000
        assert ingest(client, data, 0, split) == split
        assert ingest(client, data, 0, 2000) == 0  # a retried prefix is all duplicates

        job = wait_for_job(client, client.post("/v1/training-jobs", json={}).json()["job_id"])
        assert job["status"] == "succeeded", job
        assert job["model_version"] == "1"
        result = job["result"]
        assert result["promoted"] is True
        # The single models and the multi-stage pipeline built on them compete.
        assert set(result["candidates"]) == {"popularity", "itemknn", "ease", "pipeline"}
        best = result["algorithm"]
        # Learning beats the popularity baseline on the held-out newest events.
        assert result["candidates"][best]["ndcg@10"] > result["candidates"]["popularity"]["ndcg@10"]

        models = client.get("/v1/models").json()
        assert models["serving_version"] == "1"
        assert models["versions"][0]["aliases"] == ["champion"]
        assert models["versions"][0]["metrics"]["ndcg@10"] == pytest.approx(
            job["metrics"]["ndcg@10"]
        )

        # Recommendations follow the user's taste cluster and skip what they saw.
        hits = total = 0
        for u in range(0, 300, 15):
            user = str(data.user_ids[u])
            body = client.get(f"/v1/users/{user}/recommendations", params={"n": 10}).json()
            assert body["model_version"] == "1"
            mine = data.event_user[:split] == u
            seen = {str(data.item_ids[i]) for i in data.event_item[:split][mine]}
            recs = [r["item_id"] for r in body["items"]]
            assert len(recs) == 10 and not seen & set(recs)
            favoured = {data.categories[c] for c in data.cluster_categories[data.user_cluster[u]]}
            cats = {str(data.item_ids[i]): set(c) for i, c in enumerate(data.item_categories)}
            hits += sum(bool(cats[i] & favoured) for i in recs)
            total += len(recs)
        share_in_cluster = np.mean([bool(set(c) & favoured) for c in data.item_categories])
        assert hits / total > share_in_cluster + 0.2

        # Newer data and a second job: a new version, champion compared on the same split.
        assert ingest(client, data, split) == data.n_events - split
        job2 = wait_for_job(client, client.post("/v1/training-jobs", json={}).json()["job_id"])
        assert job2["status"] == "succeeded", job2
        assert job2["model_version"] == "2"
        assert job2["result"]["champion_before"] == "1"
        assert job2["result"]["champion_metrics"] is not None
        expected = "2" if job2["result"]["promoted"] else "1"
        assert client.get("/v1/models").json()["serving_version"] == expected

    # A restarted server loads the champion from the registry at start.
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["model_version"] == expected
        body = client.get(f"/v1/users/{data.user_ids[0]}/recommendations").json()
        assert body["model_version"] == expected
