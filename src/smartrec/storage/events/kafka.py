"""Kafka through ``confluent-kafka`` (librdkafka): Amazon MSK, Azure Event Hubs' Kafka
endpoint, Google Cloud Managed Service for Apache Kafka, Confluent Cloud, or any broker.

URL: ``kafka://[user:password@]host:port[,host:port...]?topic=smartrec-events&...``

* smartrec's own parameters: ``topic`` (default ``smartrec-events``), ``dlq_topic`` (default
  ``<topic>.dlq``), ``group`` (the workers' consumer group, default ``smartrec-workers``),
  ``partitions`` and ``replication`` (used only when smartrec creates a missing topic; default
  12 and the broker's default).
* Any other parameter is a librdkafka property, e.g. ``security.protocol=SASL_SSL&
  sasl.mechanism=SCRAM-SHA-512``; ``producer.X`` / ``consumer.X`` set X on one side only. The
  URL's user and password become ``sasl.username`` / ``sasl.password``.

The producer is idempotent with ``acks=all``, keyed by user id (a user's events stay in one
partition, in order); :meth:`KafkaBus.publish` returns only once the broker confirmed every
message of the batch. The consumer commits offsets only when :meth:`KafkaSource.commit` is
called, after the worker's writes are durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from smartrec.domain.records import EventRecord
from smartrec.errors import ConfigError
from smartrec.storage.events import codec
from smartrec.storage.events.base import BusUnavailable, Delivery, Message

log = logging.getLogger(__name__)
#: librdkafka's own log lines, through Python's logging (the server's format, JSON included).
KAFKA_LOG = logging.getLogger("smartrec.kafka")

DEFAULT_TOPIC = "smartrec-events"
DEFAULT_GROUP = "smartrec-workers"
#: Header a dead-lettered message carries: why the worker could not use it.
REASON_HEADER = "smartrec-reason"
SOURCE_HEADER = "smartrec-source"


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    topic: str = DEFAULT_TOPIC
    dlq_topic: str = f"{DEFAULT_TOPIC}.dlq"
    group: str = DEFAULT_GROUP
    partitions: int = 12
    replication: int = -1
    common: dict[str, str] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)

    def producer_conf(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": KAFKA_LOG,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            **self.common,
            **self.producer,
        }

    def consumer_conf(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": KAFKA_LOG,
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # The most a fetch waits for data: a broker answers as soon as data arrives, but
            # one that waits the whole time (tansu does) would put librdkafka's 500 ms into
            # every event's way to the replicas (freshness aim: 250 ms).
            "fetch.wait.max.ms": 100,
            **self.common,
            **self.consumer,
        }

    def admin_conf(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, "logger": KAFKA_LOG, **self.common}


def parse_url(url: str) -> KafkaConfig:
    """``kafka://...`` -> :class:`KafkaConfig` (a clear :class:`ConfigError` when malformed)."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"not a kafka:// URL: {url.split('@')[-1]!r}")
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if not hosts or any(":" not in h or not h.split(":")[-1].isdigit() for h in hosts.split(",")):
        raise ConfigError(
            f"kafka:// URL needs host:port[,host:port...], got {hosts!r} "
            "(e.g. kafka://broker-1:9092,broker-2:9092?topic=smartrec-events)"
        )
    own: dict[str, str] = {}
    common: dict[str, str] = {}
    producer: dict[str, str] = {}
    consumer: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in {"topic", "dlq_topic", "group", "partitions", "replication"}:
            own[name] = value
        elif name.startswith("producer."):
            producer[name.removeprefix("producer.")] = value
        elif name.startswith("consumer."):
            consumer[name.removeprefix("consumer.")] = value
        else:
            common[name] = value
    if at:
        user, _, password = userinfo.partition(":")
        common.setdefault("sasl.username", unquote(user))
        common.setdefault("sasl.password", unquote(password))
    topic = own.get("topic") or DEFAULT_TOPIC
    try:
        partitions = int(own.get("partitions", 12))
        replication = int(own.get("replication", -1))
    except ValueError:
        raise ConfigError("kafka:// URL: partitions and replication must be integers") from None
    return KafkaConfig(
        bootstrap=hosts,
        topic=topic,
        dlq_topic=own.get("dlq_topic") or f"{topic}.dlq",
        group=own.get("group") or DEFAULT_GROUP,
        partitions=partitions,
        replication=replication,
        common=common,
        producer=producer,
        consumer=consumer,
    )


