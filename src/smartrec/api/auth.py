"""API-key authentication (pure ASGI, before routing) and per-route scope checks.

The middleware answers who is calling: it reads ``Authorization: Bearer <token>``, verifies the
key (cached, constant-time), applies the key's rate limit and puts the key in the ASGI scope;
401 and 429 are answered before any routing or body parsing. Each route then declares the scope
it needs with :func:`requires` (403 when the key lacks it); ``tests/api/test_auth.py`` fails for
a route that declares none. With auth off every request passes as :data:`OPEN`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from fastapi import Depends, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from smartrec.api.problems import send_problem
from smartrec.errors import Forbidden
from smartrec.keys import ApiKey

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

log = logging.getLogger(__name__)

#: Where the verified key travels in the ASGI scope.
KEY = "smartrec.api_key"
#: Paths anyone may read: probes, metrics, the API's own documentation.
PUBLIC = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
PUBLIC_PREFIXES = ("/static/",)


class _Open:
    """The caller when auth is off: every scope."""

    scopes = frozenset({"read", "ingest", "admin"})
    key_id = None


OPEN = _Open()
_bearer = HTTPBearer(auto_error=False, description="An API key: `smartrec keys create`")


def requires(scope: str) -> params.Depends:
    """A route dependency: the caller's key must hold ``scope`` (403 otherwise). It also puts
    the bearer scheme in the OpenAPI document, so Swagger UI offers "Authorize"."""

    async def check(
        request: Request, _token: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> None:
        key = request.scope.get(KEY, OPEN)
        if scope not in key.scopes:
            have = ", ".join(sorted(key.scopes)) or "none"
            raise Forbidden(f"this API key lacks the {scope!r} scope (it has: {have})")

    check.scope = scope  # type: ignore[attr-defined]
    return Depends(check)


READ = requires("read")
INGEST = requires("ingest")
ADMIN = requires("admin")


def scope_of(route: BaseRoute) -> str | None:
    """The scope a route declared with :func:`requires` (None: it declared none)."""
    for dep in getattr(route, "dependencies", []) or []:
        scope = getattr(dep.dependency, "scope", None)
        if scope is not None:
            return str(scope)
    return None


class TokenBuckets:
    """One token bucket per key, in this process (runs on the event loop: no lock needed)."""

    def __init__(self, default_rate: float, burst: int) -> None:
        self.default_rate = default_rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)

    def take(self, key: ApiKey, now: float | None = None) -> float:
        """0.0 when the request may go, else the seconds until a token is there."""
        rate = key.rate_limit if key.rate_limit is not None else self.default_rate
        if rate <= 0:
            return 0.0
        size = float(self.burst or max(1.0, 2.0 * rate))
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key.key_id, (size, now))
        tokens = min(size, tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key.key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key.key_id] = (tokens, now)
        return (1.0 - tokens) / rate


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, required: bool, default_rate: float = 0.0, burst: int = 0
    ) -> None:
        self.app = app
        self.required = required
        self.buckets = TokenBuckets(default_rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.required:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # behind a path prefix (uvicorn --root-path)
            path = path[len(root) :]
        if path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            await send_problem(
                send, 401, "Unauthorized", _MISSING, [(b"www-authenticate", b"Bearer")]
            )
            return
        keys = scope["app"].state.runtime.keys
        key = keys.cached(token)
        if key is False:
            import anyio.to_thread

            key = await anyio.to_thread.run_sync(keys.verify, token)
        if key is None:
            await send_problem(
                send,
                401,
                "Unauthorized",
                "the API key is unknown or revoked",
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
            return
        wait = self.buckets.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await send_problem(
                send,
                429,
                "Too many requests",
                f"the rate limit of this API key is reached: retry in {seconds} s",
                [(b"retry-after", str(seconds).encode())],
            )
            return
        scope[KEY] = key
        await self.app(scope, receive, send)


_MISSING = (
    "this server requires an API key: send 'Authorization: Bearer <token>' "
    "(create one with `smartrec keys create --scope read`)"
)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None
