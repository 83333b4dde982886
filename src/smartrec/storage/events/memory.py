"""An in-process bus: the twin the worker's unit tests and the bus contract tests run on.

One :class:`MemoryLog` is the broker (partitions by key, committed offsets per group, a
dead-letter list); :class:`MemoryBus` and :class:`MemorySource` are its producer and consumer.
``log.down = True`` makes it refuse, as a broker that is gone does.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from smartrec.domain.records import EventRecord
from smartrec.storage.events import codec
from smartrec.storage.events.base import BusUnavailable, Delivery, Message


@dataclass
class MemoryLog:
    partitions: int = 4
    down: bool = False
    topics: list[list[tuple[bytes | None, bytes | None]]] = field(default_factory=list)
    committed: dict[str, dict[int, int]] = field(default_factory=dict)
    dead: list[tuple[Message, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.topics:
            self.topics = [[] for _ in range(self.partitions)]

    def append(self, key: bytes | None, value: bytes | None) -> None:
        """Raw bytes (tests put malformed messages on the log this way)."""
        part = zlib.crc32(key or b"") % self.partitions
        with self.lock:
            if self.down:
                raise BusUnavailable("the in-memory bus is down", retry_after_s=1)
            self.topics[part].append((key, value))

    def __len__(self) -> int:
        return sum(len(p) for p in self.topics)


class MemoryBus:
    writes_log = False

    def __init__(self, log: MemoryLog) -> None:
        self.log = log

    def publish(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        unique = {e.event_id: e for e in events}
        with self.log.lock:
            if self.log.down:
                raise BusUnavailable("the in-memory bus is down", retry_after_s=1)
        for e in unique.values():
            self.log.append(codec.key(e), codec.encode(e))
        return len(unique), len(events) - len(unique)

    def close(self) -> None:
        pass


class MemorySource:
    """A consumer group of one: reads every partition from the group's committed offsets."""

    def __init__(self, log: MemoryLog, group: str = "smartrec-workers") -> None:
        self.log = log
        self.group = group
        with log.lock:
            offsets = log.committed.setdefault(group, {})
            self._next = {p: offsets.get(p, 0) for p in range(log.partitions)}

    def poll(self, max_messages: int, timeout_s: float) -> Delivery:
        out: list[Message] = []
        with self.log.lock:
            if self.log.down:
                return Delivery()
            for p, messages in enumerate(self.log.topics):
                start = self._next[p]
                for off in range(start, min(len(messages), start + max_messages - len(out))):
                    key, value = messages[off]
                    out.append(Message(key, value, (p, off)))
                    self._next[p] = off + 1
        return Delivery(out)

    def commit(self, delivery: Delivery) -> None:
        with self.log.lock:
            offsets = self.log.committed.setdefault(self.group, {})
            for m in delivery.messages:
                p, off = m.position
                offsets[p] = max(offsets.get(p, 0), off + 1)

    def rewind(self) -> None:
        """Back to the committed offsets, as a restarted worker would be."""
        with self.log.lock:
            offsets = self.log.committed.get(self.group, {})
            self._next = {p: offsets.get(p, 0) for p in range(self.log.partitions)}

    def dead_letter(self, message: Message, reason: str) -> None:
        with self.log.lock:
            if self.log.down:
                raise BusUnavailable("the in-memory bus is down", retry_after_s=1)
            self.log.dead.append((message, reason))

    def lag(self) -> int | None:
        with self.log.lock:
            return sum(len(m) - self._next[p] for p, m in enumerate(self.log.topics))

    def close(self) -> None:
        pass
