"""The event worker: from the bus into the event log, every event once.

A batch is read, decoded, written to the log (idempotent: an event id already there is a
duplicate, not a second event), malformed messages are dead-lettered with their reason, and
only then is the batch committed. A worker killed anywhere in between reads the batch again
after its restart, and the idempotent write makes the second pass count nothing twice: at least
once plus idempotence is exactly once in the log. A database that is down stops the worker
from committing (it retries the same batch); it never dies on bad input.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from smartrec.domain.records import EventRecord
from smartrec.storage.events import Delivery, EventSource, Message
from smartrec.storage.events.codec import MalformedEvent, decode
from smartrec.storage.ports import EventStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class EventLog(EventStore, Protocol):
    """What the worker writes to: the event log, and whether its database answers (a failed
    write with the database answering is the data's fault, not an outage)."""

    def ping(self) -> bool: ...


@dataclass
class WorkerMetrics:
    """Prometheus metrics of one worker process, in their own registry (served by
    ``smartrec worker --metrics-port``)."""

    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.events = Counter(
            "smartrec_worker_events",
            "Messages handled, by outcome: stored, duplicate (already in the log), dead_letter",
            ["outcome"],
            registry=registry,
        )
        self.batches = Histogram(
            "smartrec_worker_batch_seconds",
            "Seconds from a batch read to its commit",
            registry=registry,
        )
        self.lag = Gauge(
            "smartrec_worker_lag_messages",
            "Messages in this worker's partitions not read yet (consumer lag)",
            registry=registry,
        )
        self.store_failures = Counter(
            "smartrec_worker_store_failures",
            "Batches whose write to the event log failed (retried, not committed)",
            registry=registry,
        )


class EventWorker:
    def __init__(
        self,
        source: EventSource,
        events: EventLog,
        batch_size: int = 5000,
        poll_timeout_s: float = 0.05,
        known_type: Callable[[str], bool] | None = None,
        metrics: WorkerMetrics | None = None,
        retry_wait_s: float = 1.0,
        on_stored: Callable[[list[EventRecord]], None] | None = None,
    ) -> None:
        self.source = source
        self.events = events
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.known_type = known_type
        self.metrics = metrics
        self.retry_wait_s = retry_wait_s
        self.on_stored = on_stored
        self.stop = threading.Event()
        self.stored = 0
        self.duplicates = 0
        self.dead_lettered = 0

    def _check(self, m: Message) -> EventRecord | str:
        try:
            event = decode(m.value)
        except MalformedEvent as exc:
            return str(exc)
        except Exception as exc:  # whatever a message does to the decoder, the worker goes on
            return f"unreadable: {type(exc).__name__}: {str(exc)[:200]}"
        if self.known_type is not None and not self.known_type(event.type):
            return f"unknown event type {event.type!r} (not in this worker's event weights)"
        return event

    def step(self) -> int:
        """One batch: read, write, dead-letter, commit. Returns the messages handled (0 when
        none came, or when the worker was stopped before the batch could be written)."""
        delivery = self.source.poll(self.batch_size, self.poll_timeout_s)
        if not delivery.messages:
            self._lag()
            return 0
        started = time.perf_counter()
        good: list[tuple[Message, EventRecord]] = []
        bad: list[tuple[Message, str]] = []
        for m in delivery.messages:
            checked = self._check(m)
            if isinstance(checked, str):
                bad.append((m, checked))
            else:
                good.append((m, checked))
        if good:
            refused = self._store(good)
            if refused is None:
                return 0  # stopping with the batch unwritten: not committed, read again later
            bad += refused
        for m, reason in bad:
            log.warning("dead-lettering message %s: %s", m.position, reason)
            if not self._retry(functools.partial(self.source.dead_letter, m, reason)):
                return 0  # stopping: the batch is read again (its writes are idempotent)
        self._commit(delivery, len(bad))
        if self.metrics is not None:
            self.metrics.batches.observe(time.perf_counter() - started)
        self._lag()
        return len(delivery)

    def _retry(self, action: Callable[[], object]) -> bool:
        """``action`` until it succeeds (True) or the worker is stopped (False)."""
        while True:
            try:
                action()
                return True
            except Exception:
                log.exception("dead-lettering failed; retrying")
                if self.stop.wait(self.retry_wait_s):
                    return False

    def _store(self, good: list[tuple[Message, EventRecord]]) -> list[tuple[Message, str]] | None:
        """Write the events; returns the messages the event log refuses for good (to
        dead-letter), or None when the worker was stopped before they could be written.

        A failure with the database answering is the data's: the batch is split in halves until
        the events it refuses are found. A failure with the database down is waited out: the
        same batch again, nothing committed meanwhile.
        """
        events = [e for _, e in good]
        while True:
            try:
                accepted, duplicates = self.events.add_events(events)
                break
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.store_failures.inc()
                if self._database_answers():
                    if len(good) == 1:
                        reason = f"refused by the event log: {type(exc).__name__}: {exc}"
                        return [(good[0][0], reason[:500])]
                    half = len(good) // 2
                    first = self._store(good[:half])
                    if first is None:
                        return None
                    second = self._store(good[half:])
                    return None if second is None else first + second
                log.exception("could not write %d events to the log; retrying", len(events))
                self._lag()
                if self.stop.wait(self.retry_wait_s):
                    return None
        self.stored += accepted
        self.duplicates += duplicates
        if self.metrics is not None:
            self.metrics.events.labels("stored").inc(accepted)
            self.metrics.events.labels("duplicate").inc(duplicates)
        if self.on_stored is not None:
            self.on_stored(events)
        return []

    def _database_answers(self) -> bool:
        try:
            return bool(self.events.ping())
        except Exception:
            return False

    def _commit(self, delivery: Delivery, dead: int) -> None:
        self.source.commit(delivery)
        self.dead_lettered += dead
        if self.metrics is not None and dead:
            self.metrics.events.labels("dead_letter").inc(dead)

    def _lag(self) -> None:
        if self.metrics is not None:
            lag = self.source.lag()
            if lag is not None:
                self.metrics.lag.set(lag)

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Batches until :attr:`stop` is set (SIGTERM) or ``until()`` says so; the batch in
        hand is finished and committed first."""
        log.info("event worker started")
        try:
            while not self.stop.is_set() and not (until is not None and until()):
                self.step()
        finally:
            self.source.close()
            log.info(
                "event worker stopped: %d stored, %d duplicates, %d dead-lettered",
                self.stored,
                self.duplicates,
                self.dead_lettered,
            )
