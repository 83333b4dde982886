"""Pick the shared-state adapter by ``SMARTREC_CACHE_URL``."""

from __future__ import annotations

from smartrec.errors import ConfigError
from smartrec.storage.cache.base import ChangeFeed


def open_change_feed(url: str, prefix: str = "smartrec:") -> ChangeFeed:
    """``memory://`` (default): this process only. ``redis://`` / ``rediss://``: every process
    on that Redis. Nothing connects here."""
    scheme, sep, _ = url.partition("://")
    if url == "memory://":
        from smartrec.storage.cache.memory import LocalChangeFeed

        return LocalChangeFeed()
    if sep and scheme in ("redis", "rediss"):
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(
                "SMARTREC_CACHE_URL=redis://... needs the Redis client: "
                "pip install 'smartrec[redis]'"
            ) from None
        from smartrec.storage.cache.redis_feed import RedisChangeFeed

        return RedisChangeFeed(url, prefix)
    raise ConfigError(
        f"unsupported cache URL {url.split('@')[-1]!r}: use memory:// (the default: this "
        "process only) or redis://host:6379/0 (rediss:// for TLS)"
    )
