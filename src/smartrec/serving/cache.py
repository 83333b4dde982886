"""A typed, thread-safe TTL cache: ``cachetools.TTLCache`` behind a lock.

cachetools' caches are not thread-safe, and the service's caches are read and written by the
request threads and the event loop at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


class TtlCache(Generic[V]):
    """At most ``max_entries`` entries (least recently used dropped first), each for at most
    ``ttl_s`` seconds: bounded memory whatever the keys."""

    def __init__(
        self, max_entries: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._data: TTLCache[str, V] = TTLCache(maxsize=max_entries, ttl=ttl_s, timer=timer)
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            self._data.expire()
            return len(self._data)
