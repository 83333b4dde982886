"""The event worker on the in-memory bus and store: every event once, bad input dead-lettered,
nothing committed before it is written."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from smartrec.domain import EventWeights
from smartrec.domain.records import EventRecord
from smartrec.storage.events import codec
from smartrec.storage.events.memory import MemoryBus, MemoryLog, MemorySource
from smartrec.storage.memory import MemoryStore
from smartrec.workers import EventWorker, WorkerMetrics


def _events(n: int, start: int = 0) -> list[EventRecord]:
    return [
        EventRecord(f"e{i}", f"u{i % 7}", f"i{i % 13}", "view", None, 1_000 + i)
        for i in range(start, start + n)
    ]


def _worker(log: MemoryLog, store: MemoryStore, **kw: object) -> EventWorker:
    return EventWorker(MemorySource(log), store, known_type=EventWeights().known, **kw)  # type: ignore[arg-type]


def _drain(worker: EventWorker) -> None:
    while worker.step():
        pass


def test_every_published_event_lands_once_and_the_batch_is_committed() -> None:
    log, store = MemoryLog(), MemoryStore()
    MemoryBus(log).publish(_events(250))
    worker = _worker(log, store, batch_size=40)
    _drain(worker)
    assert store.count_events() == 250
    assert (worker.stored, worker.duplicates) == (250, 0)
    assert worker.source.lag() == 0
    assert sum(log.committed["smartrec-workers"].values()) == 250


def test_a_restart_before_the_commit_reads_the_batch_again_and_counts_it_once() -> None:
    log, store = MemoryLog(), MemoryStore()
    MemoryBus(log).publish(_events(100))

    class NoCommit(MemorySource):
        def commit(self, delivery: object) -> None:  # killed between the write and the commit
            raise SystemExit("killed")

    first = EventWorker(NoCommit(log), store, batch_size=1000)
    with pytest.raises(SystemExit):
        first.step()
    assert store.count_events() == 100 and log.committed.get("smartrec-workers", {}) == {}
    second = _worker(log, store, batch_size=1000)
    _drain(second)
    assert store.count_events() == 100
    assert (second.stored, second.duplicates) == (0, 100)


def test_a_resent_event_is_a_duplicate_not_a_second_event() -> None:
    log, store = MemoryLog(), MemoryStore()
    bus = MemoryBus(log)
    bus.publish(_events(10))
    bus.publish(_events(10, start=5))
    worker = _worker(log, store)
    _drain(worker)
    assert store.count_events() == 15
    assert (worker.stored, worker.duplicates) == (15, 5)


def test_malformed_messages_are_dead_lettered_with_their_reason_and_the_rest_stored() -> None:
    log, store = MemoryLog(), MemoryStore()
    good = _events(3)
    log.append(b"u", codec.encode(good[0]))
    log.append(b"u", b"{broken")
    log.append(b"u", codec.encode(EventRecord("x", "u", "i", "teleport", None, 1)))
    log.append(b"u", None)
    log.append(b"u", codec.encode(good[1]))
    metrics = WorkerMetrics()
    worker = _worker(log, store, metrics=metrics)
    _drain(worker)
    assert store.count_events() == 2
    reasons = [reason for _, reason in log.dead]
    assert len(reasons) == 3
    assert "not JSON" in reasons[0]
    assert "unknown event type 'teleport'" in reasons[1]
    assert "empty message" in reasons[2]
    assert log.dead[0][0].value == b"{broken"
    sample = metrics.registry.get_sample_value
    assert sample("smartrec_worker_events_total", {"outcome": "dead_letter"}) == 3
    assert sample("smartrec_worker_events_total", {"outcome": "stored"}) == 2
    assert worker.source.lag() == 0


class FlakyStore(MemoryStore):
    """A database that is down for the next ``failures`` writes (it does not answer a ping)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        return super().add_events(events)

    def ping(self) -> bool:
        return self.failures == 0


