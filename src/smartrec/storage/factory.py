"""Pick a storage adapter by URL. Adapters are imported here, inside the functions, so that
importing ``smartrec.storage`` loads no driver and connects to nothing."""

from __future__ import annotations

from smartrec.errors import ConfigError
from smartrec.storage.ports import KeyStore, RecordStore, Store

#: URL schemes (before any ``+driver``) and the adapter serving them.
SCHEMES = {"memory": "memory", "sqlite": "sql", "postgresql": "sql", "postgres": "sql"}


def open_store(url: str) -> Store:
    """``memory://`` -> a new, empty :class:`MemoryStore` (one per call, nothing shared);
    ``sqlite://...`` / ``postgresql://...`` -> a :class:`SqlStore`. Call ``migrate()`` before use.
    """
    scheme, sep, rest = url.partition("://")
    adapter = SCHEMES.get(scheme.split("+", 1)[0]) if sep else None
    if adapter is None:
        raise ConfigError(
            f"unsupported store URL {_safe(url)!r}: use memory://, sqlite:///<path> or "
            "postgresql://<user>@<host>/<database>"
        )
    if adapter == "memory":
        if rest:
            raise ConfigError(f"memory:// takes no location (got {_safe(url)!r})")
        from smartrec.storage.memory import MemoryStore

        return MemoryStore()
    from smartrec.storage.sql import SqlStore

    return SqlStore(url)


def record_store(store: Store) -> RecordStore:
    """The read-back, deletion and erasure view over the same data as ``store``."""
    from smartrec.storage.memory import MemoryRecordStore, MemoryStore

    if isinstance(store, MemoryStore):
        return MemoryRecordStore(store)
    from smartrec.storage.sql import SqlStore
    from smartrec.storage.sql.records import RecordStore as SqlRecordStore

    if isinstance(store, SqlStore):
        return SqlRecordStore(store)
    raise ConfigError(f"no record store for {type(store).__name__}")


def key_store(store: Store) -> KeyStore:
    """The API-key table kept beside ``store``'s data."""
    from smartrec.storage.memory import MemoryKeyStore, MemoryStore

    if isinstance(store, MemoryStore):
        return MemoryKeyStore(store)
    from smartrec.storage.sql import SqlStore
    from smartrec.storage.sql.keys import SqlKeyStore

    if isinstance(store, SqlStore):
        return SqlKeyStore(store)
    raise ConfigError(f"no key store for {type(store).__name__}")


def _safe(url: str) -> str:
    """The URL without a password, for error messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
