"""API keys: every route's scope, 401/403 problems, hashing, revocation, rate limit, start-up
refusal, CORS, and the feed lane under auth."""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text

from smartrec.api.app import create_app
from smartrec.api.auth import PUBLIC, TokenBuckets, scope_of
from smartrec.api.routes import iter_routes
from smartrec.config import Settings
from smartrec.errors import ConfigError
from smartrec.keys import ApiKeys
from smartrec.storage.sql import SqlStore
from smartrec.storage.sql.keys import SqlKeyStore
from tests.api.conftest import assert_problem, runtime, train

SCOPES = ("read", "ingest", "admin")
#: What a route needs; a route missing here fails test_every_route_declares_a_scope.
EXPECTED = {
    ("POST", "/v1/items"): "ingest",
    ("POST", "/v1/users"): "ingest",
    ("POST", "/v1/events"): "ingest",
    ("GET", "/v1/users/{user_id}/recommendations"): "read",
    ("GET", "/v1/items/{item_id}/similar"): "read",
    ("GET", "/v1/popular"): "read",
    ("POST", "/v1/sessions/recommendations"): "read",
    ("POST", "/v1/rankings"): "read",
    ("GET", "/v1/items"): "read",
    ("GET", "/v1/items/{item_id}"): "read",
    ("DELETE", "/v1/items/{item_id}"): "admin",
    ("GET", "/v1/users/{user_id}"): "read",
    ("GET", "/v1/users/{user_id}/events"): "read",
    ("DELETE", "/v1/users/{user_id}"): "admin",
    ("POST", "/v1/training-jobs"): "admin",
    ("GET", "/v1/training-jobs/{job_id}"): "admin",
    ("GET", "/v1/models"): "admin",
    ("POST", "/v1/models/{version}/promote"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
}
SAMPLE = {"user_id": "nobody", "item_id": "nothing", "version": "999", "job_id": "nojob"}


def keyed_settings(home: Path, **overrides: Any) -> Settings:
    quiet = {"reload_interval_s": 0, "feed_poll_interval_s": 0, "feed_precompute_users": 0}
    return Settings(**{"home": home, "auth": "required", **quiet, **overrides})


def make_keys(settings: Settings, **rate: Any) -> tuple[dict[str, str], ApiKeys]:
    """One key per scope (made before start-up: a keyed server refuses to start without)."""
    settings.ensure_home()
    store = SqlStore(settings.resolved_database_url)
    store.migrate()
    keys = ApiKeys(SqlKeyStore(store))
    return {s: keys.create(s, name=f"{s} key", **rate)[1] for s in SCOPES}, keys


@pytest.fixture()
def keyed(tmp_path: Path, shared_registry: str) -> Any:
    settings = keyed_settings(
        tmp_path, registry_url=shared_registry, model_name="auth_m", experiment="auth_e"
    )
    tokens, _ = make_keys(settings)
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(settings)))
        yield client, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(client: TestClient) -> list[tuple[str, APIRoute]]:
    return [
        (path, r)
        for path, r in iter_routes(client.app)
        if isinstance(r, APIRoute) and r.include_in_schema
    ]