def ensure_topics(config: KafkaConfig, timeout_s: float = 10.0) -> list[str]:
    """Create the event and dead-letter topics when missing; returns the ones created.

    Where topics are managed elsewhere (infrastructure code, no admin rights) a refusal is
    logged, not raised: the topics may exist already or be created on first use.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(config.admin_conf())
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BusUnavailable(f"Kafka at {config.bootstrap} does not answer: {exc}") from None
    wanted = [t for t in (config.topic, config.dlq_topic) if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t, config.partitions, config.replication) for t in wanted],
        request_timeout=timeout_s,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            err = exc.args[0]
            if getattr(err, "name", lambda: "")() != "TOPIC_ALREADY_EXISTS":
                log.warning("could not create Kafka topic %s: %s", topic, err)
    return created


class _Pending:
    """One publish call's messages: counted down by delivery reports."""

    def __init__(self, count: int, broken: threading.Event | None = None) -> None:
        self.broken = broken
        self.left = count
        self.errors: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        if count == 0:
            self.done.set()

    def report(self, err: Any, _msg: Any) -> None:
        with self.lock:
            if err is not None:
                self.errors.append(str(err))
                if self.broken is not None and (err.fatal() or err.name() == "PRODUCER_FENCED"):
                    self.broken.set()
            self.left -= 1
            if self.left <= 0:
                self.done.set()


