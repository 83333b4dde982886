"""SQL adapter (SQLAlchemy 2 + Alembic): SQLite embedded, PostgreSQL in the cloud."""

from smartrec.storage.sql.store import SqlStore, normalise_url

__all__ = ["SqlStore", "normalise_url"]
