"""``POST /v1/events`` on the Kafka bus, a ``smartrec worker`` process writing PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartrec.api.app import create_app
from smartrec.config import Settings
from tests.api.conftest import assert_problem
from tests.kafka import Tansu

pytest.importorskip("confluent_kafka")


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Tansu]:
    tansu = Tansu(tmp_path).start()
    yield tansu
    tansu.stop()


def _count(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        try:
            row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        except psycopg.errors.UndefinedTable:  # the worker has not migrated yet
            return 0
    assert row is not None and row[0] == row[1]
    return int(row[0])


def _wait(pg_url: str, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _count(pg_url) != n:
        assert time.monotonic() < deadline, f"{_count(pg_url)} events, expected {n}"
        time.sleep(0.1)


def _worker_env(home: Path, pg_url: str, events_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")}
    return env | {
        "SMARTREC_HOME": str(home),
        "SMARTREC_DATABASE_URL": pg_url,
        "SMARTREC_EVENTS_URL": events_url,
        "SMARTREC_LOG_LEVEL": "INFO",
    }


def _start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("smartrec")), "worker", *args]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"event_id": f"e{i}", "user_id": f"u{i % 11}", "item_id": f"i{i % 17}", "type": "click"}
        for i in range(start, start + n)
    ]


def test_acknowledged_events_reach_postgres_through_a_worker_and_a_dead_broker_is_a_503(
    broker: Tansu, pg_url: str, home: Path
) -> None:
    url = broker.url()
    settings = Settings(
        home=home,
        database_url=pg_url,
        events_url=url,
        events_publish_timeout_s=10.0,
        events_retry_after_s=3,
        reload_interval_s=0,
        feed_poll_interval_s=0,
        feed_precompute_users=0,
    )
    worker = _start_worker(_worker_env(home, pg_url, url), home / "worker.log")
    try:
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/events", json={"events": _events(300)})
            assert r.status_code == 202, r.text
            assert r.json() == {"accepted": 300, "duplicates": 0}
            _wait(pg_url, 300)
            # Sent again once stored: duplicates, and nothing new reaches the log.
            r = client.post("/v1/events", json={"events": _events(10, start=295)})
            assert r.json() == {"accepted": 5, "duplicates": 5}
            _wait(pg_url, 305)
            assert client.get("/v1/users/u3/events").json()["events"]

            broker.stop()
            r = client.post("/v1/events", json={"events": _events(10, start=1000)})
            body = assert_problem(r, 503)  # within the timeout; at once once the client knows
            assert r.headers["retry-after"] == "3"
            assert "Kafka at" in body["detail"], body
            # Bad input is still a 422 naming the row, not a 503.
            r = client.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "i"}]})
            assert_problem(r, 422)
            assert _count(pg_url) == 305  # everything acknowledged is there
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, (home / "worker.log").read_text()[-3000:]
    assert "event worker stopped: 305 stored" in (home / "worker.log").read_text()


def test_the_worker_survives_being_killed_three_times_and_counts_every_event_once(
    broker: Tansu, pg_url: str, home: Path
) -> None:
    """The issue's crash test: 200,000 events, SIGKILL three times mid-stream, restart."""
    from smartrec.domain.records import EventRecord
    from smartrec.storage.events.kafka import KafkaBus, ensure_topics, parse_url

    total = 200_000
    url = broker.url()
    config = parse_url(url)
    ensure_topics(config)
    bus = KafkaBus(config, timeout_s=60)
    try:
        for lo in range(0, total, 10_000):
            batch = [
                EventRecord(f"c{i}", f"u{i % 5000}", f"i{i % 3000}", "view", None, 10_000 + i)
                for i in range(lo, lo + 10_000)
            ]
            assert bus.publish(batch) == (10_000, 0)
    finally:
        bus.close()
    env = _worker_env(home, pg_url, url)
    log = home / "worker.log"
    kills = []
    for threshold in (20_000, 80_000, 140_000):
        proc = _start_worker(env, log, "--batch-size", "2000")
        deadline = time.monotonic() + 120
        while _count(pg_url) < threshold:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"stuck at {_count(pg_url)}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills.append(_count(pg_url))
    assert kills[-1] < total, "the worker finished before the third kill"
    proc = _start_worker(env, log, "--batch-size", "2000")
    try:
        _wait(pg_url, total, timeout_s=180)
        time.sleep(1.0)  # a redelivered batch would land now
        assert _count(pg_url) == total
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE event_id LIKE 'c%%' AND ts = 10000 + "
                "CAST(substr(event_id, 2) AS bigint)"
            ).fetchone()
        assert row is not None and row[0] == total
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"crash test: killed at {kills} stored events; {total} stored once each")
