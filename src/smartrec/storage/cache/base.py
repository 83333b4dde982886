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
