"""The shared cache contract (``SharedCache``): memory and a real Redis behave alike."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.storage.cache import SharedCache, open_shared_cache
from smartrec.storage.cache.memory import MemorySharedCache
from tests.contract.conftest import REDIS_KINDS, redis_url
from tests.redisproc import RedisServer


@pytest.fixture(params=REDIS_KINDS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[SharedCache, SharedCache]]:
    """Two processes' views of one cache."""
    if request.param == "memory":
        one = MemorySharedCache()
        yield one, one
        return
    url, prefix = redis_url(request, request.param), f"t{uuid.uuid4().hex[:8]}:"
    a, b = open_shared_cache(url, prefix), open_shared_cache(url, prefix)
    assert a is not None and b is not None
    yield a, b
    a.close()
    b.close()


def test_one_process_computes_and_the_others_read(pair: tuple[SharedCache, SharedCache]) -> None:
    a, b = pair
    assert a.get("k") == (None, True)  # a computes
    assert b.get("k") == (None, False)  # b is told a is on it (it computes for itself)
    a.put("k", b"\x00value", fresh_s=30)
    assert b.get("k") == (b"\x00value", False)
    assert a.get("other") == (None, True)  # per key


def test_a_stale_value_is_served_while_one_process_refreshes(
    pair: tuple[SharedCache, SharedCache],
) -> None:
    a, b = pair
    a.get("k")
    a.put("k", b"old", fresh_s=0.05)
    time.sleep(0.1)
    assert b.get("k") == (b"old", True)  # stale: b refreshes it
    assert a.get("k") == (b"old", False)  # meanwhile a serves the stale value
    b.put("k", b"new", fresh_s=30)
    assert a.get("k") == (b"new", False)


def test_redis_away_means_every_process_computes(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    server = RedisServer(tmp_path).start()
    cache = open_shared_cache(server.url, "p:")
    assert cache is not None
    try:
        server.stop()
        started = time.monotonic()
        assert cache.get("k") == (None, True)
        cache.put("k", b"v", 30)  # no error
        assert time.monotonic() - started < 3.0
    finally:
        cache.close()
        server.stop()
