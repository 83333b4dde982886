"""The event bus on a real Kafka-protocol broker (tansu) with the confluent-kafka client that
production uses against MSK, Event Hubs or Confluent Cloud."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smartrec.domain import EventWeights
from smartrec.domain.records import EventRecord
from smartrec.storage.events import BusUnavailable, open_event_source
from smartrec.storage.events.kafka import REASON_HEADER, KafkaBus, ensure_topics, parse_url
from smartrec.storage.memory import MemoryStore
from smartrec.workers import EventWorker, WorkerMetrics
from tests.kafka import Tansu

confluent_kafka = pytest.importorskip("confluent_kafka")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    tansu = Tansu(tmp_path_factory.mktemp("tansu")).start()
    yield tansu
    tansu.stop()


def _events(n: int, start: int = 0, users: int = 9) -> list[EventRecord]:
    return [
        EventRecord(f"e{i}", f"u{i % users}", f"i{i % 31}", "view", None, 1_000 + i)
        for i in range(start, start + n)
    ]


def _until(done: Callable[[], bool], timeout_s: float = 60.0) -> Callable[[], bool]:
    deadline = time.monotonic() + timeout_s

    def check() -> bool:
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        return done()

    return check


def _read_all(bootstrap: str, topic: str, expect: int) -> list[object]:
    """Every message of ``topic`` with a plain consumer of its own group."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    out: list[object] = []
    deadline = time.monotonic() + 60
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
    consumer.close()
    return out


def test_published_events_reach_the_log_once_through_a_worker(broker: Tansu) -> None:
    url = broker.url()
    config = parse_url(url)
    ensure_topics(config)
    store = MemoryStore()
    bus = KafkaBus(config, timeout_s=10, known=store.known_event_ids)
    try:
        assert bus.publish(_events(500) + _events(3)) == (500, 3)  # in-batch duplicates
        metrics = WorkerMetrics()
        worker = EventWorker(
            open_event_source(url),
            store,
            batch_size=200,
            known_type=EventWeights().known,
            metrics=metrics,
        )
        worker.run(until=_until(lambda: store.count_events() == 500))
        assert (worker.stored, worker.duplicates) == (500, 0)
        # Already in the log: the API says so and does not send them again.
        assert bus.publish(_events(20, start=490)) == (10, 10)
        again = EventWorker(open_event_source(url), store)
        again.run(until=_until(lambda: store.count_events() == 510))
        # The first worker committed: the second read only what came after.
        assert (again.stored, again.duplicates) == (10, 0)
        assert metrics.registry.get_sample_value("smartrec_worker_lag_messages") == 0
    finally:
        bus.close()


def test_a_users_events_stay_in_one_partition_in_order(broker: Tansu) -> None:
    url = broker.url()
    config = parse_url(url)
    ensure_topics(config)
    bus = KafkaBus(config, timeout_s=10)
    try:
        for lo in range(0, 300, 50):  # several batches, as separate requests would send them
            bus.publish(_events(50, start=lo, users=5))
    finally:
        bus.close()
    messages = _read_all(config.bootstrap, config.topic, 300)
    from smartrec.storage.events.codec import decode

    by_user: dict[str, list[tuple[int, int, int]]] = {}
    for m in messages:
        e = decode(m.value())  # type: ignore[attr-defined]
        by_user.setdefault(e.user_id, []).append((m.partition(), m.offset(), e.ts))  # type: ignore[attr-defined]
    assert sum(map(len, by_user.values())) == 300
    for rows in by_user.values():
        assert len({p for p, _, _ in rows}) == 1
        assert [ts for _, _, ts in sorted(rows)] == sorted(ts for _, _, ts in rows)


def test_malformed_messages_reach_the_dead_letter_topic_with_their_reason(
    broker: Tansu,
) -> None:
    url = broker.url()
    config = parse_url(url)
    ensure_topics(config)
    producer = confluent_kafka.Producer({"bootstrap.servers": config.bootstrap})
    from smartrec.storage.events.codec import encode

    good = _events(4)
    for raw in [encode(good[0]), b"not json", encode(good[1]), b'{"v": 9}', encode(good[2])]:
        producer.produce(config.topic, raw, b"u0")
    producer.flush(10)
    store = MemoryStore()
    worker = EventWorker(open_event_source(url), store)
    worker.run(until=_until(lambda: worker.dead_lettered == 2 and store.count_events() == 3))
    dead = _read_all(config.bootstrap, config.dlq_topic, 2)
    reasons = {m.value(): dict(m.headers())[REASON_HEADER].decode() for m in dead}  # type: ignore[attr-defined]
    assert set(reasons) == {b"not json", b'{"v": 9}'}
    assert "not JSON" in reasons[b"not json"]
    assert "unknown message version 9" in reasons[b'{"v": 9}']


