"""The registry behind a real MLflow tracking server process (as with a self-managed MLflow)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smartrec.api import create_app
from smartrec.config import Settings
from smartrec.datasets.synthetic import generate
from tests.s3proc import CREDENTIALS, MotoServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on a loopback port, stopped and started again on the same port."""

    def __init__(
        self,
        backend: str,
        artifacts: str,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.backend, self.artifacts, self.env, self.log = backend, artifacts, env or {}, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [
                str(mlflow if mlflow.exists() else shutil.which("mlflow")),
                "server",
                "--backend-store-uri",
                self.backend,
                "--artifacts-destination",
                self.artifacts,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env={**os.environ, **self.env},
            stdout=self.log.open("ab") if self.log else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its gunicorn/uvicorn workers too
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")).start()
    try:
        yield server.url
    finally:
        server.stop()


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
    users = data.event_user_ids()
    with TestClient(create_app(settings)) as client:
        job = _train(client, data)
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


def _train(client: TestClient, data: Any) -> dict[str, Any]:
    users, items, types = data.event_user_ids(), data.event_item_ids(), data.event_type_names()
    for lo in range(0, data.n_events, 1000):
        events = [
            {"user_id": users[k], "item_id": items[k], "type": types[k], "timestamp": int(t)}
            for k, t in zip(range(lo, lo + 1000), data.timestamp[lo : lo + 1000], strict=True)
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
    job_id = client.post("/v1/training-jobs", json={}).json()["job_id"]
    for _ in range(600):
        job: dict[str, Any] = client.get(f"/v1/training-jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"training did not finish: {job}")


def test_mlflow_on_postgresql_and_s3_and_serving_through_its_outage(
    tmp_path: Path, pg_url: str, pg_server: str
) -> None:
    """The cloud shape of the registry: MLflow's store in PostgreSQL, its artifacts in S3 (moto's
    server), smartrec's own database in PostgreSQL too. Then MLflow stops: replicas that loaded
    the champion keep serving it and stay ready; one that starts meanwhile is not ready (the
    load balancer keeps it out) until MLflow is back, and then it loads the champion."""
    pytest.importorskip("s3fs")
    import s3fs

    moto = MotoServer(tmp_path).start()
    s3_env = {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": moto.endpoint}
    for key, value in CREDENTIALS.items():
        os.environ.setdefault(key, value)
    moto.create_bucket("mlflow")
    registry_db = _database(pg_server, "mlflow")
    log = tmp_path / "mlflow.log"
    server = MlflowServer(registry_db, "s3://mlflow/artifacts", s3_env, log).start()
    data = generate(n_users=120, n_items=150, n_events=4000, n_categories=5, seed=3)
    common: dict[str, Any] = {
        "database_url": pg_url,
        "registry_url": server.url,
        "models": {"popularity": {}, "ease": {"l2": 50.0}},
    }
    try:
        with TestClient(
            create_app(Settings(home=tmp_path / "a", reload_interval_s=0, **common))
        ) as a:
            job = _train(a, data)
            assert job["status"] == "succeeded", job.get("error")
        stored = s3fs.S3FileSystem(endpoint_url=moto.endpoint).find("mlflow/artifacts")
        assert any(p.endswith("MLmodel") or "model" in p for p in stored), stored
        user = data.event_user_ids()[0]
        replica = Settings(home=tmp_path / "b", reload_interval_s=0.2, **common)
        with TestClient(create_app(replica)) as b:
            assert b.get("/readyz").status_code == 200
            server.stop()  # MLflow goes away
            time.sleep(0.5)  # a watcher tick or two fail meanwhile
            answer = b.get(f"/v1/users/{user}/recommendations")
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
            assert b.get("/readyz").status_code == 200
            late = Settings(home=tmp_path / "c", reload_interval_s=0.2, **common)
            with TestClient(create_app(late)) as c:
                ready = c.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert "model registry cannot be used" in ready.json()["detail"]
                assert "127.0.0.1" not in ready.json()["detail"]
                server.start()  # back on the same port, same store and artifacts
                deadline = time.monotonic() + 60
                while c.get("/readyz").status_code != 200:
                    assert time.monotonic() < deadline, "the late replica never loaded the model"
                    time.sleep(0.2)
                body = c.get(f"/v1/users/{user}/recommendations").json()
                assert body["model_version"] == "1" and body["items"]
    finally:
        server.stop()
        moto.stop()


def _database(pg_server: str, tag: str) -> str:
    """A fresh PostgreSQL database for MLflow's store (dropped with the server's data)."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"smartrec_{tag}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_server).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)
