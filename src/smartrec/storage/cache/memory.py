"""The in-process change feed (the default): listeners of this process only."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from smartrec.storage.cache.base import REFRESH_LEASE_S, STALE_FACTOR, OnUsers

log = logging.getLogger(__name__)


class LocalChangeFeed:
    shared = False

    def __init__(self) -> None:
        self._listeners: list[OnUsers] = []

    def publish(self, user_ids: Iterable[str]) -> None:
        users = sorted(set(user_ids))
        if not users:
            return
        for listener in list(self._listeners):
            try:
                listener(users)
            except Exception:
                log.exception("change feed listener failed")

    def listen(self, on_users: OnUsers) -> None:
        self._listeners.append(on_users)

    def close(self) -> None:
        self._listeners.clear()


class MemoryFeedStore:
    """The :class:`FeedStore` contract in memory: the twin the contract tests hold Redis to,
    and a store that several services of one process (tests) can share."""

    def __init__(self, ttl_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._feeds: dict[str, tuple[float, bytes]] = {}
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    def fetch(self, user_id: str) -> tuple[bytes | None, str | None]:
        with self._lock:
            generation = str(self._generations.get(user_id, 0))
            entry = self._feeds.get(user_id)
            if entry is not None and entry[0] <= self._clock():
                del self._feeds[user_id]
                entry = None
            return (None if entry is None else entry[1]), generation

    async def fetch_async(self, user_id: str) -> tuple[bytes | None, str | None]:
        return self.fetch(user_id)

    def put(self, user_id: str, data: bytes, generation: str) -> bool:
        with self._lock:
            if str(self._generations.get(user_id, 0)) != generation:
                return False
            self._feeds[user_id] = (self._clock() + self.ttl_s, bytes(data))
            return True

    def invalidate(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            for user_id in set(user_ids):
                self._generations[user_id] = self._generations.get(user_id, 0) + 1
                self._feeds.pop(user_id, None)

    def close(self) -> None:
        with self._lock:
            self._feeds.clear()


class MemorySharedCache:
    """The :class:`SharedCache` contract in memory (the contract tests' twin of Redis)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float, bytes]] = {}  # fresh until, kept until
        self._refreshing: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bytes | None, bool]:
        with self._lock:
            now = self._clock()
            entry = self._values.get(key)
            if entry is not None and entry[1] <= now:
                del self._values[key]
                entry = None
            if entry is not None and now < entry[0]:
                return entry[2], False
            if self._refreshing.get(key, 0.0) > now:
                return (None if entry is None else entry[2]), False
            self._refreshing[key] = now + REFRESH_LEASE_S
            return (None if entry is None else entry[2]), True

    def put(self, key: str, value: bytes, fresh_s: float) -> None:
        with self._lock:
            now = self._clock()
            self._values[key] = (now + fresh_s, now + fresh_s * STALE_FACTOR, bytes(value))
            self._refreshing.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._values.clear()
