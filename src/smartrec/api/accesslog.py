"""One log line per request (logger ``smartrec.access``): method, path, status, duration,
model version and API key id. Pure ASGI, so it costs one log call on the hot path."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartrec.api.auth import KEY

log = logging.getLogger("smartrec.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
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
            ms = (time.perf_counter() - started) * 1000
            runtime = getattr(scope["app"].state, "runtime", None)
            version = runtime.service.model_version if runtime is not None else None
            key = scope.get(KEY)
            path = scope.get("path", "")
            if scope.get("query_string"):
                path += "?" + scope["query_string"].decode("latin-1")
            client = scope.get("client")
            log.info(
                "%s %s %d %.1fms model=%s key=%s",
                scope.get("method", "GET"),
                path,
                status,
                ms,
                version or "-",
                getattr(key, "key_id", None) or "-",
                extra={
                    "http": {
                        "method": scope.get("method", "GET"),
                        "path": path,
                        "status": status,
                        "duration_ms": round(ms, 3),
                        "model_version": version,
                        "key_id": getattr(key, "key_id", None),
                        "client": client[0] if client else None,
                    }
                },
            )
