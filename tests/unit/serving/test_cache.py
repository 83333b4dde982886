"""The service's TTL cache: bounded, and entries expire (a fake clock: no sleeping)."""

from __future__ import annotations

from smartrec.serving.cache import TtlCache


def test_bounded_least_recently_used_first() -> None:
    cache: TtlCache[int] = TtlCache(max_entries=3, ttl_s=60)
    for k in range(3):
        cache.put(str(k), k)
    assert cache.get("0") == 0  # used: "1" is now the oldest
    cache.put("3", 3)
    assert len(cache) == 3 and cache.get("1") is None and cache.get("0") == 0


def test_entries_expire() -> None:
    now = [100.0]
    cache: TtlCache[str] = TtlCache(max_entries=8, ttl_s=5, timer=lambda: now[0])
    cache.put("a", "x")
    now[0] += 4.9
    assert cache.get("a") == "x"
    now[0] += 0.2
    assert cache.get("a") is None and len(cache) == 0
    cache.put("b", "y")
    cache.clear()
    assert cache.get("b") is None
