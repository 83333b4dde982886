"""Caches of the service: a typed, thread-safe TTL cache (``cachetools.TTLCache`` behind a
lock: cachetools' caches are not thread-safe, and the service's caches are read and written by
the request threads and the event loop at once), and rankings shared between processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np
from cachetools import TTLCache

from smartrec.storage.cache import SharedCache

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


def shared_or_compute(
    shared: SharedCache | None,
    key: str,
    fresh_s: float,
    compute: Callable[[], list[tuple[str, float]]],
) -> list[tuple[str, float]]:
    """A ranking of (item id, score) computed by one process of the deployment per ``fresh_s``
    and read by the others (``compute`` runs here when there is no shared cache, when this
    process is the one to refresh it, or when it is not there yet)."""
    if shared is None:
        return compute()
    value, refresh = shared.get(key)
    if value is not None and not refresh:
        decoded = decode_ranking(value)
        if decoded is not None:
            return decoded
    ranking = compute()
    if refresh or value is None:
        shared.put(key, encode_ranking(ranking), fresh_s)
    return ranking


def encode_ranking(ranking: list[tuple[str, float]]) -> bytes:
    """A ranking as bytes (no pickle): the count, the ids' byte lengths, the scores, the ids."""
    ids = [i.encode() for i, _ in ranking]
    head = np.asarray([len(ids)], dtype="<u4").tobytes()
    lengths = np.asarray([len(b) for b in ids], dtype="<u4").tobytes()
    scores = np.asarray([s for _, s in ranking], dtype="<f8").tobytes()
    return b"".join([head, lengths, scores, *ids])


def decode_ranking(data: bytes) -> list[tuple[str, float]] | None:
    """None when ``data`` is not an encoded ranking (another release's value)."""
    try:
        (n,) = np.frombuffer(data, dtype="<u4", count=1)
        n = int(n)
        if n == 0:
            return [] if len(data) == 4 else None
        lengths = np.frombuffer(data, dtype="<u4", count=n, offset=4)
        scores = np.frombuffer(data, dtype="<f8", count=n, offset=4 + 4 * n)
        start = 4 + 12 * n
        ends = start + np.cumsum(lengths, dtype=np.int64)
        if (n and int(ends[-1]) != len(data)) or (not n and start != len(data)):
            return None
        starts = np.concatenate([[start], ends[:-1]]).tolist()
        text = [data[a:b].decode() for a, b in zip(starts, ends.tolist(), strict=True)]
        return list(zip(text, scores.tolist(), strict=True))
    except (ValueError, UnicodeDecodeError):
        return None
