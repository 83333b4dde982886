"""One store per adapter (memory, SQLite, PostgreSQL), opened through ``open_store`` by URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.storage import KeyStore, RecordStore, Store, key_store, open_store, record_store


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'smartrec.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture()
def store(store_url: str) -> Iterator[Store]:
    """A fresh, migrated, empty store."""
    opened = open_store(store_url)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture()
def records(store: Store) -> RecordStore:
    return record_store(store)


@pytest.fixture()
def keys(store: Store) -> KeyStore:
    return key_store(store)
