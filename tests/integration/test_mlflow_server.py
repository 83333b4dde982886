"""The registry behind a real MLflow tracking server process (as with a self-managed MLflow)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from smartrec.api import create_app
from smartrec.config import Settings
from smartrec.datasets.synthetic import generate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow if mlflow.exists() else shutil.which("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_train_register_and_serve_through_a_tracking_server(
    mlflow_server: str, tmp_path: Path
) -> None:
    data = generate(n_users=120, n_items=150, n_events=4000, n_categories=5, seed=3)
    settings = Settings(
        home=tmp_path / "home",
        registry_url=mlflow_server,
        reload_interval_s=0,
        models={"popularity": {}, "ease": {"l2": 50.0}},
    )
    users, items, types = data.event_user_ids(), data.event_item_ids(), data.event_type_names()
    with TestClient(create_app(settings)) as client:
        for lo in range(0, data.n_events, 1000):
            events = [
                {"user_id": users[k], "item_id": items[k], "type": types[k], "timestamp": int(t)}
                for k, t in zip(range(lo, lo + 1000), data.timestamp[lo : lo + 1000], strict=True)
            ]
            assert client.post("/v1/events", json={"events": events}).status_code == 202
        job_id = client.post("/v1/training-jobs", json={}).json()["job_id"]
        for _ in range(600):
            job = client.get(f"/v1/training-jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        models = client.get("/v1/models").json()
        assert models["serving_version"] == "1"
        assert models["versions"][0]["aliases"] == ["champion"]
    # Artifacts went to the server's store, not to this machine's home: a second replica with
    # an empty home (another machine) loads the champion over HTTP.
    assert not (tmp_path / "home" / "artifacts").exists()
    other = Settings(home=tmp_path / "replica", registry_url=mlflow_server, reload_interval_s=0)
    with TestClient(create_app(other)) as replica:
        body = replica.get(f"/v1/users/{users[0]}/recommendations").json()
        assert body["model_version"] == "1"
        assert body["items"]
