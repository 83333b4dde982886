"""Retries, errors and headers against a scripted loopback HTTP server (stdlib ``http.server``):
it can answer 429, 503 and odd bodies on cue, which the real server does not."""

from __future__ import annotations

import asyncio
import json

import pytest

from smartrec.client import (
    ApiError,
    AsyncSmartRec,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    SmartRec,
    Unauthorized,
    UnexpectedResponse,
    WaitTimeout,
)
from tests.client.conftest import Reply, Scripted, problem
from tests.serverproc import free_port

POPULAR: dict[str, object] = {"user_id": None, "item_id": None, "model_version": "1", "items": []}
UNAVAILABLE = Reply(503, problem(503, "Service not ready", "warming up"), {"Retry-After": "1"})


def _client(url: str, **kwargs: object) -> SmartRec:
    return SmartRec(url, backoff=0.01, max_backoff=0.05, **kwargs)  # type: ignore[arg-type]


def test_503_waits_retry_after_then_succeeds(scripted: Scripted) -> None:
    scripted.script(UNAVAILABLE, Reply(200, POPULAR))
    with _client(scripted.url) as client:
        out = client.popular(3)
    assert out.model_version == "1"
    assert [s.path for s in scripted.seen] == ["/v1/popular?n=3"] * 2
    assert scripted.seen[1].at - scripted.seen[0].at >= 0.95


def test_429_waits_retry_after_even_for_a_training_job(scripted: Scripted) -> None:
    limited = Reply(429, problem(429, "Too many requests", "slow down"), {"Retry-After": "1"})
    scripted.script(limited, Reply(202, {"job_id": "j1"}))
    with _client(scripted.url) as client:
        assert client.training.start().job_id == "j1"
    assert len(scripted.seen) == 2
    assert scripted.seen[1].at - scripted.seen[0].at >= 0.95
    assert scripted.seen[0].body == scripted.seen[1].body == b"{}"


def test_503_is_not_retried_for_calls_that_are_not_idempotent(scripted: Scripted) -> None:
    scripted.script(UNAVAILABLE)
    with _client(scripted.url) as client:
        with pytest.raises(ServiceUnavailable) as caught:
            client.training.start({"ease": {}})
        with pytest.raises(ServiceUnavailable):
            client.keys.create(["read"])
    assert len(scripted.seen) == 2
    assert caught.value.retry_after == 1.0
    assert isinstance(caught.value, ServerError)


def test_retries_are_capped(scripted: Scripted) -> None:
    scripted.script(Reply(503, problem(503, "Service unavailable", "busy")))
    client = _client(scripted.url, max_retries=2)
    with client, pytest.raises(ServiceUnavailable) as caught:
        client.users.recommendations("u1")
    assert len(scripted.seen) == 3
    assert caught.value.retry_after is None and caught.value.detail == "busy"


def test_a_retry_after_too_long_to_wait_raises_at_once(scripted: Scripted) -> None:
    scripted.script(Reply(429, problem(429, "Too many requests", "quota"), {"Retry-After": "120"}))
    with _client(scripted.url) as client, pytest.raises(RateLimited) as caught:
        client.popular()
    assert len(scripted.seen) == 1
    assert caught.value.retry_after == 120.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (422, InvalidRequest),
        (500, ServerError),
    ],
)
def test_other_errors_are_typed_and_not_retried(
    scripted: Scripted, status: int, kind: type[ApiError]
) -> None:
    errors = [{"field": "n", "message": "bad"}]
    scripted.script(Reply(status, problem(status, "Some title", "some detail", errors=errors)))
    with _client(scripted.url) as client, pytest.raises(kind) as caught:
        client.items.get("x")
    assert len(scripted.seen) == 1
    error = caught.value
    assert (error.status, error.title, error.detail) == (status, "Some title", "some detail")
    assert error.errors == errors and error.problem["status"] == status


def test_an_error_that_is_not_a_problem_still_raises_typed(scripted: Scripted) -> None:
    scripted.script(Reply(502, "<html>bad gateway</html>", content_type="text/html"))
    with _client(scripted.url) as client, pytest.raises(ServerError) as caught:
        client.popular()
    assert caught.value.status == 502 and caught.value.title == "Bad Gateway"
    assert "bad gateway" in caught.value.detail and caught.value.problem == {}


def test_connection_errors_are_retried_then_raised() -> None:
    client = _client(f"http://127.0.0.1:{free_port()}", max_retries=2)
    with client, pytest.raises(ConnectionFailed) as caught:
        client.popular()
    assert caught.value.__cause__ is not None


