"""API keys of a :class:`MemoryStore` (the ``KeyStore`` port): hashed secrets, never tokens."""

from __future__ import annotations

from typing import Any

from smartrec.storage.memory.store import MemoryStore
from smartrec.storage.memory.tables import KEY_COLUMNS


class MemoryKeyStore:
    def __init__(self, store: MemoryStore) -> None:
        self.tables = store.tables

    def add(self, row: dict[str, Any]) -> None:
        """Store a key row; ``ValueError`` for an unknown column or a key id in use."""
        unknown = set(row) - set(KEY_COLUMNS)
        if unknown:
            raise ValueError(f"API keys have no column {', '.join(sorted(unknown))}")
        stored: dict[str, Any] = dict.fromkeys(KEY_COLUMNS)
        stored.update(row)
        with self.tables.lock:
            if stored["key_id"] in self.tables.api_keys:
                raise ValueError(f"an API key {stored['key_id']!r} exists already")
            self.tables.api_keys[stored["key_id"]] = stored

    def get(self, key_id: str) -> dict[str, Any] | None:
        with self.tables.lock:
            row = self.tables.api_keys.get(key_id)
            return None if row is None else dict(row)

    def all(self) -> list[dict[str, Any]]:
        with self.tables.lock:
            rows = [dict(r) for r in self.tables.api_keys.values()]
        return sorted(rows, key=lambda r: (r["created_at"], r["key_id"]))

    def revoke(self, key_id: str, now_ms: int) -> bool:
        """False when there is no such key or it was revoked already."""
        with self.tables.lock:
            row = self.tables.api_keys.get(key_id)
            if row is None or row["revoked_at"] is not None:
                return False
            row["revoked_at"] = now_ms
            return True

    def count_active(self) -> int:
        with self.tables.lock:
            return sum(1 for r in self.tables.api_keys.values() if r["revoked_at"] is None)
