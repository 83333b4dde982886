"""Feeds kept fresh: built ahead for the most active users, dropped when their users act.

The cache and its invalidation rules are in ``feeds.py``; this module runs them: the build
after each install (batches of users share one ranker call), the poll of the event log that
drops the feeds of users with events stored by other processes, and the status operators see.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from smartrec.config import Settings
from smartrec.domain.clock import now_ms
from smartrec.pipeline.core import Candidates, UserQuery
from smartrec.serving.erasures import COMMIT_MARGIN_MS, Erasures
from smartrec.serving.feeds import FeedCache
from smartrec.serving.ranker import HISTORY_LIMIT, UserRanker, ranked
from smartrec.serving.shared_feeds import Generation, SharedFeeds
from smartrec.serving.state import ServingState
from smartrec.storage.cache import FeedStore
from smartrec.storage.ports import EventStore

log = logging.getLogger(__name__)

#: Users ranked per ranker call when feeds are built ahead of requests.
FEED_BATCH = 64
#: A feed holds at least this many items (popular ones fill a user with fewer candidates).
FEED_MIN_ITEMS = 10


class FeedKeeper:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        ranker: UserRanker,
        erasures: Erasures,
        shared: FeedStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ranker = ranker
        self.erasures = erasures
        self.enabled = settings.feeds_enabled
        self.cache = SharedFeeds(FeedCache(settings.feed_entries, settings.feed_max_age_s), shared)
        self.hits = 0
        self.misses = 0
        self.event_mark: int | None = None  # newest events.received_at polled
        self.build_status: dict[str, Any] = {}
        self._poller: threading.Thread | None = None
        self._builder: threading.Thread | None = None

    # ----------------------------------------------------------------- invalidation
    def events_arrived(self, user_ids: Iterable[str]) -> None:
        """Events of these users were stored by this process: their feeds are stale now."""
        for user_id in set(user_ids):
            self.cache.invalidate(user_id)

    def drop_erased(self, user_id: str) -> None:
        """A feed built before the user's erasure (by another process) is dropped."""
        erased = self.erasures.erased_at(user_id)
        if erased is not None:
            self.cache.invalidate(user_id, erased, COMMIT_MARGIN_MS)

    def poll(self) -> int:
        """Drop the feeds of users with events stored since the last poll, by any process.

        Polls from a little before the newest ``received_at`` seen: an event is stamped before
        its batch commits, so a late commit is still found. Returns how many feeds it dropped.
        """
        if self.event_mark is None:
            self.event_mark = self.store.event_mark()
            return 0
        mark = self.event_mark
        self.erasures.refresh()
        rows = self.store.users_with_events_since(mark - COMMIT_MARGIN_MS)
        dropped = 0
        for user_id, received in rows:
            dropped += self.cache.invalidate(user_id, received, COMMIT_MARGIN_MS)
        if rows:
            # Capped at this clock: a writer whose clock runs ahead must not push the mark past
            # events that writers with a correct clock are still committing.
            newest = max(r for _, r in rows)
            self.event_mark = max(mark, min(newest, now_ms()))
        return dropped

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "cached": len(self.cache),
            "shared": self.cache.store is not None,
            "shared_hits": self.cache.shared_hits,
            "hits": self.hits,
            "misses": self.misses,
            "build": dict(self.build_status),
        }

    # ----------------------------------------------------------------- background work
    def start_poller(self, stop: threading.Event) -> None:
        """Poll the event log every ``feed_poll_interval_s`` until ``stop`` is set."""
        interval = self.settings.feed_poll_interval_s
        if not self.enabled or interval <= 0 or self._poller is not None:
            return
        mark = self.store.event_mark()
        if self.cache.store is not None:
            # Feeds in the shared store may predate events this process never heard of (a
            # writer that could not reach Redis, and has since restarted): look back over
            # their lifetime once, before any is taken.
            self.event_mark = now_ms() - int(self.settings.feed_max_age_s * 1000)
            try:
                self.poll()
            except Exception as exc:
                log.warning("event poll failed: %s: %s", type(exc).__name__, exc)
        self.event_mark = max(self.event_mark or 0, mark)

        def polling() -> None:
            while not stop.wait(interval):
                try:
                    self.poll()
                except Exception as exc:
                    log.warning("event poll failed: %s: %s", type(exc).__name__, exc)

        self._poller = threading.Thread(target=polling, name="smartrec-feeds", daemon=True)
        self._poller.start()

    def start_build(self, state: ServingState, wanted: Callable[[ServingState], bool]) -> None:
        """Build feeds for the most active users in a thread while ``wanted(state)``."""
        limit = self.settings.feed_precompute_users
        if not self.enabled or limit <= 0 or state.pipeline is None:
            return

        def run() -> None:
            try:
                self.build(limit, state, wanted)
            except Exception as exc:  # serving goes on: feeds are then built on demand
                self.build_status["error"] = f"{type(exc).__name__}: {exc}"
                log.warning("feed build failed: %s", self.build_status["error"])

        self._builder = threading.Thread(target=run, name="smartrec-feed-build", daemon=True)
        self._builder.start()

    def join(self) -> None:
        """Wait for the threads (after their stop event was set)."""
        for thread in (self._poller, self._builder):
            if thread is not None:
                thread.join(timeout=5)
        self._poller = self._builder = None

    def build(self, limit: int, state: ServingState, wanted: Callable[[ServingState], bool]) -> int:
        """Build feeds for the ``limit`` most recently active users, most recent first, in
        batches that share one ranker call; returns how many were stored. Stops early when
        ``wanted(state)`` turns false (another model installed, the service stopping)."""
        pipeline = state.pipeline
        if pipeline is None or not self.enabled:
            return 0
        started = time.perf_counter()
        status: dict[str, Any] = {"version": state.version, "target": 0, "built": 0}
        self.build_status = status
        users = self.store.active_users(limit)
        status["target"] = len(users)
        for start in range(0, len(users), FEED_BATCH):
            if not wanted(state):
                status["stopped"] = True
                break
            batch: list[tuple[str, Generation, int, UserQuery, np.ndarray, Candidates]] = []
            for user_id in users[start : start + FEED_BATCH]:
                if user_id in self.cache:
                    continue  # a request built it meanwhile
                kept, generation = self.cache.lookup(user_id, state)
                if kept is not None:
                    status["shared"] = status.get("shared", 0) + 1
                    continue  # another replica built it: served from the shared store
                built_ms = now_ms()
                history = self.store.user_history(user_id, HISTORY_LIMIT)
                query, allowed = self.ranker.query(state, user_id, history, True, None)
                cands = pipeline.retrieve(query, None)  # unmasked, as a request's feed
                batch.append((user_id, generation, built_ms, query, allowed, cands))
            all_scores = pipeline.score_many([(b[5], b[3]) for b in batch])
            for (user_id, generation, built_ms, query, allowed, cands), scores in zip(
                batch, all_scores, strict=True
            ):
                ranking = ranked(state, cands, scores, query, allowed, FEED_MIN_ITEMS)
                feed = self.ranker.feed(state, ranking, built_ms)
                status["built"] += self.cache.put(user_id, feed, generation, state)
            status["seconds"] = round(time.perf_counter() - started, 2)
        status["done"] = True
        status["seconds"] = round(time.perf_counter() - started, 2)
        log.info(
            "feeds: %d of %d users built, %d taken from the shared store, in %.1fs",
            status["built"],
            len(users),
            status.get("shared", 0),
            status["seconds"],
        )
        return int(status["built"])
