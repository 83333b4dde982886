"""The change feed: how every serving process learns at once whose events were just stored.

A process that stores events (an API process on the database bus, or ``smartrec worker``)
publishes the users; every serving process listens and drops those users' feeds, so their next
request ranks with the new events. Delivery is best effort by design: the event log is the
truth, and every serving process also polls it (``SMARTREC_FEED_POLL_INTERVAL_S``), so a lost
notice costs freshness (up to the poll interval), never correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

#: A value of the shared cache is kept this many times its freshness (served stale while one
#: process computes it again).
STALE_FACTOR = 4
#: Seconds one process has to refresh a shared value before another may try.
REFRESH_LEASE_S = 30.0

#: What a listener is called with: the users whose events were stored.
OnUsers = Callable[[list[str]], None]


class ChangeFeed(Protocol):
    #: True when other processes hear what this one publishes (Redis); False in-process only.
    shared: bool

    def publish(self, user_ids: Iterable[str]) -> None:
        """Tell every listener; never raises (a notice that cannot be sent is logged)."""
        ...

    def listen(self, on_users: OnUsers) -> None:
        """Call ``on_users`` for every notice from now on (a background thread for Redis)."""
        ...

    def close(self) -> None: ...


class FeedStore(Protocol):
    """Users' feeds shared by every serving process (Redis), as opaque bytes.

    A feed is built from a history read; an event stored meanwhile must win. A writer of events
    calls :meth:`invalidate`, which moves the user's generation and drops the stored feed; a
    builder reads the generation (:meth:`fetch`) before its history read and hands it back to
    :meth:`put`, which stores only if the generation has not moved (atomically, in Redis).
    Every call is best effort: a store that cannot be reached answers a miss (``None``) and
    the caller computes the feed itself.
    """

    def fetch(self, user_id: str) -> tuple[bytes | None, str | None]:
        """The user's stored feed (or None) and the generation to hand to :meth:`put` (None:
        the store is unreachable, do not put)."""
        ...

    async def fetch_async(self, user_id: str) -> tuple[bytes | None, str | None]:
        """:meth:`fetch` for an event loop (a slow Redis never stalls other requests)."""
        ...

    def put(self, user_id: str, data: bytes, generation: str) -> bool:
        """Store unless the user's generation moved since it was read; True when stored."""
        ...

    def invalidate(self, user_ids: Iterable[str]) -> None:
        """Events of these users were stored: drop their feeds and cancel builds in flight.
        Users that could not be invalidated now are retried with the next call."""
        ...

    def close(self) -> None: ...


class SharedCache(Protocol):
    """Answers that are costly to compute and the same for every process (the popular items of
    a window: an aggregate over the event log), computed by one process and read by the rest.

    :meth:`get` tells whether the caller should compute a fresh value: a value past its
    freshness is still returned (serve it meanwhile), and exactly one caller at a time is told
    to refresh it, so that N replicas do not run the same aggregate when it expires."""

    def get(self, key: str) -> tuple[bytes | None, bool]:
        """(the value or None, whether this caller should compute and :meth:`put` it)."""
        ...

    def put(self, key: str, value: bytes, fresh_s: float) -> None:
        """Store for ``fresh_s`` seconds of freshness (kept a while longer, stale)."""
        ...

    def close(self) -> None: ...
