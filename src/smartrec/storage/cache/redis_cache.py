"""The shared cache on Redis: costly answers computed by one process, read by every other.

Keys: ``<prefix>cache:<key>`` (the value: 8 bytes of "fresh until", epoch ms, then the bytes)
and ``<prefix>cache:<key>:refresh`` (a lease: the process that set it is computing the value
again). Values expire at ``STALE_FACTOR`` times their freshness; leases after
``REFRESH_LEASE_S``. Redis that cannot be reached: every caller computes for itself.
"""

from __future__ import annotations

import struct
import time

from smartrec.storage.cache.base import REFRESH_LEASE_S, STALE_FACTOR
from smartrec.storage.cache.redis_client import Breaker, Lazy, connect

#: A value read may take this long (values are up to a few MB: the popular items of a window).
TIMEOUT_S = 0.5
_STAMP = struct.Struct("<q")


class RedisSharedCache:
    def __init__(self, url: str, prefix: str = "smartrec:") -> None:
        self.prefix = f"{prefix}cache:"
        self._client = Lazy(lambda: connect(url, TIMEOUT_S))
        self._breaker = Breaker("shared cache")

    def get(self, key: str) -> tuple[bytes | None, bool]:
        if not self._breaker.allow():
            return None, True
        name = self.prefix + key
        try:
            client = self._client()
            raw = client.get(name)
            value = None if raw is None or len(raw) < _STAMP.size else raw[_STAMP.size :]
            if value is not None and _STAMP.unpack_from(raw)[0] > time.time() * 1000:
                self._breaker.ok()
                return value, False
            lease = int(REFRESH_LEASE_S * 1000)
            mine = bool(client.set(f"{name}:refresh", b"1", nx=True, px=lease))
        except Exception as exc:
            self._breaker.failed("cache read failed; computing locally", exc)
            return None, True
        self._breaker.ok()
        return value, mine

    def put(self, key: str, value: bytes, fresh_s: float) -> None:
        if not self._breaker.allow():
            return
        name = self.prefix + key
        fresh_until = int((time.time() + fresh_s) * 1000)
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.set(name, _STAMP.pack(fresh_until) + value, px=int(fresh_s * STALE_FACTOR * 1000))
            pipe.delete(f"{name}:refresh")
            pipe.execute()
        except Exception as exc:
            self._breaker.failed("cache write failed", exc)
            return
        self._breaker.ok()

    def close(self) -> None:
        self._client.close()
