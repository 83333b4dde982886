"""The embedded default bus: the database is the log.

``publish`` stores the events in the event log in one transaction (unknown users and items
created with them), so what the API acknowledged survives a crash and is visible to every
process that reads the database. Other API processes learn of new events by polling the log
(``SMARTREC_FEED_POLL_INTERVAL_S``); there is no separate queue to drain.
"""

from __future__ import annotations

from collections.abc import Sequence

from smartrec.domain.records import EventRecord
from smartrec.storage.ports import EventStore


class DatabaseBus:
    writes_log = True

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def publish(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        return self.events.add_events(events)

    def close(self) -> None:
        pass
