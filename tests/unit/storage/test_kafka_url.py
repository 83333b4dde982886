"""``SMARTREC_EVENTS_URL=kafka://...``: what reaches librdkafka, and clear errors."""

from __future__ import annotations

import pytest

from smartrec.errors import ConfigError
from smartrec.storage.events import open_event_source
from smartrec.storage.events.factory import open_event_bus
from smartrec.storage.events.kafka import parse_url
from smartrec.storage.memory import MemoryStore


def test_defaults() -> None:
    c = parse_url("kafka://b1:9092")
    assert (c.bootstrap, c.topic, c.dlq_topic, c.group) == (
        "b1:9092",
        "smartrec-events",
        "smartrec-events.dlq",
        "smartrec-workers",
    )
    p = c.producer_conf()
    assert p["enable.idempotence"] is True and p["acks"] == "all"
    assert c.consumer_conf()["enable.auto.commit"] is False


def test_own_parameters_credentials_and_librdkafka_properties() -> None:
    c = parse_url(
        "kafka://%24ConnectionString:Endpoint%3Dsb%3A%2F%2Fx%2F%3BKey%3Dab%2Bc@ns.servicebus."
        "windows.net:9093,b2:9093?topic=ev&group=g&partitions=3&replication=2"
        "&security.protocol=SASL_SSL&sasl.mechanism=PLAIN&producer.linger.ms=20"
        "&consumer.fetch.wait.max.ms=50"
    )
    assert c.bootstrap == "ns.servicebus.windows.net:9093,b2:9093"
    assert (c.topic, c.dlq_topic, c.group, c.partitions, c.replication) == (
        "ev",
        "ev.dlq",
        "g",
        3,
        2,
    )
    p, k = c.producer_conf(), c.consumer_conf()
    assert p["sasl.username"] == "$ConnectionString"
    assert p["sasl.password"] == "Endpoint=sb://x/;Key=ab+c"
    assert p["security.protocol"] == k["security.protocol"] == "SASL_SSL"
    assert p["linger.ms"] == "20" and "linger.ms" not in {**c.common, **c.consumer}
    assert k["fetch.wait.max.ms"] == "50" and "fetch.wait.max.ms" not in p


@pytest.mark.parametrize(
    "url",
    ["kafka://", "kafka://host", "kafka://host:port", "kafka://h:1,h2", "kafka://h:1?partitions=x"],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_url(url)


@pytest.mark.parametrize("url", ["redis://x", "database", "sqs://q", ""])
def test_unknown_schemes_name_the_choices(url: str) -> None:
    with pytest.raises(ConfigError, match="database://"):
        open_event_bus(url, MemoryStore())


def test_a_worker_on_the_database_bus_is_told_why_there_is_nothing_to_drain() -> None:
    with pytest.raises(ConfigError, match="no queue for `smartrec worker` to drain"):
        open_event_source("database://")


def test_the_database_bus_writes_the_log_at_once() -> None:
    store = MemoryStore()
    bus = open_event_bus("database://", store)
    from smartrec.domain.records import EventRecord

    e = EventRecord("e1", "u", "i", "view", None, 1)
    assert bus.writes_log
    assert bus.publish([e, e]) == (1, 1)
    assert bus.publish([e]) == (0, 1)
    assert store.count_events() == 1


def test_a_producer_error_is_a_503_and_a_fatal_one_renews_the_producer() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from smartrec.domain.records import EventRecord
    from smartrec.storage.events import BusUnavailable
    from smartrec.storage.events.kafka import KafkaBus

    class Refusing:
        def produce(self, *args: object, **kwargs: object) -> None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            return 0

    bus = KafkaBus(parse_url("kafka://127.0.0.1:1"), timeout_s=0.5)
    # No callbacks from here on (they are served by the poller): nothing listens on port 1,
    # and "all brokers down" must not answer first.
    bus._stop.set()
    bus._poller.join(timeout=5)
    bus._down.clear()
    original = bus._producer
    bus._producer = Refusing()  # type: ignore[assignment]
    event = EventRecord("e", "u", "i", "view", None, 1)
    try:
        with pytest.raises(BusUnavailable, match="Kafka refused the batch"):
            bus.publish([event])
        assert bus._broken.is_set()
        # The next batch gets a new producer (this one times out: nothing listens on port 1).
        with pytest.raises(BusUnavailable, match="did not confirm"):
            bus.publish([event])
        assert not bus._broken.is_set() and not isinstance(bus._producer, Refusing)
        # Batches beyond ``max_waiting`` are refused at once.
        for _ in range(bus.max_waiting):
            assert bus._slots.acquire(blocking=False)
        with pytest.raises(BusUnavailable, match="already waiting"):
            bus.publish([event])
        assert bus.publish([]) == (0, 0)
    finally:
        bus._stop.set()
        del original


def test_only_a_queue_is_drained_by_workers() -> None:
    from smartrec.storage.events import queued

    assert queued("kafka://b:9092?topic=t") and not queued("database://")
    with pytest.raises(ConfigError):
        queued("sqs://q")
