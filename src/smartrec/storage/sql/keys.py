"""The ``api_keys`` table: hashed bearer tokens with scopes (never the token itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from smartrec.storage.sql import schema

if TYPE_CHECKING:
    from smartrec.storage.sql.store import SqlStore


class SqlKeyStore:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine

    def add(self, row: dict[str, Any]) -> None:
        with self.store._write_lock, self.engine.begin() as conn:
            conn.execute(insert(schema.api_keys).values(**row))

    def get(self, key_id: str) -> dict[str, Any] | None:
        c = schema.api_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.api_keys).where(c.key_id == key_id)).first()
        return None if row is None else dict(row._mapping)

    def all(self) -> list[dict[str, Any]]:
        c = schema.api_keys.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.api_keys).order_by(c.created_at, c.key_id))
            return [dict(r._mapping) for r in rows]

    def revoke(self, key_id: str, now_ms: int) -> bool:
        """False when there is no such key or it was revoked already."""
        c = schema.api_keys.c
        query = (
            update(schema.api_keys)
            .where(c.key_id == key_id, c.revoked_at.is_(None))
            .values(revoked_at=now_ms)
        )
        with self.store._write_lock, self.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def count_active(self) -> int:
        c = schema.api_keys.c
        query = select(func.count()).select_from(schema.api_keys).where(c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
