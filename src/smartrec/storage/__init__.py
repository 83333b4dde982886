"""Storage ports (Protocols) and their adapters; drivers are imported inside adapters only."""

from smartrec.storage.ports import CatalogStore, EventStore, JobStore, Store

__all__ = ["CatalogStore", "EventStore", "JobStore", "Store"]
