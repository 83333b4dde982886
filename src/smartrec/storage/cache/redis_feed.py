"""The change feed on Redis pub/sub (``SMARTREC_CACHE_URL=redis://...``, ``rediss://`` for TLS):
ElastiCache, Memorystore, Azure Cache for Redis, or any Redis.

One channel (``<prefix>events``) carries newline-separated user ids. Publishing is one
``PUBLISH`` with a short timeout; a Redis that is down is logged (once a minute at most) and
skipped, and the listener thread reconnects on its own, so Redis going away never fails a
request and coming back needs no restart. While it is away, serving processes fall back to
their poll of the event log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from smartrec.storage.cache.base import OnUsers

log = logging.getLogger(__name__)

#: Seconds a PUBLISH may take before it is given up (a request waits for it).
PUBLISH_TIMEOUT_S = 0.25
#: Between reconnection attempts of the listener.
RECONNECT_S = 0.5
#: After a failed PUBLISH, publishing pauses this long: a Redis that drops packets would
#: otherwise add its timeouts to every write of events.
PAUSE_S = 1.0


class RedisChangeFeed:
    shared = True

    def __init__(self, url: str, prefix: str = "smartrec:") -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.channel = f"{prefix}events"
        self._client: Any = redis.Redis.from_url(
            url,
            socket_timeout=PUBLISH_TIMEOUT_S,
            socket_connect_timeout=PUBLISH_TIMEOUT_S,
            health_check_interval=30,
            # A pooled connection that a Redis restart broke is replaced at once, so the first
            # notice after Redis comes back is not lost.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_warning = 0.0
        self._paused_until = 0.0
        self.connected = threading.Event()  # the listener is subscribed (tests wait on it)

    def _warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("Redis change feed: %s (%s); the event-log poll covers it", what, exc)

    def publish(self, user_ids: Iterable[str]) -> None:
        users = sorted(set(user_ids))
        if not users or time.monotonic() < self._paused_until:
            return
        try:
            self._client.publish(self.channel, "\n".join(users))
        except Exception as exc:  # redis.RedisError, OSError: never fail the caller
            self._paused_until = time.monotonic() + PAUSE_S
            self._warn("could not publish", exc)

    def listen(self, on_users: OnUsers) -> None:
        thread = threading.Thread(
            target=self._listen, args=(on_users,), name="redis-change-feed", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _listen(self, on_users: OnUsers) -> None:
        import redis

        # Its own client: a subscriber blocks on reads, with no read timeout.
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=PUBLISH_TIMEOUT_S,
            socket_keepalive=True,  # a half-open connection after a failover is noticed
            health_check_interval=10,
        )
        while not self._stop.is_set():
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.connected.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message["data"]
                    users = (data.decode() if isinstance(data, bytes) else str(data)).split("\n")
                    try:
                        on_users(users)
                    except Exception:
                        log.exception("change feed listener failed")
            except Exception as exc:
                self.connected.clear()
                self._warn("listener lost its connection", exc)
                self._stop.wait(RECONNECT_S)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
        client.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._client.close()
