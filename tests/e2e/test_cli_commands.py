"""The commands a user runs, run as commands: ``smartrec db upgrade``, ``import``, ``train``,
``demo --no-serve`` and ``serve`` (a real uvicorn process), each in its own ``SMARTREC_HOME``.

The in-process suites (TestClient, CliRunner) cannot see what only a real process shows: the
console script's entry point, the environment read at start-up, exit codes, uvicorn itself.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
from mlflow import MlflowClient

from smartrec.config import Settings
from tests.e2e.commands import run_smartrec, write_movielens
from tests.serverproc import smartrec_serve

#: Training kept short: one fast model, no pipeline (the champion suite trains the pipeline).
QUICK = {"SMARTREC_MODELS": json.dumps({"popularity": {}}), "SMARTREC_PIPELINE_ENABLED": "false"}


def _events_in(home: Path) -> int:
    with sqlite3.connect(Settings(home=home).resolved_database_url.split("///", 1)[1]) as db:
        count: int = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return count


def _champion(home: Path) -> str | None:
    settings = Settings(home=home)
    client = MlflowClient(tracking_uri=settings.resolved_registry_url)
    try:
        return str(client.get_model_version_by_alias(settings.model_name, "champion").version)
    except Exception:
        return None


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_smartrec(home, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "newest schema" in first.stdout
    assert _events_in(home) == 0
    again = run_smartrec(home, "db", "upgrade")
    assert again.returncode == 0, again.stderr


def test_import_then_train_registers_a_champion(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data, n_ratings = write_movielens(tmp_path / "ml-100k")
    imported = run_smartrec(home, "import", "movielens-100k", "--data", str(data))
    assert imported.returncode == 0, imported.stderr
    assert f"stored {n_ratings:,} events" in imported.stdout
    assert _events_in(home) == n_ratings
    # The same file again: every event is a duplicate, nothing is stored twice.
    again = run_smartrec(home, "import", "--data", str(data))
    assert again.returncode == 0, again.stderr
    assert f"({n_ratings:,} already there)" in again.stdout
    assert _events_in(home) == n_ratings

    trained = run_smartrec(home, "train", "--models", "popularity", "--json", **QUICK)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert (result["model_version"], result["algorithm"], result["promoted"]) == (
        "1",
        "popularity",
        True,
    )
    assert result["n_events"] == n_ratings
    assert _champion(home) == "1"


def test_train_without_events_fails_with_a_clear_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_smartrec(home, "db", "upgrade").returncode == 0
    failed = run_smartrec(home, "train", **QUICK)
    assert failed.returncode != 0
    assert "training needs at least" in failed.stdout + failed.stderr
    assert _champion(home) is None


def test_demo_without_serving_ingests_trains_and_recommends(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data, n_ratings = write_movielens(tmp_path / "ml-100k")
    demo = run_smartrec(home, "demo", "--data", str(data), "--no-serve", **QUICK)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"stored {n_ratings:,} events" in demo.stdout
    assert "registered version 1" in demo.stdout
    assert "recommendations for user" in demo.stdout
    assert "demo ready" in demo.stdout
    assert _champion(home) == "1"
    # Run again: the stored events and the champion are reused, not trained again.
    again = run_smartrec(home, "demo", "--data", str(data), "--no-serve", **QUICK)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"reusing {n_ratings:,} stored events" in again.stdout
    assert "registered version" not in again.stdout
    assert _champion(home) == "1"


def test_serve_is_a_real_uvicorn_process_that_ingests_and_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data, _ = write_movielens(tmp_path / "ml-100k")
    assert run_smartrec(home, "import", "--data", str(data)).returncode == 0
    assert run_smartrec(home, "train", "--models", "popularity", **QUICK).returncode == 0
    with smartrec_serve(home) as url:
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.headers["server"] == "uvicorn"
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        assert ready["model_version"] == "1"
        posted = httpx.post(
            f"{url}/v1/events",
            json={"events": [{"user_id": "e2e-user", "item_id": "1", "type": "purchase"}]},
            timeout=10,
        )
        assert posted.status_code == 202, posted.text
        recs = httpx.get(f"{url}/v1/users/e2e-user/recommendations", params={"n": 5}, timeout=10)
        assert recs.status_code == 200, recs.text
        body = recs.json()
        assert body["model_version"] == "1"
        assert len(body["items"]) == 5
        assert "1" not in {i["item_id"] for i in body["items"]}  # seen: excluded
    # The event went through the server into the home's database.
    assert _events_in(home) > 0
