"""The shared cache on Redis: costly answers computed by one process, read by every other.

Keys: ``<prefix>cache:<key>`` (the value: 8 bytes of "fresh until", epoch ms, then the bytes)
and ``<prefix>cache:<key>:refresh`` (a lease: the process that set it is computing the value
again). Values expire at ``STALE_FACTOR`` times their freshness; leases after
``REFRESH_LEASE_S``. Redis that cannot be reached: every caller computes for itself.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from smartrec.storage.cache.base import REFRESH_LEASE_S, STALE_FACTOR
from smartrec.storage.cache.redis_client import Breaker, connect

#: A value read may take this long (values are up to a few MB: the popular items of a window).
TIMEOUT_S = 1.0
_STAMP = struct.Struct("<q")


class RedisSharedCache:
    def __init__(self, url: str, prefix: str = "smartrec:") -> None:
        self.prefix = f"{prefix}cache:"
        self._client: Any = connect(url, TIMEOUT_S)
        self._breaker = Breaker("shared cache")

    def get(self, key: str) -> tuple[bytes | None, bool]:
        if self._breaker.open:
            return None, True
        name = self.prefix + key
        try:
            raw = self._client.get(name)
            value = None if raw is None or len(raw) < _STAMP.size else raw[_STAMP.size :]
            if value is not None and _STAMP.unpack_from(raw)[0] > time.time() * 1000:
                return value, False
            lease = int(REFRESH_LEASE_S * 1000)
            mine = bool(self._client.set(f"{name}:refresh", b"1", nx=True, px=lease))
            return value, mine
        except Exception as exc:
            self._breaker.failed("cache read failed; computing locally", exc)
            return None, True

    def put(self, key: str, value: bytes, fresh_s: float) -> None:
        if self._breaker.open:
            return
        name = self.prefix + key
        fresh_until = int((time.time() + fresh_s) * 1000)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(name, _STAMP.pack(fresh_until) + value, px=int(fresh_s * STALE_FACTOR * 1000))
            pipe.delete(f"{name}:refresh")
            pipe.execute()
        except Exception as exc:
            self._breaker.failed("cache write failed", exc)

    def close(self) -> None:
        self._client.close()
