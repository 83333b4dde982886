"""State shared between processes (``memory://`` in-process, ``redis://``): the change feed
the users' feeds, and a cache of costly answers (the popular items of a window).

``open_change_feed(url)`` and ``open_feed_store(url)`` pick the adapter; redis-py is imported
inside its adapters only.
"""

from smartrec.storage.cache.base import ChangeFeed, FeedStore, OnUsers, SharedCache
from smartrec.storage.cache.factory import open_change_feed, open_feed_store, open_shared_cache

__all__ = [
    "ChangeFeed",
    "FeedStore",
    "OnUsers",
    "SharedCache",
    "open_change_feed",
    "open_feed_store",
    "open_shared_cache",
]
