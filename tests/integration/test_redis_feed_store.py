"""The feed store on a real Redis: key layout for Redis Cluster, expiry, and Redis going away
and coming back under it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smartrec.storage.cache import open_change_feed, open_feed_store, open_shared_cache
from smartrec.storage.cache.redis_cache import TIMEOUT_S as CACHE_TIMEOUT_S
from smartrec.storage.cache.redis_client import PAUSE_S
from smartrec.storage.cache.redis_feed import PUBLISH_TIMEOUT_S
from smartrec.storage.cache.redis_feeds import (
    INVALIDATE_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    RedisFeedStore,
)
from tests.redisproc import RedisServer

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.integration


def test_a_users_keys_share_one_cluster_slot_and_every_key_expires(tmp_path: Path) -> None:
    from redis.crc import key_slot

    server = RedisServer(tmp_path).start()
    store = open_feed_store(server.url, prefix="smartrec:m:", ttl_s=30)
    assert isinstance(store, RedisFeedStore)
    client = redis.Redis.from_url(server.url)
    try:
        users = ["u1", "a}b", "{x}", "}{", "%7B", "用户"]
        for user in users:
            _, generation = store.fetch(user)
            assert generation is not None and store.put(user, b"feed", generation)
        store.invalidate(["u1"])
        keys = sorted(client.keys("smartrec:m:*"))
        assert keys  # feeds and one generation
        for user in users:
            gen, feed = (k.encode() for k in store._keys(user))
            assert key_slot(gen) == key_slot(feed)
        assert len({key_slot(store._keys(u)[1].encode()) for u in users}) > 1  # spread
        for key in keys:
            ttl = client.pttl(key)
            assert ttl > 0, key  # nothing that lives for ever
            assert ttl <= (30_000 if key.endswith(b":feed") else 3_600_000)
    finally:
        client.close()
        store.close()
        server.stop()


def test_redis_away_costs_a_miss_never_an_error_and_invalidations_wait_for_it(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path).start()
    store = open_feed_store(server.url, prefix="p:", ttl_s=60)
    assert isinstance(store, RedisFeedStore)
    try:
        _, generation = store.fetch("u")
        assert generation is not None and store.put("u", b"old", generation)
        assert asyncio.run(store.fetch_async("u")) == (b"old", generation)  # the lane's read
        server.stop()
        started = time.monotonic()
        assert asyncio.run(store.fetch_async("u")) == (None, None)
        assert store.fetch("u") == (None, None)  # a miss, at once
        assert not store.put("u", b"x", "0")
        store.invalidate(["u"])  # an event stored meanwhile: kept to retry
        assert store.pending == 1
        assert time.monotonic() - started < 2.0

        server.start()  # same port, empty (no persistence)
        deadline = time.monotonic() + 10
        while store.pending:  # retried in the background: no further events needed
            assert time.monotonic() < deadline, "the waiting invalidation was never written"
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while (got := store.fetch("u"))[1] is None:  # reads come back after their pause
            assert time.monotonic() < deadline, "reads never came back"
            time.sleep(0.05)
        assert got == (None, "1")  # the waiting invalidation moved the generation
    finally:
        store.close()
        server.stop()


class BlackHole:
    """A port that accepts connections and never answers: a hung Redis (a failover in progress,
    a network that drops packets)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.server.accept()[0])

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def test_a_hung_redis_costs_one_timeout_per_pause_not_one_per_request() -> None:
    hole = BlackHole()
    feeds = open_feed_store(hole.url, "p:", 60)
    cache = open_shared_cache(hole.url, "p:")
    changes = open_change_feed(hole.url, "p:")
    assert isinstance(feeds, RedisFeedStore)
    try:

        def took(call: Callable[[], object]) -> float:
            started = time.monotonic()
            call()
            return time.monotonic() - started

        # Each gives up after its own timeout (no retries on top), then stops trying.
        assert took(lambda: feeds.fetch("u")) < 2 * REQUEST_TIMEOUT_S
        assert took(lambda: feeds.fetch("u")) < 0.02
        assert took(lambda: asyncio.run(feeds.fetch_async("u"))) < 0.02
        assert took(lambda: feeds.invalidate(["u"])) < 2 * INVALIDATE_TIMEOUT_S
        assert took(lambda: feeds.invalidate(["v"])) < 0.02 and feeds.pending == 2
        assert took(lambda: cache.get("k")) < 2 * CACHE_TIMEOUT_S
        assert took(lambda: changes.publish(["u"])) < 2 * PUBLISH_TIMEOUT_S
        # After the pause one caller probes; the others do not wait on it.
        time.sleep(PAUSE_S * 2.5)
        waits: list[float] = []
        threads = [
            threading.Thread(target=lambda: waits.append(took(lambda: feeds.fetch("u"))))
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(w > 0.05 for w in waits) == 1, waits
    finally:
        for closable in (feeds, cache, changes):
            closable.close()
        hole.close()


def test_nothing_connects_before_use_even_to_a_cluster_that_is_down() -> None:
    """A Redis (or Redis Cluster) that is down at start does not stop a process starting."""
    for url in ("redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1"):
        feeds = open_feed_store(url, "p:", 60)
        cache = open_shared_cache(url, "p:")
        changes = open_change_feed(url, "p:")
        assert feeds is not None and cache is not None
        assert feeds.fetch("u") == (None, None)
        assert cache.get("k") == (None, True)
        changes.publish(["u"])
        for closable in (feeds, cache, changes):
            closable.close()