def test_the_api_key_is_sent_as_a_bearer_token(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted.script(Reply(200, {"status": "ok"}))
    with _client(scripted.url, api_key="k-explicit") as client:
        client.health()
    monkeypatch.setenv("SMARTREC_API_KEY", "k-env")
    with _client(scripted.url) as client:
        client.health()
    monkeypatch.delenv("SMARTREC_API_KEY")
    with _client(scripted.url) as client:
        client.health()
    auth = [s.headers.get("authorization") for s in scripted.seen]
    assert auth == ["Bearer k-explicit", "Bearer k-env", None]
    assert scripted.seen[0].headers["user-agent"].startswith("smartrec-python/")


def test_paths_are_encoded_under_a_base_path(scripted: Scripted) -> None:
    scripted.script(Reply(200, {"item_id": "a/b c?#%"}), Reply(200, POPULAR))
    with _client(scripted.url + "/proxy") as client:
        assert client.items.get("a/b c?#%").item_id == "a/b c?#%"
        client.items.similar("a/b", n=2, fields=["title", "categories"])
    assert scripted.seen[0].path == "/proxy/v1/items/a%2Fb%20c%3F%23%25"
    assert scripted.seen[1].path == "/proxy/v1/items/a%2Fb/similar?n=2&fields=title%2Ccategories"


def test_recommendation_query_parameters(scripted: Scripted) -> None:
    scripted.script(Reply(200, {**POPULAR, "user_id": "u"}))
    with _client(scripted.url) as client:
        client.users.recommendations("u")
        client.users.recommendations(
            "u",
            n=5,
            exclude_seen=False,
            category="C",
            filter='category == "C"',
            fields="title",
            page_token="tok",
            diversity=0.5,
            max_per_category=2,
            exploration=0.1,
        )
    assert scripted.seen[0].path == "/v1/users/u/recommendations?n=10"
    query = scripted.seen[1].path.split("?", 1)[1]
    assert query == (
        "n=5&exclude_seen=false&category=C&filter=category+%3D%3D+%22C%22&fields=title"
        "&page_token=tok&diversity=0.5&max_per_category=2&exploration=0.1"
    )


def test_wait_gives_up_with_the_last_state(scripted: Scripted) -> None:
    scripted.script(Reply(200, {"job_id": "j", "status": "running"}))
    with _client(scripted.url) as client, pytest.raises(WaitTimeout) as caught:
        client.training.wait("j", timeout=0.3, poll_interval=0.05)
    assert caught.value.job.status == "running"
    assert isinstance(caught.value, TimeoutError)
    assert len(scripted.seen) >= 3


def test_keys_requests(scripted: Scripted) -> None:
    key = {"key_id": "k/1", "scopes": ["read"], "created_at": "2024-05-01T00:00:00Z"}
    revoked = {**key, "revoked_at": "2024-05-02T00:00:00Z"}
    scripted.script(Reply(201, {**key, "token": "t"}), Reply(200, revoked))
    with _client(scripted.url) as client:
        created = client.keys.create(["read"], name="n")
        gone = client.keys.revoke(created.key_id)
    assert created.token == "t"
    assert gone.revoked_at is not None and gone.revoked_at.day == 2
    assert [(s.method, s.path) for s in scripted.seen] == [
        ("POST", "/v1/keys"),
        ("DELETE", "/v1/keys/k%2F1"),
    ]
    assert json.loads(scripted.seen[0].body) == {"scopes": ["read"], "name": "n"}
    assert scripted.seen[0].headers["content-type"] == "application/json"
    assert scripted.seen[1].body == b""


def test_the_async_client_retries_the_same_way(scripted: Scripted) -> None:
    scripted.script(UNAVAILABLE, Reply(200, POPULAR))

    async def main() -> None:
        async with AsyncSmartRec(scripted.url, api_key="k", backoff=0.01) as client:
            out = await client.popular(3)
            assert out.model_version == "1"

    asyncio.run(main())
    assert len(scripted.seen) == 2
    assert scripted.seen[1].at - scripted.seen[0].at >= 0.95
    assert scripted.seen[0].headers["authorization"] == "Bearer k"


def test_an_answer_of_the_wrong_shape_is_a_client_error(scripted: Scripted) -> None:
    scripted.script(Reply(200, {"hello": "world"}))
    client = _client(scripted.url)
    with client, pytest.raises(UnexpectedResponse, match="not a RecommendationsOut"):
        client.popular()
