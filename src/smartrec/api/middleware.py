"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): body limit, metrics
and the access log."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartrec.api.accesslog import AccessLog
from smartrec.api.metrics import Metrics
from smartrec.api.problems import send_problem

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


class BodyLimit:
    """413 before parsing when a body is larger than the limit (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        await send_problem(
            send,
            413,
            "Payload too large",
            f"request body over {self.max_bytes} bytes (SMARTREC_MAX_BODY_BYTES): "
            "split it into smaller batches",
            limit_bytes=self.max_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        started = False
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if too_large:
                # The framework may catch _TooLarge while parsing and answer 400 "error parsing
                # the body": answer the 413 instead and drop that response.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)


class _TooLarge(Exception):
    pass


class MetricsMiddleware:
    """Times each request once for the Prometheus histogram and, with an access log, its line
    (``api/accesslog.py``: recorded here, written by a background thread)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: AccessLog | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(scope.get("method", "GET"), route_label(scope), status, seconds)
            if self.access_log is not None and self.access_log.wanted:
                self.access_log.record(scope, status, seconds)


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def route_label(scope: Scope) -> str:
    """The matched route's template with its router prefix: ``/v1/users/{user_id}/...``.

    FastAPI >= 0.16x puts the route *inside* an included router in ``scope["route"]``, whose
    ``path`` lacks the ``include_router`` prefix; the prefix is what the request path holds
    before the rendered template.
    """
    route: BaseRoute | None = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return "unmatched"
    params = scope.get("path_params") or {}
    rendered = _PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), template)
    path = str(scope.get("path", ""))
    if rendered != path and path.endswith(rendered):
        return path[: -len(rendered)] + template
    return str(template)
