"""The in-process change feed (the default): listeners of this process only."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from smartrec.storage.cache.base import OnUsers

log = logging.getLogger(__name__)


class LocalChangeFeed:
    shared = False

    def __init__(self) -> None:
        self._listeners: list[OnUsers] = []

    def publish(self, user_ids: Iterable[str]) -> None:
        users = sorted(set(user_ids))
        if not users:
            return
        for listener in list(self._listeners):
            try:
                listener(users)
            except Exception:
                log.exception("change feed listener failed")

    def listen(self, on_users: OnUsers) -> None:
        self._listeners.append(on_users)

    def close(self) -> None:
        self._listeners.clear()