def plain(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


def test_every_route_declares_a_scope(keyed: Any) -> None:
    """A new route fails here until it declares a scope (and this table says which)."""
    client, _ = keyed
    seen = {}
    for full, route in api_routes(client):
        for method in route.methods - {"HEAD"}:
            path = plain(full)
            if path in PUBLIC:
                assert scope_of(route) is None, f"public {path} declares a scope"
                continue
            seen[(method, path)] = scope_of(route)
    assert seen == EXPECTED


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_each_scope_against_each_route(keyed: Any, method: str, path: str) -> None:
    client, tokens = keyed
    url = path.format(**SAMPLE, key_id="0123456789ab")
    body = {"json": {}} if method == "POST" else {}
    missing = client.request(method, url, **body)
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    for scope, token in tokens.items():
        response = client.request(method, url, headers=bearer(token), **body)
        if scope == EXPECTED[(method, path)]:
            assert response.status_code not in (401, 403), (scope, response.text)
        else:
            problem = assert_problem(response, 403)
            assert repr(EXPECTED[(method, path)]) in problem["detail"]


def test_public_paths_need_no_key(keyed: Any) -> None:
    client, _ = keyed
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").status_code in (200, 503)


def test_bad_tokens_are_401_problems(keyed: Any) -> None:
    client, tokens = keyed
    good = tokens["read"]
    for header in (
        "Bearer sr_nope_nope",
        "Bearer " + good[:-1] + ("A" if good[-1] != "A" else "B"),  # right id, wrong secret
        "Bearer garbage",
        "Basic " + good,
        "Bearer",
    ):
        response = client.get("/v1/popular", headers={"Authorization": header})
        assert_problem(response, 401)


def test_tokens_are_stored_hashed_only(keyed: Any) -> None:
    client, tokens = keyed
    store = runtime(client).store
    with store.engine.connect() as conn:
        rows = [tuple(str(v) for v in r) for r in conn.execute(text("SELECT * FROM api_keys"))]
    dump = repr(rows)
    assert len(rows) == 3
    for token in tokens.values():
        secret = token.split("_", 2)[2]  # sr_<key id>_<secret>
        assert token not in dump and secret not in dump
    # ... and nothing shows the hash over HTTP either.
    listed = client.get("/v1/keys", headers=bearer(tokens["admin"])).json()["keys"]
    assert {k["name"] for k in listed} == {"read key", "ingest key", "admin key"}
    assert all(
        set(k) == {"key_id", "name", "scopes", "rate_limit", "created_at", "revoked_at"}
        for k in listed
    )


def test_keys_over_http_create_use_revoke(keyed: Any) -> None:
    client, tokens = keyed
    admin = bearer(tokens["admin"])
    created = client.post(
        "/v1/keys", json={"scopes": ["ingest", "read"], "name": "shop"}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["scopes"] == ["read", "ingest"] and key["token"].startswith("sr_")
    fresh = bearer(key["token"])
    assert client.get("/v1/popular", headers=fresh).status_code == 200
    assert_problem(client.get("/v1/models", headers=fresh), 403)
    assert_problem(client.post("/v1/keys", json={"scopes": ["root"]}, headers=admin), 422)
    revoked = client.delete(f"/v1/keys/{key['key_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(client.get("/v1/popular", headers=fresh), 401)  # at once on this server
    assert_problem(client.delete("/v1/keys/0000000000ff", headers=admin), 404)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, shared_registry: str) -> None:
    settings = keyed_settings(
        tmp_path, registry_url=shared_registry, model_name="rl_m", experiment="rl_e"
    )
    tokens, keys = make_keys(settings)
    _, slow = keys.create("read", name="slow", rate_limit=0.5)  # bucket of 1, refill in 2 s
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/popular", headers=bearer(slow))
        assert first.status_code == 200
        limited = client.get("/v1/popular", headers=bearer(slow))
        problem = assert_problem(limited, 429)
        assert limited.headers["retry-after"] == "2"
        assert "rate limit" in problem["detail"]
        # Buckets are per key: another key is not slowed down.
        assert client.get("/v1/popular", headers=bearer(tokens["read"])).status_code == 200


def test_token_bucket_refills_at_its_rate() -> None:
    from smartrec.keys import ApiKey

    key = ApiKey("k", None, frozenset({"read"}), 0, None, 10.0, "")
    buckets = TokenBuckets(default_rate=0.0, burst=3)
    assert [buckets.take(key, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(key, now=100.0) == pytest.approx(0.1)
    assert buckets.take(key, now=100.1001) == 0.0  # a token back after 1/rate s
    unlimited = ApiKey("u", None, frozenset({"read"}), 0, None, None, "")
    assert all(buckets.take(unlimited, now=100.0) == 0.0 for _ in range(100))


def test_refuses_to_start_without_keys(tmp_path: Path, shared_registry: str) -> None:
    common = {"registry_url": shared_registry, "model_name": "nk_m", "experiment": "nk_e"}
    for settings in (
        Settings(home=tmp_path / "a", host="0.0.0.0", **common),  # auto, not loopback
        Settings(home=tmp_path / "b", auth="required", **common),
    ):
        with (
            pytest.raises(ConfigError, match="smartrec keys create"),
            TestClient(create_app(settings)),
        ):
            pass


def test_auth_off_explicitly_on_a_public_address_is_a_warning(
    tmp_path: Path, shared_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        home=tmp_path,
        host="0.0.0.0",
        auth="off",
        registry_url=shared_registry,
        model_name="off_m",
        experiment="off_e",
        reload_interval_s=0,
        feed_poll_interval_s=0,
    )
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        assert client.get("/v1/popular").status_code == 200
    assert any("SMARTREC_AUTH=off on 0.0.0.0" in r.getMessage() for r in caplog.records)


def test_loopback_default_is_open(client: TestClient) -> None:
    assert client.app.state.settings.auth_required is False  # type: ignore[attr-defined]
    assert client.get("/v1/keys").status_code == 200


def test_cors_preflight_and_headers_on_errors(tmp_path: Path, shared_registry: str) -> None:
    settings = keyed_settings(
        tmp_path,
        registry_url=shared_registry,
        model_name="c_m",
        experiment="c_e",
        cors_origins="https://shop.example",
    )
    tokens, _ = make_keys(settings)
    with TestClient(create_app(settings)) as client:
        origin = {"Origin": "https://shop.example"}
        pre = client.options(
            "/v1/popular",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://shop.example"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        denied = client.get("/v1/popular", headers=origin)
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.get(
            "/v1/popular", headers={"Origin": "https://evil.example", **bearer(tokens["read"])}
        )
        assert "access-control-allow-origin" not in other.headers


def test_feed_lane_and_route_under_auth(tmp_path: Path, shared_registry: str, world: Any) -> None:
    """The lane answers a read key from a feed, and never answers a key without read."""
    settings = keyed_settings(
        tmp_path, registry_url=shared_registry, model_name="fl_m", experiment="fl_e"
    )
    tokens, _ = make_keys(settings)
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(tokens["admin"]))
        client.post("/v1/items", headers=bearer(tokens["ingest"]), json={"items": world.items})
        response = client.post(
            "/v1/events", headers=bearer(tokens["ingest"]), json={"events": world.events}
        )
        assert response.status_code == 202
        train(client, {"ease": {"l2": 50.0}})
        user = world.heaviest_user()
        url = f"/v1/users/{user}/recommendations?n=5"
        read = bearer(tokens["read"])
        first = client.get(url, headers=read)
        second = client.get(url, headers=read)  # from the feed now
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        metrics = client.get("/metrics").text
        assert 'smartrec_feed_lane_requests_total{outcome="answered"}' in metrics
        assert_problem(client.get(url, headers=bearer(tokens["ingest"])), 403)
        assert_problem(client.get(url, headers={"Authorization": ""}), 401)
