"""``smartrec snapshot export|list|prune`` and ``smartrec train --snapshot`` as commands, on S3
(moto's server on loopback, reached through s3fs as a bucket on AWS would be)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.config import Settings
from smartrec.domain import EventRecord
from smartrec.storage import open_store
from tests.e2e.commands import run_smartrec, write_movielens
from tests.s3proc import CREDENTIALS, MotoServer

pytest.importorskip("s3fs")

QUICK = {"SMARTREC_MODELS": json.dumps({"popularity": {}}), "SMARTREC_PIPELINE_ENABLED": "false"}


@pytest.fixture()
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with pytest.MonkeyPatch.context() as env:
        for key, value in CREDENTIALS.items():
            env.setenv(key, value)
        server = MotoServer(tmp_path).start()
        server.create_bucket("smartrec-snapshots")
        yield server
        server.stop()


def test_export_to_s3_then_train_from_the_snapshot(tmp_path: Path, moto: MotoServer) -> None:
    home = tmp_path / "home"
    data, n_ratings = write_movielens(tmp_path / "ml-100k")
    assert run_smartrec(home, "import", "--data", str(data)).returncode == 0
    env = {**CREDENTIALS, "SMARTREC_SNAPSHOT_URL": moto.url("smartrec-snapshots", "prod")}

    exported = run_smartrec(home, "snapshot", "export", "--json", **env)
    assert exported.returncode == 0, exported.stderr
    info = json.loads(exported.stdout)
    assert info["rows"] == n_ratings and info["path"].startswith("snapshots/events-")
    listed = run_smartrec(home, "snapshot", "list", "--json", **env)
    assert [s["path"] for s in json.loads(listed.stdout)] == [info["path"]]

    # Training reads the snapshot, not the database: an event stored after the export is not
    # in the model's input.
    store = open_store(Settings(home=home).resolved_database_url)
    store.add_events([EventRecord("after-export", "1", "1", "rating", 5.0, 10**12)])
    store.close()
    trained = run_smartrec(home, "train", "--snapshot", "latest", "--json", **QUICK, **env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["n_events"] == n_ratings

    pruned = run_smartrec(home, "snapshot", "prune", "--keep", "0", **env)
    assert pruned.returncode == 0 and "deleted 1 snapshot" in pruned.stdout
    missing = run_smartrec(home, "train", "--snapshot", "latest", **QUICK, **env)
    said = " ".join(missing.stderr.split())  # (the console wraps long lines)
    assert missing.returncode == 2
    assert "no snapshot of the whole log in s3://smartrec-snapshots/prod" in said


def test_an_unreachable_store_is_named_before_any_work(tmp_path: Path) -> None:
    env = {**CREDENTIALS, "SMARTREC_SNAPSHOT_URL": "s3://nowhere/x?endpoint_url=http://127.0.0.1:1"}
    done = run_smartrec(tmp_path / "home", "snapshot", "export", **env)
    assert done.returncode == 2
    assert "object storage s3://nowhere/x cannot be written" in done.stderr
    assert "endpoint_url" not in done.stderr
