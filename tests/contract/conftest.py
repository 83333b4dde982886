"""One store per adapter (memory, SQLite, PostgreSQL), opened through ``open_store`` by URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.storage import KeyStore, RecordStore, Store, key_store, open_store, record_store
from tests.redisproc import RedisCluster, RedisServer


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


# Redis for the shared-state contracts: one server and one three-node cluster per module.
REDIS_KINDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("redis-cluster", marks=pytest.mark.integration),
]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    pytest.importorskip("redis")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    pytest.importorskip("redis")
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


def redis_url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the module's Redis server (``redis``) or cluster (``redis-cluster``)."""
    if kind == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url
