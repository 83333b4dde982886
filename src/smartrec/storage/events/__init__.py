"""The event bus: ports, the adapters behind ``SMARTREC_EVENTS_URL``, and the wire codec.

``database://`` (default): the database is the log (:mod:`database`). ``kafka://...``: Kafka
(:mod:`kafka`, ``confluent-kafka`` imported there only). ``memory://``: in-process, for tests.
"""

from smartrec.storage.events.base import (
    BusUnavailable,
    Delivery,
    EventBus,
    EventSource,
    Message,
)
from smartrec.storage.events.factory import open_event_bus, open_event_source, queued

__all__ = [
    "BusUnavailable",
    "Delivery",
    "EventBus",
    "EventSource",
    "Message",
    "open_event_bus",
    "open_event_source",
    "queued",
]
