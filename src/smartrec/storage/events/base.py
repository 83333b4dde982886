"""The event bus ports: what ``POST /v1/events`` hands acknowledged events to, and what a
worker reads them back from.

Two halves, because they live in different processes: the API holds an :class:`EventBus`
(publish and wait until the bus holds the events durably), ``smartrec worker`` holds an
:class:`EventSource` (read a batch, write it where it belongs, then commit: at least once, with
idempotent writes, so every event counts once). Messages travel as :mod:`codec` bytes so that a
malformed one is found by the worker, which dead-letters it with the reason and goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from smartrec.domain.records import EventRecord
from smartrec.errors import SmartrecError


class BusUnavailable(SmartrecError):
    """The bus did not confirm the events in time: nothing is acknowledged (retry the batch)."""

    status = 503
    title = "Event bus unavailable"

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the bus holds it. ``position`` is the adapter's own (partition, offset)."""

    key: bytes | None
    value: bytes | None
    position: tuple[int, int]


@dataclass
class Delivery:
    """A batch read from the source; :meth:`EventSource.commit` it once it is durably handled."""

    messages: list[Message] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)


class EventBus(Protocol):
    """The producer side, held by every API process."""

    #: True when :meth:`publish` wrote the events to the event log itself (the database bus):
    #: the API may then tell its own feeds at once. False: a worker writes them later.
    writes_log: bool

    def publish(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """Hand the events over; return (accepted, duplicates) once the bus holds them durably.
        Raise :class:`BusUnavailable` when it cannot confirm them within its timeout."""
        ...

    def close(self) -> None: ...


class EventSource(Protocol):
    """The consumer side, held by a worker (one member of a consumer group)."""

    def poll(self, max_messages: int, timeout_s: float) -> Delivery:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def commit(self, delivery: Delivery) -> None:
        """Mark the batch done: after a restart, reading resumes after it."""
        ...

    def dead_letter(self, message: Message, reason: str) -> None:
        """Keep a message the worker cannot use, with why, where an operator can read it;
        durable before this returns (the batch is committed after it)."""
        ...

    def lag(self) -> int | None:
        """Messages not yet read by this member (None when it cannot tell)."""
        ...

    def close(self) -> None: ...
