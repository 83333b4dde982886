"""Users' feeds in Redis (``SMARTREC_CACHE_URL=redis://...``): built once, served by every
replica, so a replica that starts serves warm at once.

Keys, one pair per user, hash-tagged by the user id so that both land in one Redis Cluster
slot (the put's script touches both)::

    <prefix>{u:<user id>}:feed   the encoded feed, expiring after SMARTREC_FEED_MAX_AGE_S
    <prefix>{u:<user id>}:gen    the user's generation, moved by every stored event

(``%``, ``{`` and ``}`` in a user id are percent-escaped: :func:`hash_tag`.)

A feed is about 6 KB at the default ``feed_items`` of 100: 100,000 users take about 600 MB
(``docs/operations/events.md`` sizes ``maxmemory``). Every key expires, so
``maxmemory-policy volatile-lru`` (or ``allkeys-lru``) keeps Redis within its bound; a feed
evicted early is only rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from smartrec.errors import ConfigError
from smartrec.storage.cache.redis_client import Breaker, connect, connect_async

log = logging.getLogger(__name__)

#: Seconds a feed read or write may take before the request goes on without Redis: a feed
#: served from Redis costs a fraction of a millisecond on one network.
REQUEST_TIMEOUT_S = 0.1
#: Invalidations are writes of events: they wait a little longer before being left to retry.
INVALIDATE_TIMEOUT_S = 0.5
#: Users whose invalidation failed are retried with the next call; past this many the rest
#: only expire (their feeds may then be served until ``feed_max_age_s``; logged).
MAX_PENDING = 100_000

# KEYS[1]: the generation, KEYS[2]: the feed; ARGV: the generation read, the feed, its ttl (ms).
PUT_SCRIPT = """
local current = redis.call('GET', KEYS[1]) or '0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


def hash_tag(user_id: str) -> str:
    """The user id with ``%``, ``{`` and ``}`` percent-escaped: a brace in an id would end (or
    empty) the hash tag, and a user's two keys could land in different cluster slots."""
    return user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class RedisFeedStore:
    def __init__(self, url: str, prefix: str = "smartrec:", ttl_s: float = 900.0) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"a Redis key prefix may not hold braces (hash tags): {prefix!r}")
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        # A generation outlives any build in flight: one expired under a build could let a
        # stale feed be stored.
        self.generation_ttl_ms = max(self.ttl_ms, 3_600_000)
        self.url = url
        self._client: Any = connect(url, REQUEST_TIMEOUT_S)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._writer: Any = connect(url, INVALIDATE_TIMEOUT_S)
        self._put = self._client.register_script(PUT_SCRIPT)
        self._breaker = Breaker("feed store")
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.dropped = 0  # invalidations given up (past MAX_PENDING)

    def _keys(self, user_id: str) -> tuple[str, str]:
        base = f"{self.prefix}{{u:{hash_tag(user_id)}}}"
        return f"{base}:gen", f"{base}:feed"

    def fetch(self, user_id: str) -> tuple[bytes | None, str | None]:
        if self._breaker.open:
            return None, None
        try:
            generation, data = self._client.mget(self._keys(user_id))
        except Exception as exc:
            self._breaker.failed("feed read failed; serving without the shared feeds", exc)
            return None, None
        return data, (generation.decode() if generation is not None else "0")

    async def fetch_async(self, user_id: str) -> tuple[bytes | None, str | None]:
        if self._breaker.open:
            return None, None
        try:
            generation, data = await self._async_client().mget(self._keys(user_id))
        except Exception as exc:
            self._breaker.failed("feed read failed; serving without the shared feeds", exc)
            return None, None
        return data, (generation.decode() if generation is not None else "0")

    def _async_client(self) -> Any:
        """One asyncio client per event loop (a client's connections belong to the loop that
        opened them; a server process has one)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = connect_async(self.url, REQUEST_TIMEOUT_S)
            self._async[loop] = client
        return client

    def put(self, user_id: str, data: bytes, generation: str) -> bool:
        if self._breaker.open:
            return False
        try:
            return bool(self._put(keys=self._keys(user_id), args=[generation, data, self.ttl_ms]))
        except Exception as exc:
            self._breaker.failed("feed write failed", exc)
            return False

    def invalidate(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            users = self._pending | set(user_ids)
            self._pending = set()
        if not users:
            return
        if self._breaker.open:  # Redis failed a moment ago: do not make events wait on it
            self._keep(users)
            return
        try:
            pipe = self._writer.pipeline(transaction=False)
            for user_id in users:
                gen, feed = self._keys(user_id)
                pipe.incr(gen)
                pipe.pexpire(gen, self.generation_ttl_ms)
                pipe.unlink(feed)
            pipe.execute()
        except Exception as exc:
            self._breaker.failed("could not invalidate feeds; retrying with the next events", exc)
            self._keep(users)

    def _keep(self, users: set[str]) -> None:
        with self._lock:
            keep = list(users)[: max(0, MAX_PENDING - len(self._pending))]
            self._pending.update(keep)
            lost = len(users) - len(keep)
        if lost:
            self.dropped += lost
            log.error(
                "feed store: %d invalidation(s) given up while Redis is away; those users' "
                "feeds expire within SMARTREC_FEED_MAX_AGE_S",
                lost,
            )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._client.close()
        self._writer.close()
