"""The in-process adapter: the ``Store``, ``RecordStore`` and ``KeyStore`` ports in memory."""

from smartrec.storage.memory.keys import MemoryKeyStore
from smartrec.storage.memory.records import MemoryRecordStore
from smartrec.storage.memory.store import MemoryStore

__all__ = ["MemoryKeyStore", "MemoryRecordStore", "MemoryStore"]
