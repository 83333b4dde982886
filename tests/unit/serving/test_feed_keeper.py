"""FeedKeeper: feeds built ahead, dropped when their users act (here or in another process)."""

from __future__ import annotations

from pathlib import Path

from smartrec.config import Settings
from smartrec.domain import EventRecord
from smartrec.domain.clock import now_ms
from smartrec.serving.erasures import COMMIT_MARGIN_MS, Erasures
from smartrec.serving.feed_keeper import FeedKeeper
from smartrec.serving.ranker import UserRanker
from smartrec.serving.state import ServingState
from smartrec.storage.memory import MemoryStore
from tests.unit.serving import served


def keeper(store: MemoryStore, tmp_path: Path, **settings: object) -> FeedKeeper:
    config = Settings(**{"home": tmp_path, **served.QUIET, **settings})
    erasures = Erasures(store)
    return FeedKeeper(config, store, UserRanker(store, erasures, config.feed_items), erasures)


def always(state: ServingState) -> bool:
    return True


def test_build_stores_a_feed_per_active_user_and_reports_it(tmp_path: Path) -> None:
    store = served.world_store()
    feeds = keeper(store, tmp_path)
    state = served.state(store)
    assert feeds.build(25, state, always) == 25
    active = store.active_users(25)
    assert all(u in feeds.cache for u in active)
    feed = feeds.cache.cached(active[0], state.version)
    assert feed is not None and len(feed.ranked.items) > 10
    # Each kept item carries its retriever bits, and one column per retriever of the history
    # items behind its reasons (-1: none).
    kept = feed.ranked
    assert state.pipeline is not None
    assert kept.sources is not None and kept.found is not None
    assert kept.sources.shape == (len(kept.items), len(state.pipeline.retrievers))
    history = set(kept.recent)
    behind = kept.sources[kept.sources >= 0]
    assert behind.size and set(behind.tolist()) <= history
    status = feeds.status()
    assert status["enabled"] and status["cached"] == 25
    assert status["build"]["target"] == 25 and status["build"]["built"] == 25
    assert status["build"]["done"] and status["build"]["version"] == state.version


def test_build_stops_when_the_state_is_no_longer_wanted(tmp_path: Path) -> None:
    store = served.world_store()
    feeds = keeper(store, tmp_path)
    assert feeds.build(25, served.state(store), lambda s: False) == 0
    assert feeds.status()["build"]["stopped"] and len(feeds.cache) == 0


def test_nothing_is_built_with_feeds_off(tmp_path: Path) -> None:
    store = served.world_store()
    feeds = keeper(store, tmp_path, feeds_enabled=False)
    assert feeds.build(25, served.state(store), always) == 0
    assert not feeds.status()["enabled"]


def test_events_of_this_process_drop_the_users_feeds_at_once(tmp_path: Path) -> None:
    store = served.world_store()
    feeds = keeper(store, tmp_path)
    feeds.build(10, served.state(store), always)
    a, b = store.active_users(2)
    feeds.events_arrived([a, a])
    assert a not in feeds.cache and b in feeds.cache


def test_the_poll_drops_feeds_of_users_with_events_from_other_processes(tmp_path: Path) -> None:
    # The world's events were received long before the feeds were built: the poll's look back
    # over the commit margin finds them again, and must not drop feeds built after them.
    store = served.world_store(received_ago_ms=10 * COMMIT_MARGIN_MS)
    feeds = keeper(store, tmp_path)
    assert feeds.poll() == 0  # the first poll only reads the mark
    feeds.build(10, served.state(store), always)
    assert feeds.poll() == 0
    a, b = store.active_users(2)
    store.add_events([EventRecord("late-1", a, "i01", "view", None, now_ms())])  # "elsewhere"
    assert feeds.poll() == 1
    assert a not in feeds.cache and b in feeds.cache
    assert feeds.event_mark is not None and feeds.event_mark >= now_ms() - COMMIT_MARGIN_MS
