"""`smartrec keys create|list|revoke`: the token printed once, then usable until revoked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from smartrec.api.app import create_app
from smartrec.cli import app
from smartrec.config import Settings


def test_keys_cli_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTREC_HOME", str(tmp_path))
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--scope", "read,ingest", "--name", "shop", "--json"]
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.output)
    assert key["scopes"] == ["read", "ingest"] and key["name"] == "shop"
    plain = runner.invoke(app, ["keys", "create", "--scope", "admin"])
    assert plain.exit_code == 0 and "shown once" in plain.output
    assert "sr_" in plain.output
    bad = runner.invoke(app, ["keys", "create", "--scope", "root"])
    assert bad.exit_code != 0
    listed = runner.invoke(app, ["keys", "list", "--json"])
    rows = json.loads(listed.output)
    assert [r["name"] for r in rows] == ["shop", None]
    assert key["token"] not in listed.output and "secret" not in listed.output

    settings = Settings(home=tmp_path, auth="required", reload_interval_s=0, feed_poll_interval_s=0)
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {key['token']}"}
        assert client.get("/v1/popular", headers=auth).status_code == 200
        revoked = runner.invoke(app, ["keys", "revoke", key["key_id"]])
        assert revoked.exit_code == 0, revoked.output
        # This server cached the key: it learns of the revocation within the cache's TTL.
        client.app.state.runtime.keys.forget()  # type: ignore[attr-defined]
        assert client.get("/v1/popular", headers=auth).status_code == 401
    missing = runner.invoke(app, ["keys", "revoke", "ffffffffffff"])
    assert missing.exit_code != 0


def test_demo_prints_a_fresh_key_and_revokes_the_last(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from smartrec.cli import _demo_key
    from smartrec.demo import print_where_to_look
    from smartrec.runtime import Runtime

    runtime = Runtime.build(Settings(home=tmp_path))
    runtime.store.migrate()
    first = _demo_key(runtime)
    second = _demo_key(runtime)
    keys = runtime.keys.list()
    assert [k.active for k in keys] == [False, True]
    assert runtime.keys.verify(first) is None and runtime.keys.verify(second) is not None
    out = StringIO()
    print_where_to_look(Console(file=out, width=200), "127.0.0.1", 8000, second, False)
    assert f"export SMARTREC_API_KEY={second}" in out.getvalue()
    assert "auth is off on 127.0.0.1" in out.getvalue()
    runtime.store.close()
