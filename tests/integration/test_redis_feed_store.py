"""The feed store on a real Redis: key layout for Redis Cluster, expiry, and Redis going away
and coming back under it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from smartrec.storage.cache import open_feed_store
from smartrec.storage.cache.redis_feeds import RedisFeedStore
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

        server.start()  # same port, empty (no persistence): the old feed is gone anyway;
        time.sleep(1.1)  # the breaker's pause
        _, generation = store.fetch("u")
        assert generation == "0"
        assert store.put("u", b"new", generation)
        store.invalidate([])  # the next events' call flushes what waited
        assert store.pending == 0
        assert store.fetch("u")[0] is None  # the waiting invalidation dropped it
    finally:
        store.close()
        server.stop()
