"""FeedCache: versions, age, LRU bound, and invalidation that never loses an event."""

from __future__ import annotations

import time

import numpy as np

from smartrec.pipeline.core import Candidates
from smartrec.serving.feeds import Feed, FeedCache, Ranked


def ranked(m: int = 5, extra: int = 0) -> Ranked:
    items = np.arange(m + extra, dtype=np.int64)
    scores = np.linspace(0.0, 1.0, m + extra, dtype=np.float32)  # worst first
    cands = Candidates(
        items[:m],
        np.arange(m * 2, dtype=np.float32).reshape(m, 2),
        np.arange(1, m * 2 + 1, dtype=np.float32).reshape(m, 2),
        ["a", "b"],
    )
    popular = np.zeros(m + extra, dtype=bool)
    popular[m:] = True
    return Ranked(items, scores, popular, cands, [9, 8], np.array([7]))


def feed(version: str = "v1", built_ms: int | None = None) -> Feed:
    return Feed(version, ranked(), int(time.time() * 1000) if built_ms is None else built_ms)


def test_trim_keeps_the_best_sorted_with_retriever_rows_aligned() -> None:
    r = ranked(m=6, extra=2)
    # Popular fills are scored below every retrieved item by the service; here the fixture's
    # linspace puts them on top, and trim must still keep retrieved rows first and aligned.
    t = r.trim(4)
    assert t.truncated
    assert t.items.tolist() == [5, 4, 3, 2]
    assert t.cands.items.tolist() == [5, 4, 3, 2]
    assert t.cands.ranks[0].tolist() == [11.0, 12.0]  # the row of item 5
    assert t.cands.scores.dtype == np.float16
    whole = r.trim(100)
    assert not whole.truncated
    assert whole.items.tolist() == [5, 4, 3, 2, 1, 0, 6, 7]
    assert whole.popular.tolist() == [False] * 6 + [True, True]
    assert whole.recent == [9, 8] and whole.exclude.tolist() == [7]


def test_get_checks_the_version_and_the_age() -> None:
    cache = FeedCache(max_entries=10, max_age_s=60)
    assert cache.put("u", feed("v1"), cache.generation("u"))
    assert cache.get("u", "v1") is not None
    assert cache.get("u", "v2") is None  # another model: stale, and dropped
    assert "u" not in cache
    cache.put("u", feed("v1", built_ms=int(time.time() * 1000) - 61_000), cache.generation("u"))
    assert cache.get("u", "v1") is None


def test_lru_bound() -> None:
    cache = FeedCache(max_entries=2, max_age_s=60)
    for u in ("a", "b"):
        cache.put(u, feed(), cache.generation(u))
    assert cache.get("a", "v1") is not None  # a is now the most recently used
    cache.put("c", feed(), cache.generation("c"))
    assert len(cache) == 2 and "b" not in cache and "a" in cache and "c" in cache


def test_an_invalidation_during_a_build_wins() -> None:
    cache = FeedCache(max_entries=10, max_age_s=60)
    generation = cache.generation("u")  # a build reads this, then the history...
    cache.invalidate("u")  # ...an event arrives...
    assert not cache.put("u", feed(), generation)  # ...so the build's feed is not stored
    assert "u" not in cache
    assert cache.put("u", feed(), cache.generation("u"))


def test_invalidate_by_received_time_keeps_feeds_built_after_the_event() -> None:
    cache = FeedCache(max_entries=10, max_age_s=60)
    cache.put("u", feed(built_ms=10_000), cache.generation("u"))
    # Built well after the event was received (and committed): it saw the event.
    assert not cache.invalidate("u", received_ms=1_000, margin_ms=5_000)
    assert "u" in cache
    # Built within the commit margin of the event: it may not have seen it.
    assert cache.invalidate("u", received_ms=6_000, margin_ms=5_000)
    assert "u" not in cache
    # Nor is such a feed stored later (a build that read the history before the commit)...
    assert not cache.put("u", feed(built_ms=10_500), cache.generation("u"))
    # ...while one built after the margin is, and polling the same event again keeps it.
    assert cache.put("u", feed(built_ms=11_001), cache.generation("u"))
    assert not cache.invalidate("u", received_ms=6_000, margin_ms=5_000)
    assert "u" in cache


def test_clear_drops_everything_and_cancels_builds() -> None:
    cache = FeedCache(max_entries=10, max_age_s=60)
    generation = cache.generation("x")
    cache.put("u", feed(), cache.generation("u"))
    cache.clear()
    assert len(cache) == 0
    assert not cache.put("x", feed(), generation)
