"""What the Redis adapters share: clients with short timeouts, made on first use, and a breaker
that stops a Redis that is down or hung from adding its timeouts to every request.

Redis holds shared state that is never the truth (the event log is): an adapter that cannot
reach it skips the call, logs at most once a minute, and tries again after a pause (one caller
probes; the others keep skipping until the probe answers), so Redis going away never fails a
request and coming back needs no restart. Nothing connects when an adapter is made: a Redis
(or Redis Cluster) that is down at start does not stop a process from starting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("smartrec.redis")

#: After a failed call, the adapter leaves Redis alone this long (seconds), doubled after each
#: failed probe up to :data:`MAX_PAUSE_S`.
PAUSE_S = 1.0
MAX_PAUSE_S = 8.0
#: A probe that has not reported after this long lets another caller try (seconds).
PROBE_TIMEOUT_S = 5.0
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


def _options(timeout_s: float | None, connect_timeout_s: float) -> dict[str, Any]:
    """No retries: a hung Redis would cost each caller a multiple of ``timeout_s`` (the breaker
    decides when to try again)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }


def connect(url: str, timeout_s: float) -> Any:
    """A pooled client whose every call gives up after ``timeout_s``. A cluster URL gives a
    cluster client (it follows the slots' owners; it reads the slot map on its first call)."""
    options = _options(timeout_s, timeout_s)
    if is_cluster(url):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    import redis

    return redis.Redis.from_url(url, health_check_interval=30, **options)


def connect_async(url: str, timeout_s: float) -> Any:
    """:func:`connect` for an event loop (``redis.asyncio``)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options = {**_options(timeout_s, timeout_s), "retry": Retry(NoBackoff(), 0)}
    if is_cluster(url):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, health_check_interval=30, **options)


def connect_subscriber(url: str, connect_timeout_s: float) -> Any:
    """A client for a subscriber: it blocks on reads, so no read timeout; keepalive notices a
    half-open connection after a failover. On a cluster, classic pub/sub reaches every node:
    the subscriber listens on one."""
    options = {**_options(None, connect_timeout_s), "socket_keepalive": True}
    if is_cluster(url):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain_url(url), **options)
    import redis

    return redis.Redis.from_url(url, health_check_interval=10, **options)


class Lazy:
    """A client made on first use (under a lock), so that making an adapter never connects."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
                value = self._value
        return value

    def close(self) -> None:
        value, self._value = self._value, None
        if value is not None:
            value.close()


class Breaker:
    """Closed: every call goes to Redis. After a failure, open for a pause; then one caller
    probes (the others still skip) and the probe's outcome closes it or opens it again for a
    longer pause."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0  # consecutive
        self._paused_until = 0.0
        self._probe_since: float | None = None
        self._last_warning = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May this caller use Redis now?"""
        if not self.failures:
            return True
        now = time.monotonic()
        with self._lock:
            if not self.failures:
                return True
            if now < self._paused_until:
                return False
            if self._probe_since is not None and now - self._probe_since < PROBE_TIMEOUT_S:
                return False
            self._probe_since = now
            return True

    def ok(self) -> None:
        if self.failures:
            with self._lock:
                self.failures = 0
                self._probe_since = None

    def failed(self, action: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self._paused_until = now + min(PAUSE_S * 2 ** (self.failures - 1), MAX_PAUSE_S)
            self._probe_since = None
            warn = now - self._last_warning > WARN_EVERY_S
            if warn:
                self._last_warning = now
        if warn:
            log.warning("Redis %s: %s (%s: %s)", self.what, action, type(exc).__name__, exc)