class PickyStore(MemoryStore):
    """A database that is up but refuses batches holding certain events (as PostgreSQL
    refuses a value its column cannot hold)."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__()
        self.refused = refused
        self.calls = 0

    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        self.calls += 1
        bad = [e.event_id for e in events if e.event_id in self.refused]
        if bad:
            raise ValueError(f"value too long for type character varying(256): {bad[0]}")
        return super().add_events(events)


def test_events_the_log_refuses_are_found_and_dead_lettered_and_the_rest_stored() -> None:
    log, store = MemoryLog(), PickyStore({"e7", "e30"})
    MemoryBus(log).publish(_events(40))
    worker = _worker(log, store, batch_size=1000, retry_wait_s=0.0)
    _drain(worker)
    assert store.count_events() == 38
    assert sorted(m.value for m, _ in log.dead) == sorted(
        codec.encode(e) for e in _events(40) if e.event_id in {"e7", "e30"}
    )
    assert all("refused by the event log: ValueError" in reason for _, reason in log.dead)
    assert worker.source.lag() == 0 and store.calls < 40  # halves, not one write per event


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,  # the decoder's recursion limit
        b'{"v":1,"event_id":"e","user_id":"u","item_id":"i","type":"view","ts":1,"value":'
        + b"9" * 400
        + b"}",  # an integer no float can hold
        b'{"v":1,"event_id":"e","user_id":"u","item_id":"i","type":"view","ts":'
        + b"9" * 30
        + b"}",  # beyond BIGINT
        b'{"v":1,"event_id":"' + b"x" * 300 + b'","user_id":"u","item_id":"i","type":"view",'
        b'"ts":1}',  # an id longer than the log's column
        b'{"v":1,"event_id":"e","user_id":"\\ud800","item_id":"i","type":"view","ts":1}',
        # (above: a lone surrogate, escaped in the JSON)
        b'{"v":1,"event_id":"e","user_id":"u/events","item_id":"i","type":"view","ts":1}',
    ],
)
def test_hostile_messages_are_dead_lettered_and_the_worker_goes_on(raw: bytes) -> None:
    log, store = MemoryLog(), MemoryStore()
    log.append(b"u", raw)
    MemoryBus(log).publish(_events(2))
    worker = _worker(log, store)
    _drain(worker)
    assert store.count_events() == 2 and len(log.dead) == 1
    assert log.dead[0][0].value == raw


def test_a_dead_letter_that_fails_is_retried_before_the_batch_is_committed() -> None:
    log, store = MemoryLog(), MemoryStore()
    log.append(b"u", b"junk")
    calls = {"n": 0}

    class Source(MemorySource):
        def dead_letter(self, message: object, reason: str) -> None:
            calls["n"] += 1
            if calls["n"] < 3:
                raise RuntimeError("dead-letter topic unavailable")
            super().dead_letter(message, reason)  # type: ignore[arg-type]

    worker = EventWorker(Source(log), store, retry_wait_s=0.0)
    _drain(worker)
    assert calls["n"] == 3 and len(log.dead) == 1
    assert sum(log.committed["smartrec-workers"].values()) == 1


def test_a_failing_database_is_retried_and_nothing_is_committed_meanwhile() -> None:
    log, store = MemoryLog(), FlakyStore(failures=2)
    MemoryBus(log).publish(_events(20))
    metrics = WorkerMetrics()
    worker = _worker(log, store, retry_wait_s=0.0, metrics=metrics)
    _drain(worker)
    assert store.count_events() == 20
    assert metrics.registry.get_sample_value("smartrec_worker_store_failures_total") == 2


def test_stopping_while_the_database_is_down_leaves_the_batch_uncommitted() -> None:
    log, store = MemoryLog(), FlakyStore(failures=10**6)
    MemoryBus(log).publish(_events(20))
    worker = _worker(log, store, retry_wait_s=0.01)
    threading.Timer(0.1, worker.stop.set).start()
    assert worker.step() == 0
    assert log.committed.get("smartrec-workers", {}) == {}
    store.failures = 0
    again = _worker(log, store)
    _drain(again)
    assert store.count_events() == 20


def test_run_stops_on_request_and_closes_the_source() -> None:
    log, store = MemoryLog(), MemoryStore()
    MemoryBus(log).publish(_events(5))
    closed: list[bool] = []

    class Source(MemorySource):
        def close(self) -> None:
            closed.append(True)

    worker = EventWorker(Source(log), store)
    worker.run(until=lambda: store.count_events() == 5)
    assert closed == [True] and store.count_events() == 5


def test_a_bus_that_is_down_refuses_the_whole_batch() -> None:
    from smartrec.storage.events import BusUnavailable

    log = MemoryLog(down=True)
    with pytest.raises(BusUnavailable):
        MemoryBus(log).publish(_events(3))
    assert len(log) == 0
