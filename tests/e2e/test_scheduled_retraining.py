"""Scheduled retraining: two ``smartrec worker`` processes on one PostgreSQL database train on
the schedule, one job per interval between them, never two at once, and promote a champion."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from smartrec.config import Settings
from smartrec.ingest import Ingestor
from smartrec.schemas import EventIn, ItemIn
from smartrec.storage.sql import SqlStore
from tests.worlds import small_world

INTERVAL_S = 3


def test_two_workers_train_once_per_interval_and_never_at_once(tmp_path: Path, pg_url: str) -> None:
    world = small_world()
    store = SqlStore(pg_url)
    store.migrate()
    settings = Settings(home=tmp_path / "shared", database_url=pg_url)
    ingestor = Ingestor(store, store, settings.weights, 10_000)
    ingestor.add_items([ItemIn.model_validate(i) for i in world.items])
    ingestor.import_events([EventIn.model_validate(e) for e in world.events])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")} | {
        "SMARTREC_DATABASE_URL": pg_url,
        "SMARTREC_REGISTRY_URL": settings.resolved_registry_url,
        "SMARTREC_ARTIFACTS_URL": str(settings.resolved_artifacts_url),
        "SMARTREC_RETRAIN_INTERVAL_S": str(INTERVAL_S),
        "SMARTREC_PIPELINE_ENABLED": "false",
        "SMARTREC_MODELS": '{"ease": {"l2": 50.0}, "popularity": {}}',
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    workers = []
    for n in range(2):
        log = (tmp_path / f"worker{n}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [str(Path(sys.executable).with_name("smartrec")), "worker"],
                env=env | {"SMARTREC_HOME": str(tmp_path / f"w{n}")},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            with store.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT job_id, status, started_at, finished_at, worker FROM training_jobs "
                    "ORDER BY job_id"
                ).fetchall()
            done = [r for r in rows if r[1] == "succeeded"]
            if len(done) >= 2:
                break
            for w in workers:
                assert w.poll() is None, (tmp_path / "worker0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    assert all(w.returncode == 0 for w in workers)
    assert all(r[0].startswith("scheduled-") for r in rows)
    assert not [r for r in rows if r[1] == "failed"], rows
    # One job per slot (the ids are the slots), and no two ran at the same time.
    finished = sorted((r[2], r[3]) for r in rows if r[1] == "succeeded")
    for (_, end), (start, _) in itertools.pairwise(finished):
        assert start >= end, finished
    champion = MlflowClient(tracking_uri=settings.resolved_registry_url).get_model_version_by_alias(
        settings.model_name, "champion"
    )
    assert champion.version
    store.close()
