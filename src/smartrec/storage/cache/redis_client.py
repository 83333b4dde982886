"""What the Redis adapters share: a client with short timeouts, and a breaker that stops a
Redis that is down from adding its timeouts to every request.

Redis holds shared state that is never the truth (the event log is): an adapter that cannot
reach it skips the call, logs at most once a minute, and tries again after a pause, so Redis
going away never fails a request and coming back needs no restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("smartrec.redis")

#: After a failed call, the adapter leaves Redis alone this long (seconds).
PAUSE_S = 1.0
#: Warnings about one adapter are logged this often at most (seconds).
WARN_EVERY_S = 60.0


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster(url: str) -> bool:
    """``redis+cluster://`` / ``rediss+cluster://``: a Redis Cluster (any node as the seed)."""
    return url.partition("://")[0] in CLUSTER_SCHEMES


def plain_url(url: str) -> str:
    """The URL redis-py reads (a cluster URL's ``+cluster`` taken off)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.removesuffix('+cluster')}{sep}{rest}"


def connect(url: str, timeout_s: float) -> Any:
    """A pooled client whose every call gives up after ``timeout_s``; a pooled connection that
    a Redis restart broke is replaced at once (one retry), so the first call after Redis comes
    back succeeds. A cluster URL gives a cluster client (it follows the slots' owners)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 1),
    }
    if is_cluster(url):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    return redis.Redis.from_url(
        url,
        health_check_interval=30,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **options,
    )


def connect_async(url: str, timeout_s: float) -> Any:
    """:func:`connect` for an event loop (``redis.asyncio``)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if is_cluster(url):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, health_check_interval=30, **options)


class Breaker:
    """Open for :data:`PAUSE_S` after a failure: callers skip Redis while it is open."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._paused_until = 0.0
        self._last_warning = 0.0
        self.failures = 0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._paused_until

    def failed(self, action: str, exc: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        self._paused_until = now + PAUSE_S
        if now - self._last_warning > WARN_EVERY_S:
            self._last_warning = now
            log.warning("Redis %s: %s (%s: %s)", self.what, action, type(exc).__name__, exc)


def connect_subscriber(url: str, connect_timeout_s: float) -> Any:
    """A client for a subscriber: it blocks on reads, so no read timeout; keepalive notices a
    half-open connection after a failover. On a cluster, classic pub/sub reaches every node:
    the subscriber listens on one."""
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout_s,
        "socket_keepalive": True,
    }
    if is_cluster(url):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    import redis

    return redis.Redis.from_url(url, health_check_interval=10, **options)
