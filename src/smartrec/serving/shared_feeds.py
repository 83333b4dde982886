"""Feeds in two tiers: this process's feed cache, then the feed store every replica shares.

With ``SMARTREC_CACHE_URL=redis://...`` a feed built by one replica is served by all of them:
a replica that starts (or a request that lands on another replica than the last) finds the
user's feed in Redis instead of ranking again. With ``memory://`` there is no second tier.

Who invalidates what:

* the process that stores events (an API process on the database bus, or ``smartrec worker``)
  invalidates the shared feeds of their users (``FeedStore.invalidate``) and then publishes the
  change feed; every replica drops its own copy when the notice arrives, and for a moment
  after it takes no shared feed of the user built before it (:data:`SHARED_MARGIN_MS`: the
  writer may not have reached Redis);
* a feed from the shared store passes the same checks as a local one before it is served: its
  model version, its age, and the stale marks of this process (events found by the poll of
  the event log, erasures), so a writer that could not reach Redis costs freshness only until
  the poll, never an answer built from before an erasure;
* builds read both generations before their history read: a feed built from an old history is
  refused by either tier (atomically in Redis).

Redis that cannot be reached is skipped: the local tier and ranking on demand answer instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from smartrec.domain.clock import now_ms
from smartrec.serving import feed_codec
from smartrec.serving.feeds import GENERATION_BUCKETS, Feed, FeedCache
from smartrec.serving.state import ServingState
from smartrec.storage.cache import FeedStore


@dataclass(frozen=True)
class Generation:
    """Read before a build's history read; handed back to :meth:`SharedFeeds.put`."""

    local: int
    shared: str | None  # None: no shared store, or it could not be read (do not store there)


#: A feed from the shared store must have been built this long after the last event this
#: process heard of for its user (a notice, or an event it stored): the writer's invalidation
#: in Redis may have failed, and the builder's clock may run a little ahead of this one.
SHARED_MARGIN_MS = 1_000


class SharedFeeds:
    def __init__(self, local: FeedCache, store: FeedStore | None = None) -> None:
        self.local = local
        self.store = store
        self.shared_hits = 0
        #: Per generation bucket: shared feeds built at or before this (epoch ms) are refused.
        self._shared_stale = np.zeros(GENERATION_BUCKETS, dtype=np.int64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.local)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.local

    def lookup(self, user_id: str, state: ServingState) -> tuple[Feed | None, Generation]:
        """The user's fresh feed from either tier (a shared one is kept locally from then on),
        and the generations to build with when there is none."""
        local_generation = self.local.generation(user_id)
        feed = self.local.get(user_id, state.version)
        if feed is not None or self.store is None:
            return feed, Generation(local_generation, None)
        data, shared_generation = self.store.fetch(user_id)
        generation = Generation(local_generation, shared_generation)
        return self._accept(user_id, state, data, local_generation), generation

    async def lookup_async(self, user_id: str, state: ServingState) -> Feed | None:
        """:meth:`lookup` on an event loop: the shared store is read without blocking it."""
        local_generation = self.local.generation(user_id)
        feed = self.local.get(user_id, state.version)
        if feed is not None or self.store is None:
            return feed
        data, _ = await self.store.fetch_async(user_id)
        return self._accept(user_id, state, data, local_generation)

    def _accept(
        self, user_id: str, state: ServingState, data: bytes | None, local_generation: int
    ) -> Feed | None:
        """A shared feed that passes this process's checks, kept here from now on."""
        if data is None:
            return None
        feed = feed_codec.decode(data, state)
        if feed is None or now_ms() - feed.built_ms > self.local.max_age_s * 1000:
            return None
        if feed.built_ms <= self._shared_stale[FeedCache._bucket(user_id)]:
            return None  # maybe from before an event this process heard of
        if not self.local.put(user_id, feed, local_generation):
            return None  # built before an event or erasure this process knows of
        self.shared_hits += 1
        return feed

    def cached(self, user_id: str, version: str) -> Feed | None:
        """This process's copy only (no I/O: what the event loop may ask)."""
        return self.local.get(user_id, version)

    def generation(self, user_id: str) -> Generation:
        local_generation = self.local.generation(user_id)
        if self.store is None:
            return Generation(local_generation, None)
        return Generation(local_generation, self.store.fetch(user_id)[1])

    def put(self, user_id: str, feed: Feed, generation: Generation, state: ServingState) -> bool:
        """Keep the feed here, and share it unless an event moved either generation."""
        if not self.local.put(user_id, feed, generation.local):
            return False
        if self.store is not None and generation.shared is not None:
            self.store.put(user_id, feed_codec.encode(feed, state), generation.shared)
        return True

    def invalidate(self, user_id: str, received_ms: int | None = None, margin_ms: int = 0) -> bool:
        """This process's copy (see :meth:`FeedCache.invalidate`). The shared one is the
        writer's to invalidate; until :data:`SHARED_MARGIN_MS` after now, a shared feed of the
        user is not taken either (in case the writer could not reach Redis)."""
        if received_ms is None and self.store is not None:
            bucket = FeedCache._bucket(user_id)
            edge = now_ms() + SHARED_MARGIN_MS
            with self._lock:
                self._shared_stale[bucket] = max(int(self._shared_stale[bucket]), edge)
        return self.local.invalidate(user_id, received_ms, margin_ms)

    def clear(self) -> None:
        self.local.clear()
