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


def connect(url: str, timeout_s: float) -> Any:
    """A pooled client whose every call gives up after ``timeout_s``; a pooled connection that
    a Redis restart broke is replaced at once (one retry), so the first call after Redis comes
    back succeeds."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


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
