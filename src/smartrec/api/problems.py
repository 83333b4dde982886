"""RFC 9457 problem+json responses for every error path."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smartrec.errors import SmartrecError
from smartrec.ingest import BatchInvalid

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(
    status: int, title: str, detail: str, request: Request | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://smartrec.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _location(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    """('body', 'events', 3, 'user_id') -> (3, 'events[3].user_id')."""
    parts = [p for p in loc if p not in ("body", "query", "path")]
    index = next((p for p in parts if isinstance(p, int)), None)
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return index, text or ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            index, where = _location(tuple(err.get("loc", ())))
            entry: dict[str, Any] = {"field": where, "message": err.get("msg", "invalid")}
            if index is not None:
                entry["index"] = index
            errors.append(entry)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        detail = f"{first['field']}: {first['message']}{more}"
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            detail = "the request body is not valid JSON"
        return problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(BatchInvalid)
    async def _batch(request: Request, exc: BatchInvalid) -> JSONResponse:
        errors = [
            {**e.as_dict(), "field": f"{exc.collection}[{e.index}].{e.field}"} for e in exc.errors
        ]
        return problem(exc.status, exc.title, str(exc), request, errors=errors)

    @app.exception_handler(SmartrecError)
    async def _smartrec(request: Request, exc: SmartrecError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if exc.field:
            extra["errors"] = [{"field": exc.field, "message": str(exc)}]
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return problem(exc.status, exc.title, str(exc) or exc.title, request, **extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            400: "Bad request",
            404: "Not found",
            405: "Method not allowed",
            413: "Payload too large",
        }
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), detail, request)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "Internal error", "an unexpected error occurred; it was logged", request
        )
