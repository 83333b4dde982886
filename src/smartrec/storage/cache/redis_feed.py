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
from collections.abc import Iterable

from smartrec.storage.cache.base import OnUsers
from smartrec.storage.cache.redis_client import Breaker, Lazy, connect, connect_subscriber

log = logging.getLogger(__name__)

#: Seconds a PUBLISH may take before it is given up (a request waits for it).
PUBLISH_TIMEOUT_S = 0.25
#: Between reconnection attempts of the listener.
RECONNECT_S = 0.5


class RedisChangeFeed:
    shared = True

    def __init__(self, url: str, prefix: str = "smartrec:") -> None:
        self.url = url
        self.channel = f"{prefix}events"
        self._client = Lazy(lambda: connect(url, PUBLISH_TIMEOUT_S))
        self._breaker = Breaker("change feed")
        # The listener's own: its reconnections must not hold back publishing.
        self._listening = Breaker("change feed listener")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connected = threading.Event()  # the listener is subscribed (tests wait on it)

    def publish(self, user_ids: Iterable[str]) -> None:
        users = sorted(set(user_ids))
        if not users or not self._breaker.allow():
            return
        try:
            self._client().publish(self.channel, "\n".join(users))
        except Exception as exc:  # redis.RedisError, OSError: never fail the caller
            self._breaker.failed("could not publish; the event-log poll covers it", exc)
            return
        self._breaker.ok()

    def listen(self, on_users: OnUsers) -> None:
        thread = threading.Thread(
            target=self._listen, args=(on_users,), name="redis-change-feed", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _listen(self, on_users: OnUsers) -> None:
        client = Lazy(lambda: connect_subscriber(self.url, PUBLISH_TIMEOUT_S))  # reads block
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = client().pubsub(ignore_subscribe_messages=True)
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
                self._listening.failed("listener lost its connection; reconnecting", exc)
                self._stop.wait(RECONNECT_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
        with contextlib.suppress(Exception):
            client.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._client.close()
