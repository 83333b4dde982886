"""Storage ports (Protocols) and their adapters; drivers are imported inside adapters only.

``open_store(url)`` picks the adapter by URL (``memory://``, ``sqlite://``, ``postgresql://``);
``record_store(store)`` and ``key_store(store)`` give the read-back and API-key views of it.
"""

from smartrec.storage.factory import key_store, open_store, record_store
from smartrec.storage.ports import CatalogStore, EventStore, JobStore, KeyStore, RecordStore, Store

__all__ = [
    "CatalogStore",
    "EventStore",
    "JobStore",
    "KeyStore",
    "RecordStore",
    "Store",
    "key_store",
    "open_store",
    "record_store",
]