def test_a_broker_that_is_down_refuses_the_batch_at_once(tmp_path: Path) -> None:
    tansu = Tansu(tmp_path).start()
    config = parse_url(tansu.url())
    ensure_topics(config)
    bus = KafkaBus(config, timeout_s=20, retry_after_s=7)
    try:
        assert bus.publish(_events(5)) == (5, 0)
        tansu.stop()
        # librdkafka notices within its reconnect backoff; a refusal before that waits for the
        # timeout, then they are immediate.
        deadline = time.monotonic() + 30
        while True:
            started = time.monotonic()
            with pytest.raises(BusUnavailable) as info:
                bus.publish(_events(5, start=5))
            if time.monotonic() - started < 0.5:
                break
            assert time.monotonic() < deadline, "never refused at once"
        assert info.value.retry_after_s == 7 and info.value.status == 503
        assert "is down" in str(info.value)
    finally:
        tansu.stop()
        bus._stop.set()  # no flush against a broker that is gone


def test_a_broker_that_stops_answering_is_a_refusal_and_then_serves_again(
    tmp_path: Path,
) -> None:
    """A hung broker (SIGSTOP: connections open, no answers) keeps its state, as a real broker
    that is slow or partitioned away does: the batch is refused after the timeout, and the
    same producer publishes again once the broker answers."""
    import signal

    tansu = Tansu(tmp_path).start()
    config = parse_url(tansu.url())
    ensure_topics(config)
    bus = KafkaBus(config, timeout_s=2.0)
    try:
        assert bus.publish(_events(5)) == (5, 0)
        assert tansu.process is not None
        tansu.process.send_signal(signal.SIGSTOP)
        try:
            # Unconfirmed at the timeout, or (when the client times its requests out just then)
            # refused with the client's own timeout: a refusal either way. Under a loaded CI
            # machine a batch has once been confirmed as the wait ran out: another batch then.
            refusal = None
            for attempt in range(3):
                started = time.monotonic()
                try:
                    bus.publish(_events(5, start=100 + 5 * attempt))
                except BusUnavailable as exc:
                    refusal = exc
                    break
            assert refusal is not None, "a hung broker never refused a batch"
            assert re.search(
                r"did not confirm \d of 5 events within 2 s|refused 5 of 5", str(refusal)
            )
            assert 1.9 < time.monotonic() - started < 10
        finally:
            tansu.process.send_signal(signal.SIGCONT)
        bus.timeout_s = 20
        # tansu fences the producer id after the timed-out batch (a broker may): that batch's
        # answer is a 503, and a new producer serves the next.
        refused = 0
        while True:
            try:
                assert bus.publish(_events(5, start=10)) == (5, 0)
                break
            except BusUnavailable:
                refused += 1
                assert refused <= 2, "the producer never served again"
    finally:
        bus.close()
        tansu.stop()


def test_two_workers_of_one_group_share_the_partitions_and_store_each_event_once(
    broker: Tansu,
) -> None:
    url = broker.url()
    config = parse_url(url)
    ensure_topics(config)
    store = MemoryStore()
    workers = [EventWorker(open_event_source(url), store, batch_size=500) for _ in range(2)]
    # Both members in the group before anything is sent, so that the partitions are split.
    deadline = time.monotonic() + 60
    while not all(w.source._consumer.assignment() for w in workers):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the group never split the partitions"
        for w in workers:
            w.step()
    owned = [{tp.partition for tp in w.source._consumer.assignment()} for w in workers]  # type: ignore[attr-defined]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {0, 1, 2, 3}
    bus = KafkaBus(config, timeout_s=10)
    try:
        bus.publish(_events(4000, users=97))
    finally:
        bus.close()
    done = _until(lambda: store.count_events() == 4000)
    while not done():
        for w in workers:
            w.step()
    assert all(w.stored > 0 for w in workers)
    assert sum(w.stored for w in workers) == 4000
    assert sum(w.duplicates for w in workers) == 0
    for w in workers:
        w.source.close()
