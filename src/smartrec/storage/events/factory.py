"""Pick the event bus by ``SMARTREC_EVENTS_URL``; drivers are imported inside the adapters."""

from __future__ import annotations

from smartrec.errors import ConfigError
from smartrec.storage.events.base import EventBus, EventSource
from smartrec.storage.ports import EventStore

SCHEMES = ("database", "kafka")


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported events URL {url.split('@')[-1]!r}: use database:// (the default: the "
            "database is the log) or kafka://host:port[,host:port]?topic=..."
        )
    return scheme


def queued(url: str) -> bool:
    """Whether the URL names a queue that workers drain (else the API writes the log)."""
    return _scheme(url) != "database"


def _need_kafka() -> None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise ConfigError(
            "SMARTREC_EVENTS_URL=kafka://... needs the Kafka client: pip install 'smartrec[kafka]'"
        ) from None


def open_event_bus(
    url: str, events: EventStore, timeout_s: float = 5.0, retry_after_s: int = 5
) -> EventBus:
    """The API's side of the bus. Nothing connects here for ``database://``; the Kafka producer
    connects in the background (a broker that is down shows as 503 on ``POST /v1/events``)."""
    if _scheme(url) == "database":
        from smartrec.storage.events.database import DatabaseBus

        return DatabaseBus(events)
    _need_kafka()
    from smartrec.storage.events.kafka import KafkaBus, parse_url

    return KafkaBus(parse_url(url), timeout_s, retry_after_s, known=events.known_event_ids)


def open_event_source(url: str, create_topics: bool = True) -> EventSource:
    """A worker's side of the bus (a consumer group member)."""
    if _scheme(url) == "database":
        raise ConfigError(
            "SMARTREC_EVENTS_URL=database://: the API writes events to the database itself, so "
            "there is no queue for `smartrec worker` to drain; set SMARTREC_EVENTS_URL="
            "kafka://... to run workers (or SMARTREC_RETRAIN_INTERVAL_S to train on a schedule)"
        )
    _need_kafka()
    from smartrec.storage.events.kafka import KafkaSource, ensure_topics, parse_url

    config = parse_url(url)
    if create_topics:
        ensure_topics(config)
    return KafkaSource(config)
