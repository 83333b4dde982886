"""State shared between processes (``memory://`` in-process, ``redis://``): the change feed
and the users' feeds.

``open_change_feed(url)`` and ``open_feed_store(url)`` pick the adapter; redis-py is imported
inside its adapters only.
"""

from smartrec.storage.cache.base import ChangeFeed, FeedStore, OnUsers
from smartrec.storage.cache.factory import open_change_feed, open_feed_store

__all__ = ["ChangeFeed", "FeedStore", "OnUsers", "open_change_feed", "open_feed_store"]