class KafkaBus:
    """The API's producer. Thread-safe: one per process, shared by every request."""

    writes_log = False

    def __init__(
        self,
        config: KafkaConfig,
        timeout_s: float = 5.0,
        retry_after_s: int = 5,
        known: Callable[[Sequence[str]], set[str]] | None = None,
        max_waiting: int = 16,
    ) -> None:
        from confluent_kafka import Producer

        self.config = config
        self.max_waiting = max_waiting
        self._slots = threading.BoundedSemaphore(max_waiting)
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.known = known
        conf = config.producer_conf()
        # A message not confirmed within the publish timeout is not acknowledged to the
        # client, so librdkafka need not keep trying long after (a retried batch has the
        # same ids and counts once).
        conf.setdefault("delivery.timeout.ms", max(1000, int(timeout_s * 1000)))
        conf["error_cb"] = self._on_error
        self._conf = conf
        #: Set while librdkafka reports every broker down: publish refuses at once (a 503 in
        #: milliseconds, not after the timeout); the poller clears it when a broker answers.
        self._down = threading.Event()
        #: Set by a fatal error (e.g. the broker fenced this producer id): the idempotent
        #: producer cannot go on, so the next publish starts a new one.
        self._broken = threading.Event()
        self._swap = threading.Lock()
        self._producer = Producer(conf)
        self._stop = threading.Event()
        # Delivery reports are served by this thread, so that a request waits on its own
        # messages only (``flush`` would wait for every request's).
        self._poller = threading.Thread(target=self._serve, name="kafka-bus", daemon=True)
        self._poller.start()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal() or err.code() == KafkaError.PRODUCER_FENCED:
            log.warning("Kafka producer: %s (a new producer takes over)", err)
            self._broken.set()
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._down.is_set():
                log.warning("Kafka at %s: all brokers are down", self.config.bootstrap)
            self._down.set()
        else:
            log.warning("Kafka producer: %s", err)

    def _serve(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._down.is_set() and time.monotonic() - last_probe > 0.5:
                last_probe = time.monotonic()
                try:
                    self._producer.list_topics(self.config.topic, timeout=0.5)
                except Exception:  # still down
                    continue
                log.info("Kafka at %s answers again", self.config.bootstrap)
                self._down.clear()

    def publish(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        unique = list({e.event_id: e for e in events}.values())
        duplicates = len(events) - len(unique)
        if self.known is not None and unique:
            try:
                stored = self.known([e.event_id for e in unique])
            except Exception:  # the log is the worker's business: the bus does not need it
                log.warning("could not look up stored event ids; publishing all", exc_info=True)
                stored = set()
            if stored:
                unique = [e for e in unique if e.event_id not in stored]
                duplicates += len(stored)
        if self._down.is_set() and unique:
            raise BusUnavailable(
                f"Kafka at {self.config.bootstrap} is down (no broker answers)",
                self.retry_after_s,
            )
        if not unique:
            return 0, duplicates
        # Requests waiting on a slow broker hold server threads: beyond this many at once, a
        # batch is refused at once instead, so that reads keep their threads.
        if not self._slots.acquire(blocking=False):
            raise BusUnavailable(
                f"{self.max_waiting} batches are already waiting for Kafka at "
                f"{self.config.bootstrap}",
                self.retry_after_s,
            )
        try:
            return self._send(unique), duplicates
        finally:
            self._slots.release()

    def _send(self, unique: list[EventRecord]) -> int:
        from confluent_kafka import KafkaError, KafkaException

        if self._broken.is_set():
            self._renew()
        pending = _Pending(len(unique), self._broken)
        producer = self._producer
        try:
            for e in unique:
                producer.produce(
                    self.config.topic, codec.encode(e), codec.key(e), on_delivery=pending.report
                )
        except BufferError:
            raise BusUnavailable(
                "the Kafka producer's queue is full (the broker is slow or down)",
                self.retry_after_s,
            ) from None
        except KafkaException as exc:  # fenced or fatal producer, unknown topic, ...
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and (err.fatal() or err.name() == "PRODUCER_FENCED"):
                self._broken.set()
            raise BusUnavailable(f"Kafka refused the batch: {exc}", self.retry_after_s) from None
        if not pending.done.wait(self.timeout_s):
            with pending.lock:
                left = pending.left
            if left > 0:  # (0: the reports came in as the wait ran out; their errors say why)
                raise BusUnavailable(
                    f"Kafka at {self.config.bootstrap} did not confirm {left} of "
                    f"{len(unique)} events within {self.timeout_s:g} s",
                    self.retry_after_s,
                )
        if pending.errors:
            raise BusUnavailable(
                f"Kafka refused {len(pending.errors)} of {len(unique)} events: {pending.errors[0]}",
                self.retry_after_s,
            )
        return len(unique)

    def _renew(self) -> None:
        from confluent_kafka import Producer

        with self._swap:
            if not self._broken.is_set():
                return  # another request renewed it
            old, self._producer = self._producer, Producer(self._conf)
            self._broken.clear()
        log.info("Kafka producer renewed")
        old.flush(0)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=2)
        self._producer.flush(self.timeout_s)


class KafkaSource:
    """One worker's consumer (a member of ``config.group``) plus its dead-letter producer."""

    def __init__(self, config: KafkaConfig, timeout_s: float = 10.0) -> None:
        from confluent_kafka import Consumer, Producer

        self.config = config
        self.timeout_s = timeout_s
        self._consumer = Consumer(config.consumer_conf())
        self._consumer.subscribe([config.topic])
        self._dlq = Producer(config.producer_conf())
        self._highs: dict[int, int] = {}

    def poll(self, max_messages: int, timeout_s: float) -> Delivery:
        from confluent_kafka import KafkaError

        out: list[Message] = []
        for m in self._consumer.consume(max_messages, timeout_s):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer: %s", err)
                continue
            part, offset = m.partition(), m.offset()
            assert part is not None and offset is not None  # a message, not an error
            out.append(Message(m.key(), m.value(), (part, offset)))
        return Delivery(out)

    def commit(self, delivery: Delivery) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        if not delivery.messages:
            return
        last: dict[int, int] = {}
        for m in delivery.messages:
            p, off = m.position
            last[p] = max(last.get(p, -1), off)
        offsets = [TopicPartition(self.config.topic, p, off + 1) for p, off in last.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # A rebalance took the partitions: their new owner reads the batch again, and
            # the writes are idempotent, so nothing is lost or counted twice.
            log.warning("Kafka commit refused (%s): the batch will be read again", exc)

    def dead_letter(self, message: Message, reason: str) -> None:
        p, off = message.position
        pending = _Pending(1)
        self._dlq.produce(
            self.config.dlq_topic,
            message.value,
            message.key,
            headers=[
                (REASON_HEADER, reason.encode()),
                (SOURCE_HEADER, f"{self.config.topic}/{p}/{off}".encode()),
            ],
            on_delivery=pending.report,
        )
        self._dlq.flush(self.timeout_s)
        if not pending.done.is_set() or pending.errors:
            raise BusUnavailable(
                f"could not write to the dead-letter topic {self.config.dlq_topic}: "
                f"{pending.errors[0] if pending.errors else 'timed out'}"
            )

    def lag(self) -> int | None:
        from confluent_kafka import KafkaException

        try:
            assigned = self._consumer.assignment()
            if not assigned:
                return 0
            total = 0
            positions = self._consumer.position(assigned)
            # Before a partition's first message is read its position is unknown: the group's
            # committed offset (or the log's start) is where reading will begin.
            unknown = [tp for tp in positions if tp.offset < 0]
            committed = (
                {tp.partition: tp.offset for tp in self._consumer.committed(unknown, timeout=2)}
                if unknown
                else {}
            )
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high is None or high < 0:
                    low, high = self._consumer.get_watermark_offsets(tp, timeout=2)
                pos = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
                if pos < 0:
                    pos = low
                total += max(0, high - pos)
            return total
        except KafkaException:
            return None

    def close(self) -> None:
        try:
            self._consumer.close()  # leaves the group at once: its partitions move now
        finally:
            self._dlq.flush(self.timeout_s)
