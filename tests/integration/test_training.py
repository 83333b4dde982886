"""Training decisions against a real registry: promotion rules, locks, registry failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from smartrec.config import Settings
from smartrec.domain import EventRecord
from smartrec.runtime import build_registry
from smartrec.storage.sql import SqlStore
from smartrec.training import Trainer

pytestmark = pytest.mark.integration


def _events(users: range, prefix: str, t0: int) -> list[EventRecord]:
    """Two taste groups: even users like items 0-9, odd users items 10-19."""
    out = []
    for u in users:
        base = 0 if u % 2 == 0 else 10
        for k in range(8):
            item = base + (u * 3 + k) % 10
            out.append(
                EventRecord(f"{prefix}{u}-{k}", f"u{u}", f"i{item}", "view", None, t0 + u * 10 + k)
            )
    return out


def _trainer(home: Path) -> tuple[Trainer, SqlStore]:
    settings = Settings(home=home, models={"popularity": {}, "itemknn": {"k": 20}})
    settings.ensure_home()
    store = SqlStore(settings.resolved_database_url)
    store.migrate()
    return Trainer(settings, store, build_registry(settings)), store


def test_a_champion_that_cannot_be_compared_stays(home: Path) -> None:
    trainer, store = _trainer(home)
    store.add_events(_events(range(40), "a", 1_000_000))
    first = trainer.run()
    assert first.promoted and first.model_version == "1"
    # Only brand-new users, one event each, in the newest 10 %: nothing to validate on.
    store.add_events(
        [
            EventRecord(f"b{u}", f"new{u}", f"i{u % 20}", "view", None, 9_000_000 + u)
            for u in range(60)
        ]
    )
    second = trainer.run()
    assert second.validation_users == 0
    assert second.promoted is False
    assert trainer.registry.alias_version("champion") == "1"
    assert any("could not be compared" in n for n in second.notes), second.notes
    store.close()


def test_should_promote_rules() -> None:
    rule = Trainer._should_promote
    assert rule({"ndcg@10": 0.1}, None, None, "ndcg@10") == (True, "")
    assert rule({"ndcg@10": 0.2}, {"ndcg@10": 0.2}, "3", "ndcg@10")[0] is True  # tie: newer wins
    promoted, why = rule({"ndcg@10": 0.1}, {"ndcg@10": 0.2}, "3", "ndcg@10")
    assert not promoted and "below champion 3" in why
    assert rule({"ndcg@10": 0.9}, None, "3", "ndcg@10")[0] is False


def test_registry_failures_are_not_mistaken_for_no_champion(home: Path) -> None:
    settings = Settings(home=home, registry_url="http://127.0.0.1:9", models={"popularity": {}})
    settings.ensure_home()
    store = SqlStore(settings.resolved_database_url)
    store.migrate()
    store.add_events(_events(range(20), "a", 1_000))
    registry = build_registry(settings)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        with pytest.raises(Exception, match="API request"):
            registry.alias_version("champion")
    store.close()


def test_store_lock_excludes_across_connections(db_url: str) -> None:
    a, b = SqlStore(db_url), SqlStore(db_url)
    a.migrate()
    order: list[str] = []

    def hold() -> None:
        with a.lock("t"):
            order.append("a-in")
            time.sleep(0.3)
            order.append("a-out")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.1)
    with b.lock("t"):
        order.append("b-in")
    thread.join()
    assert order == ["a-in", "a-out", "b-in"]
    a.close()
    b.close()


def test_running_jobs_keep_their_heartbeat_fresh(tmp_path: Path) -> None:
    from smartrec.training import JobRunner

    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    release = threading.Event()

    class SlowTrainer:
        def run(self, models: object = None, tune_budget_s: object = None) -> object:
            release.wait(10)
            raise RuntimeError("stopped on purpose")

    runner = JobRunner(SlowTrainer(), store, stale_after_s=5.0)  # type: ignore[arg-type]
    job_id = runner.submit({})
    first = store.get_job(job_id)["heartbeat_at"]  # type: ignore[index]
    deadline = time.monotonic() + 10  # beats come every 1.25 s: wait for the next one
    while (later := store.get_job(job_id)["heartbeat_at"]) == first:  # type: ignore[index]
        assert time.monotonic() < deadline, "no heartbeat while the job runs"
        release.wait(0.05)
    assert later > first
    assert runner.get(job_id)["status"] == "running"
    release.set()
    assert runner.wait(job_id, timeout=10)["status"] == "failed"
    runner.shutdown()
    store.close()
