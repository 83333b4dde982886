"""Users' feeds in Redis (``SMARTREC_CACHE_URL=redis://...``): built once, served by every
replica, so a replica that starts serves warm at once.

Keys, one pair per user, hash-tagged by the user id so that both land in one Redis Cluster
slot (the put's script touches both)::

    <prefix>{u:<user id>}:feed   the encoded feed, expiring after SMARTREC_FEED_MAX_AGE_S
    <prefix>{u:<user id>}:gen    the user's generation, moved by every stored event

(``%``, ``{`` and ``}`` in a user id are percent-escaped: :func:`hash_tag`.)

A feed takes 6 to 11 KB at the default ``feed_items`` of 100: 100,000 users take about 1 GB
(``docs/operations/events.md`` sizes ``maxmemory``). Every key expires, so
``maxmemory-policy volatile-lru`` (or ``allkeys-lru``) keeps Redis within its bound; a feed
evicted early is only rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

from smartrec.errors import ConfigError
from smartrec.storage.cache.redis_client import PAUSE_S, Breaker, Lazy, connect, connect_async

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
        self._client = Lazy(lambda: connect(url, REQUEST_TIMEOUT_S))
        self._writer = Lazy(lambda: connect(url, INVALIDATE_TIMEOUT_S))
        self._put = Lazy(lambda: self._client().register_script(PUT_SCRIPT))
        self._async: tuple[asyncio.AbstractEventLoop, Any] | None = None
        # Reads and writes fail apart: a read that timed out must not hold back invalidations.
        self._reads = Breaker("feed store (reads)")
        self._writes = Breaker("feed store (invalidations)")
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self.dropped = 0  # invalidations given up (past MAX_PENDING)

    def _keys(self, user_id: str) -> tuple[str, str]:
        base = f"{self.prefix}{{u:{hash_tag(user_id)}}}"
        return f"{base}:gen", f"{base}:feed"

    def fetch(self, user_id: str) -> tuple[bytes | None, str | None]:
        if not self._reads.allow():
            return None, None
        try:
            generation, data = self._client().mget(self._keys(user_id))
        except Exception as exc:
            self._reads.failed("feed read failed; serving without the shared feeds", exc)
            return None, None
        self._reads.ok()
        return data, (generation.decode() if generation is not None else "0")

    async def fetch_async(self, user_id: str) -> tuple[bytes | None, str | None]:
        if not self._reads.allow():
            return None, None
        try:
            generation, data = await self._async_client().mget(self._keys(user_id))
        except Exception as exc:
            self._reads.failed("feed read failed; serving without the shared feeds", exc)
            return None, None
        self._reads.ok()
        return data, (generation.decode() if generation is not None else "0")

    def _async_client(self) -> Any:
        """The asyncio client of the running loop (its connections belong to the loop that
        opened them). A server process has one loop; a new loop (tests) replaces the client."""
        loop = asyncio.get_running_loop()
        held = self._async
        if held is None or held[0] is not loop:
            held = (loop, connect_async(self.url, REQUEST_TIMEOUT_S))
            self._async = held
        return held[1]

    def put(self, user_id: str, data: bytes, generation: str) -> bool:
        if not self._reads.allow():
            return False
        try:
            stored = bool(
                self._put()(keys=self._keys(user_id), args=[generation, data, self.ttl_ms])
            )
        except Exception as exc:
            self._reads.failed("feed write failed", exc)
            return False
        self._reads.ok()
        return stored

    def invalidate(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            users = self._pending | set(user_ids)
            self._pending = set()
        if not users:
            return
        if not self._writes.allow():  # Redis failed a moment ago: do not make events wait
            self._keep(users)
            return
        self._write(users)

    def _write(self, users: set[str]) -> None:
        """One pipeline of invalidations (the breaker allowed it)."""
        try:
            pipe = self._writer().pipeline(transaction=False)
            for user_id in users:
                gen, feed = self._keys(user_id)
                pipe.incr(gen)
                pipe.pexpire(gen, self.generation_ttl_ms)
                pipe.unlink(feed)
            pipe.execute()
        except Exception as exc:
            self._writes.failed("could not invalidate feeds; retrying in the background", exc)
            self._keep(users)
            return
        self._writes.ok()

    def _keep(self, users: set[str]) -> None:
        """Keep what could not be invalidated, and retry it in the background (not only with
        the next events: a writer may have none for a while)."""
        with self._lock:
            keep = list(users)[: max(0, MAX_PENDING - len(self._pending))]
            self._pending.update(keep)
            lost = len(users) - len(keep)
            if self._flusher is None and not self._closed.is_set():
                self._flusher = threading.Thread(
                    target=self._flush, name="redis-feed-invalidations", daemon=True
                )
                self._flusher.start()
        if lost:
            self.dropped += lost
            log.error(
                "feed store: %d invalidation(s) given up while Redis is away; those users' "
                "feeds expire within SMARTREC_FEED_MAX_AGE_S",
                lost,
            )

    def _flush(self) -> None:
        while not self._closed.wait(PAUSE_S):
            if self._writes.allow():
                with self._lock:
                    users, self._pending = self._pending, set()
                if users:
                    self._write(users)
                else:
                    self._writes.ok()  # nothing to probe with: let the next caller try
            with self._lock:
                if not self._pending:
                    self._flusher = None
                    return

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._closed.set()
        self._client.close()
        self._writer.close()
