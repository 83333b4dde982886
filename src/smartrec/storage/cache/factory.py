"""Pick the shared-state adapter by ``SMARTREC_CACHE_URL``."""

from __future__ import annotations

from smartrec.errors import ConfigError
from smartrec.storage.cache.base import ChangeFeed, FeedStore, SharedCache


def open_change_feed(url: str, prefix: str = "smartrec:") -> ChangeFeed:
    """``memory://`` (default): this process only. ``redis://`` / ``rediss://``: every process
    on that Redis. Nothing connects here."""
    if _redis(url):
        from smartrec.storage.cache.redis_feed import RedisChangeFeed

        return RedisChangeFeed(url, prefix)
    from smartrec.storage.cache.memory import LocalChangeFeed

    return LocalChangeFeed()


def open_feed_store(url: str, prefix: str = "smartrec:", ttl_s: float = 900.0) -> FeedStore | None:
    """The users' feeds every process shares: None for ``memory://`` (each process keeps its
    own, in its feed cache), Redis for ``redis://`` / ``rediss://``. Nothing connects here."""
    if _redis(url):
        from smartrec.storage.cache.redis_feeds import RedisFeedStore

        return RedisFeedStore(url, prefix, ttl_s)
    return None


def open_shared_cache(url: str, prefix: str = "smartrec:") -> SharedCache | None:
    """Costly answers shared between processes: None for ``memory://`` (each process caches
    its own), Redis for ``redis://`` / ``rediss://``. Nothing connects here."""
    if _redis(url):
        from smartrec.storage.cache.redis_cache import RedisSharedCache

        return RedisSharedCache(url, prefix)
    return None


def _redis(url: str) -> bool:
    """True for a Redis URL (its client installed), False for ``memory://``; else a clear error."""
    scheme, sep, _ = url.partition("://")
    if url == "memory://":
        return False
    if sep and scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(
                "SMARTREC_CACHE_URL=redis://... needs the Redis client: "
                "pip install 'smartrec[redis]'"
            ) from None
        return True
    raise ConfigError(
        f"unsupported cache URL {url.split('@')[-1]!r}: use memory:// (the default: this "
        "process only), redis://host:6379/0 (rediss:// for TLS) or redis+cluster://node:6379 "
        "(rediss+cluster:// for TLS) for a Redis Cluster"
    )
