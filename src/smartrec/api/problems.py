"""RFC 9457 problem+json responses for every error path."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from smartrec.errors import SmartrecError
from smartrec.ingest import BatchInvalid

if TYPE_CHECKING:
    from starlette.types import Send

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class FieldProblem(BaseModel):
    field: str
    message: str
    #: The row of a batch the error is in.
    index: int | None = None


class Problem(BaseModel):
    """An RFC 9457 problem: every error answer of the API."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


_DESCRIPTIONS = {
    400: "Bad request",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope this endpoint needs",
    404: "Not found",
    405: "Method not allowed (the Allow header lists the allowed ones)",
    409: "Conflict",
    413: "The body or the batch is over the limit",
    415: "The body is not JSON",
    422: "Invalid request: the problem names each bad field (and row)",
    429: "The API key's rate limit is reached: retry after Retry-After seconds",
    500: "Internal error (logged)",
    503: "Not ready, or a backend is down: retry later",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def problem_response(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        entry["headers"] = _RETRY_AFTER
    return entry


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's problem answers (the document declares them all)."""
    return {status: problem_response(status) for status in statuses}


def problem_body(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The RFC 9457 body every error answer of the API carries."""
    return {
        "type": f"https://smartrec.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> None:
    """Answer with a problem straight from pure-ASGI middleware (before FastAPI's handlers)."""
    body = json.dumps(problem_body(status, title, detail, **extra)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def problem(
    status: int,
    title: str,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, title, detail)
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _location(loc: tuple[int | str, ...]) -> tuple[int | None, str]:
    """('body', 'events', 3, 'user_id') -> (3, 'events[3].user_id')."""
    parts = [p for p in loc if p not in ("body", "query", "path")]
    index = next((p for p in parts if isinstance(p, int)), None)
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return index, text or ".".join(str(p) for p in loc)


def _allowed(request: Request) -> str:
    """Every method some route takes on this path (Starlette names only the first route's)."""
    from smartrec.api.routes import allowed_methods

    return ", ".join(allowed_methods(request.app, request.url.path))


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
        retry = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(int(retry))} if retry else None
        return problem(
            exc.status, exc.title, str(exc) or exc.title, request, headers=headers, **extra
        )

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
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = _allowed(request)
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = allow
            detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allow}"
        return problem(
            exc.status_code, titles.get(exc.status_code, "Error"), detail, request, headers=headers
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "Internal error", "an unexpected error occurred; it was logged", request
        )
