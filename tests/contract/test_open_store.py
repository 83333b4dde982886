"""``open_store`` picks the adapter by URL and loads no driver before it is asked to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smartrec.errors import ConfigError
from smartrec.storage import key_store, open_store, record_store
from smartrec.storage.memory import MemoryKeyStore, MemoryRecordStore, MemoryStore
from smartrec.storage.sql import SqlStore
from smartrec.storage.sql.keys import SqlKeyStore
from smartrec.storage.sql.records import RecordStore as SqlRecordStore


def test_memory_urls_give_a_new_store_each() -> None:
    first, second = open_store("memory://"), open_store("memory://")
    assert isinstance(first, MemoryStore) and isinstance(second, MemoryStore)
    first.upsert_items([{"item_id": "a"}])
    assert second.count_items() == 0
    assert isinstance(record_store(first), MemoryRecordStore)
    assert isinstance(key_store(first), MemoryKeyStore)


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_sqlite_urls_give_the_sql_adapter(tmp_path: Path, scheme: str) -> None:
    store = open_store(f"{scheme}:///{tmp_path / 'db.sqlite'}")
    assert isinstance(store, SqlStore) and store.dialect == "sqlite"
    assert isinstance(record_store(store), SqlRecordStore)
    assert isinstance(key_store(store), SqlKeyStore)
    store.close()


def test_postgresql_urls_give_the_sql_adapter_without_connecting() -> None:
    # Port 1 is closed: opening must not connect (only a call does).
    store = open_store("postgresql://nobody@127.0.0.1:1/none")
    assert isinstance(store, SqlStore) and store.dialect == "postgresql"
    assert not store.ping()
    store.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "SQLite:///x.db", "redis://localhost:6379/0", "smartrec.db", "", "memory:"],
)
def test_unknown_schemes_are_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="unsupported store URL"):
        open_store(url)


def test_errors_do_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("mysql://admin:s3cret@db.example/prod")
    assert "s3cret" not in str(info.value) and "admin:***@db.example" in str(info.value)


def test_memory_urls_take_no_location() -> None:
    with pytest.raises(ConfigError, match="no location"):
        open_store("memory://somewhere")


def test_importing_the_storage_package_loads_no_driver() -> None:
    code = (
        "import sys, smartrec.storage; "
        "loaded = [m for m in ('sqlalchemy', 'psycopg', 'sqlite3') if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""
