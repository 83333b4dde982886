"""Erased users: a model trained before a user's erasure must not use what it learnt of them.

Every erasure, by any process, is known here (loaded at each install, polled with the events).
"""

from __future__ import annotations

import threading

from smartrec.domain.clock import erasure_key, now_ms
from smartrec.serving.state import ServingState
from smartrec.storage.ports import EventStore

#: Events and erasures are stamped before their transaction commits: polls look back this far
#: so that a late commit is not missed.
COMMIT_MARGIN_MS = 5_000


class Erasures:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        #: ``erasure_key`` of each erased user -> when (epoch ms).
        self.at: dict[str, int] = {}
        self.mark = 0  # newest erased_at seen
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read every erasure (at an install)."""
        erased = self.store.erasures()
        with self._lock:
            self.at = erased
            self.mark = max(erased.values(), default=0)

    def record(self, user_id: str) -> None:
        """This process erased the user just now."""
        with self._lock:
            self.at = {**self.at, erasure_key(user_id): now_ms()}

    def refresh(self) -> int:
        """Learn of erasures made by other processes; returns how many were new."""
        found = self.store.erasures(self.mark - COMMIT_MARGIN_MS)
        with self._lock:
            fresh = {k: at for k, at in found.items() if self.at.get(k) != at}
            if fresh:
                self.at = {**self.at, **fresh}
                self.mark = max(self.mark, min(max(fresh.values()), now_ms()))
        return len(fresh)

    def erased_at(self, user_id: str) -> int | None:
        erased = self.at
        return erased.get(erasure_key(user_id)) if erased else None

    def model_user(self, state: ServingState, user_id: str) -> int:
        """The user's row in the served model (-1: none, or erased after its training read
        the event log)."""
        erased = self.erased_at(user_id)
        if erased is not None and erased >= state.snapshot_ms:
            return -1
        return state.users.get(user_id)
