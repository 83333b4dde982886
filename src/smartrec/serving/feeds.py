"""Per-user feeds: the pipeline's ranking of a user's candidates, kept between requests.

Retrieval and ranking cost milliseconds per user; business rules (filters, boosts, diversity,
exploration, paging, reasons) cost a fraction of that and must run per request. A feed keeps
the first half, so that a request for a user whose feed is fresh runs the rules only, with no
database read (docs/concepts/feeds.md): feeds are built ahead of requests for the most active
users, and on demand for the others.

A feed is only served while nothing it was built from has changed:

* a new model version makes every feed stale (the version is part of the entry);
* an event of the user drops the user's feed: at once when the event came through this
  process, within ``feed_poll_interval_s`` when another process stored it (the service polls
  the event log by ``received_at``);
* a feed older than ``feed_max_age_s`` is rebuilt (item ages and windowed popularity drift);
* catalogue changes (hidden, unavailable, categories) are applied per request by the rules,
  which read the live catalogue masks.

Builds race with events: a build reads the history, then stores its result. Each user hashes
to a generation counter that an event in this process bumps; a build stores its feed only if
the counter did not move while it ran. An event found by the poll marks the user's bucket
"stale before received_at + the commit margin": a feed built from a history read before that
is dropped and never stored, one built after it is kept. Either way an event that arrives
mid-build is never lost, and a poll that sees the same event again cancels nothing new.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from smartrec.pipeline.core import Candidates

#: Generation counters are per hash bucket (bounded memory whatever the number of users).
GENERATION_BUCKETS = 1 << 16


@dataclass(frozen=True)
class Ranked:
    """One user's candidates ranked by the pipeline, before business rules."""

    items: np.ndarray  # (m,) serving-axis positions
    scores: np.ndarray  # (m,) ranker (or fusion) scores
    popular: np.ndarray  # (m,) bool: appended by the popular fill, not retrieved
    cands: Candidates  # retriever scores and ranks of items[: len(cands)]
    recent: list[int]  # the user's history on the model axis, newest positive first
    exclude: np.ndarray  # positions never to show (seen, negative feedback) at ranking time
    truncated: bool = False  # candidates past ``items`` were dropped when it was stored
    #: (m, R) history items behind each item's reasons, one column per retriever (column r:
    #: ``cands.names[r]``), -1 for none; computed once when a feed is stored, not per page.
    sources: np.ndarray | None = None
    #: (m,) uint32 item hashes (page tokens) and (m,) bit masks of the retrievers that found
    #: each item (bit r: ``cands.names[r]``): computed once per feed, not per page. Arrays,
    #: not reason dicts: a feed stays a few KB and adds no objects for the GC to walk.
    hashes: np.ndarray | None = None
    found: np.ndarray | None = None

    def trim(self, keep: int) -> Ranked:
        """The ``keep`` best, sorted best first, with compact retriever columns: what a feed
        stores (about 3 KB a user at the default of 100)."""
        n_c = len(self.cands)
        retrieved = np.argsort(-self.scores[:n_c], kind="stable")[:keep]
        rest = np.arange(n_c, len(self.items))[: max(0, keep - len(retrieved))]
        order = np.concatenate([retrieved, rest]).astype(np.int64)
        cands = Candidates(
            self.cands.items[retrieved].astype(np.int64),
            self.cands.scores[retrieved].astype(np.float16),
            self.cands.ranks[retrieved].astype(np.float16),
            self.cands.names,
        )
        return Ranked(
            items=self.items[order].astype(np.int64),
            scores=self.scores[order].astype(np.float32),
            popular=self.popular[order],
            cands=cands,
            recent=list(self.recent),
            exclude=np.asarray(self.exclude, dtype=np.int64),
            truncated=self.truncated or len(order) < len(self.items),
            sources=None if self.sources is None else self.sources[order],
            hashes=None if self.hashes is None else self.hashes[order],
            found=None if self.found is None else self.found[order],
        )


@dataclass(frozen=True)
class Feed:
    version: str  # the model version it was ranked by
    ranked: Ranked
    built_ms: int  # wall-clock time of the history read it was built from


class FeedCache:
    """A bounded, thread-safe LRU of feeds with event-driven invalidation."""

    def __init__(self, max_entries: int, max_age_s: float) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._data: OrderedDict[str, Feed] = OrderedDict()
        self._generations = np.zeros(GENERATION_BUCKETS, dtype=np.int64)
        self._stale_before = np.zeros(GENERATION_BUCKETS, dtype=np.int64)  # epoch ms
        self._lock = threading.Lock()

    @staticmethod
    def _bucket(user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % GENERATION_BUCKETS

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._data

    def generation(self, user_id: str) -> int:
        """Read before a build's history read; hand back to :meth:`put`."""
        return int(self._generations[self._bucket(user_id)])

    def get(self, user_id: str, version: str) -> Feed | None:
        with self._lock:
            feed = self._data.get(user_id)
            if feed is None:
                return None
            if feed.version != version or time.time() * 1000 - feed.built_ms > (
                self.max_age_s * 1000
            ):
                del self._data[user_id]
                return None
            self._data.move_to_end(user_id)
            return feed

    def put(self, user_id: str, feed: Feed, generation: int) -> bool:
        """Store unless the user was invalidated since ``generation`` was read."""
        bucket = self._bucket(user_id)
        with self._lock:
            if int(self._generations[bucket]) != generation:
                return False
            if feed.built_ms <= int(self._stale_before[bucket]):
                return False
            self._data[user_id] = feed
            self._data.move_to_end(user_id)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
            return True

    def invalidate(self, user_id: str, received_ms: int | None = None, margin_ms: int = 0) -> bool:
        """Drop the user's feed. Without ``received_ms`` (an event stored by this process): at
        once, cancelling builds in flight. With it (an event found by polling): feeds built
        from a history read before ``received_ms + margin_ms`` (the event may have committed
        that late), stored now or later. True when a feed was dropped."""
        bucket = self._bucket(user_id)
        with self._lock:
            if received_ms is None:
                self._generations[bucket] += 1
            else:
                edge = received_ms + margin_ms
                self._stale_before[bucket] = max(int(self._stale_before[bucket]), edge)
            feed = self._data.get(user_id)
            if feed is None:
                return False
            if feed.built_ms > self._stale_before[bucket] and received_ms is not None:
                return False
            del self._data[user_id]
            return True

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._generations += 1
