"""The feed store contract (``FeedStore``): memory and a real Redis behave alike."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.errors import ConfigError
from smartrec.storage.cache import FeedStore, open_feed_store
from smartrec.storage.cache.memory import MemoryFeedStore
from tests.contract.conftest import REDIS_KINDS, redis_url


@pytest.fixture(params=REDIS_KINDS)
def feeds(request: pytest.FixtureRequest) -> Iterator[FeedStore]:
    if request.param == "memory":
        yield MemoryFeedStore(ttl_s=60)
        return
    store = open_feed_store(
        redis_url(request, request.param), prefix=f"t{uuid.uuid4().hex[:8]}:", ttl_s=60
    )
    assert store is not None
    yield store
    store.close()


def test_a_feed_is_stored_under_its_generation_and_read_back(feeds: FeedStore) -> None:
    data, generation = feeds.fetch("u1")
    assert data is None and generation is not None
    payload = b"SRF1\x00\xff" * 100  # bytes, not text
    assert feeds.put("u1", payload, generation)
    assert feeds.fetch("u1") == (payload, generation)
    assert feeds.fetch("u2")[0] is None  # per user


def test_an_event_during_a_build_wins(feeds: FeedStore) -> None:
    _, before = feeds.fetch("u1")
    assert before is not None
    feeds.invalidate(["u1"])  # an event stored while the feed was being built
    assert not feeds.put("u1", b"stale", before)
    assert feeds.fetch("u1")[0] is None
    _, after = feeds.fetch("u1")
    assert after is not None and after != before
    assert feeds.put("u1", b"fresh", after)
    feeds.invalidate(["u1", "u1", "u9"])  # duplicates and users without feeds
    assert feeds.fetch("u1")[0] is None


def test_invalidation_is_per_user(feeds: FeedStore) -> None:
    for user in ("a", "b"):
        _, generation = feeds.fetch(user)
        assert generation is not None and feeds.put(user, user.encode(), generation)
    feeds.invalidate(["a"])
    assert feeds.fetch("a")[0] is None and feeds.fetch("b")[0] == b"b"


def test_user_ids_that_look_like_key_syntax_stay_apart(feeds: FeedStore) -> None:
    users = ["}{", "a}:feed", "{a}", "a", "é 用户", "x" * 256]
    for user in users:
        _, generation = feeds.fetch(user)
        assert generation is not None and feeds.put(user, user.encode(), generation)
    feeds.invalidate(["a"])
    assert feeds.fetch("a")[0] is None
    for user in users[:-3] + users[-2:]:
        assert feeds.fetch(user)[0] == user.encode()


def test_concurrent_builds_and_events_never_leave_a_stale_feed(feeds: FeedStore) -> None:
    """Builders race an invalidating writer; afterwards a stored feed, if any, was built from
    the last generation (never one that an event overtook)."""
    stop = threading.Event()
    stale: list[bytes] = []

    def build() -> None:
        while not stop.is_set():
            _, generation = feeds.fetch("u")
            if generation is not None:
                feeds.put("u", generation.encode(), generation)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        feeds.invalidate(["u"])
        data, generation = feeds.fetch("u")
        if data is not None and data.decode() != generation:
            stale.append(data)
    stop.set()
    for thread in threads:
        thread.join()
    assert not stale


def test_feeds_expire(tmp_path: Path) -> None:
    now = [0.0]
    store = MemoryFeedStore(ttl_s=10, clock=lambda: now[0])
    _, generation = store.fetch("u")
    assert generation is not None and store.put("u", b"x", generation)
    now[0] = 9.9
    assert store.fetch("u")[0] == b"x"
    now[0] = 10.0
    assert store.fetch("u")[0] is None


def test_memory_url_has_no_shared_store_and_odd_urls_are_refused() -> None:
    assert open_feed_store("memory://") is None
    with pytest.raises(ConfigError, match="unsupported cache URL"):
        open_feed_store("memcached://x")
    pytest.importorskip("redis")
    with pytest.raises(ConfigError, match="braces"):
        open_feed_store("redis://127.0.0.1:1/0", prefix="smart{rec}:")
