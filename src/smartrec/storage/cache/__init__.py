"""State shared between processes: the change feed (``memory://`` in-process, ``redis://``).

``open_change_feed(url)`` picks the adapter; redis-py is imported inside its adapter only.
"""

from smartrec.storage.cache.base import ChangeFeed, OnUsers
from smartrec.storage.cache.factory import open_change_feed

__all__ = ["ChangeFeed", "OnUsers", "open_change_feed"]
