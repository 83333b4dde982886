"""The ingest path shared by the HTTP API and the demo: validate, identify, store once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from smartrec.domain import EventRecord, EventWeights
from smartrec.domain.clock import now_ms as clock_ms
from smartrec.errors import PayloadTooLarge, ValidationFailed
from smartrec.schemas import EventIn, ItemIn, UserIn
from smartrec.storage.events import EventBus
from smartrec.storage.ports import CatalogStore, EventStore


def event_id_for(user_id: str, item_id: str, event_type: str, ts_ms: int) -> str:
    """Deterministic id of an event sent without one, so a retried batch counts once."""
    key = f"{user_id}\x1f{item_id}\x1f{event_type}\x1f{ts_ms}".encode()
    return "h:" + hashlib.blake2b(key, digest_size=16).hexdigest()


@dataclass(frozen=True)
class FieldError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class Ingestor:
    """Writes catalog rows and events; every batch is validated whole before anything is stored.

    Live events go to the event ``bus`` (by default the database itself); a bulk import of
    history (:meth:`import_events`) goes straight to the event log.
    """

    def __init__(
        self,
        catalog: CatalogStore,
        events: EventStore,
        weights: EventWeights,
        max_batch_size: int,
        max_future_skew_s: float = 86_400.0,
        bus: EventBus | None = None,
    ) -> None:
        self.catalog = catalog
        self.events = events
        if bus is None:
            from smartrec.storage.events.database import DatabaseBus

            bus = DatabaseBus(events)
        self.bus = bus
        self.weights = weights
        self.max_batch_size = max_batch_size
        self.max_future_skew_ms = int(max_future_skew_s * 1000)

    def _check_size(self, n: int, what: str) -> None:
        if n > self.max_batch_size:
            raise PayloadTooLarge(
                f"{n} {what} in one batch; the limit is {self.max_batch_size} "
                "(SMARTREC_MAX_BATCH_SIZE): split the batch"
            )

    def add_items(self, items: Sequence[ItemIn]) -> int:
        self._check_size(len(items), "items")
        return self.catalog.upsert_items([i.model_dump() for i in items])

    def add_users(self, users: Sequence[UserIn]) -> int:
        self._check_size(len(users), "users")
        return self.catalog.upsert_users([u.model_dump() for u in users])

    def to_records(self, events: Sequence[EventIn], now_ms: int | None = None) -> list[EventRecord]:
        """Validate event types against the configured weights; raise naming every bad row."""
        self._check_size(len(events), "events")
        errors = [
            FieldError(
                i,
                "type",
                f"unknown event type {e.type!r}; configured types: "
                + ", ".join(sorted(self.weights.weights)),
            )
            for i, e in enumerate(events)
            if not self.weights.known(e.type)
        ]
        errors += [
            FieldError(
                i,
                "value",
                f"a {e.type!r} event needs a value (its weight is scaled by it, e.g. the "
                "rating given)",
            )
            for i, e in enumerate(events)
            if e.value is None and e.type in self.weights.value_types
        ]
        now = clock_ms() if now_ms is None else now_ms
        latest = now + self.max_future_skew_ms
        errors += [
            FieldError(
                i,
                "timestamp",
                f"timestamp is {(e.timestamp - now) / 3.6e6:.1f} h ahead of the server clock "
                f"(at most {self.max_future_skew_ms / 3.6e6:.1f} h allowed)",
            )
            for i, e in enumerate(events)
            if e.timestamp is not None and e.timestamp > latest
        ]
        if errors:
            errors.sort(key=lambda err: err.index)
            raise BatchInvalid("events", errors)
        out: list[EventRecord] = []
        for e in events:
            ts = e.timestamp if e.timestamp is not None else now
            eid = e.event_id or event_id_for(e.user_id, e.item_id, e.type, ts)
            out.append(EventRecord(eid, e.user_id, e.item_id, e.type, e.value, ts))
        return out

    def add_events(self, events: Sequence[EventIn]) -> tuple[int, int]:
        """Returns (accepted, duplicates). Durable once this returns: in the database (one
        committed transaction) or confirmed by the bus; raises ``BusUnavailable`` otherwise."""
        return self.bus.publish(self.to_records(events))

    def import_events(self, events: Sequence[EventIn]) -> tuple[int, int]:
        """A bulk load of past events (the demo, ``smartrec import``): into the log directly, so
        that training right after sees them whatever the bus."""
        return self.events.add_events(self.to_records(events))


class BatchInvalid(ValidationFailed):
    """A batch with bad rows: the problem response lists each row's index and field."""

    def __init__(self, collection: str, errors: list[FieldError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{collection}[{first.index}].{first.field}: {first.message}{more}")
        self.collection = collection
        self.errors = errors
