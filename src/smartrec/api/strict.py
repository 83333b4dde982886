"""Strict requests: every route refuses what it would otherwise misread or silently ignore.

* an unknown query parameter (``?bogus=1``, a misspelt ``exlude_seen``) -> 422 naming it and
  the parameters the endpoint accepts;
* a body that is not JSON-typed -> 415 saying which content type to send;
* a body that is not valid JSON -> 422 giving the line and column of the error.

Installed as the ``route_class`` of every router, so a new route is strict without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from functools import cached_property
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from smartrec.errors import UnsupportedMediaType, ValidationFailed

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class StrictRoute(APIRoute):
    @cached_property
    def query_names(self) -> frozenset[str]:
        """The query parameters this route reads, its dependencies' included (computed once,
        at the first request: the dependant tree is complete by then)."""
        found: set[str] = set()
        stack = [self.dependant]
        while stack:
            dependant = stack.pop()
            found.update(p.alias for p in dependant.query_params)
            stack.extend(dependant.dependencies)
        return frozenset(found)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def strict(request: Request) -> Response:
            self._check_query(request)
            if has_body:
                await _check_body(request)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if any(e.get("type") == "json_invalid" for e in exc.errors()):
                    raise _json_error(await request.body()) from exc
                raise

        return strict

    def _check_query(self, request: Request) -> None:
        allowed = self.query_names
        unknown = sorted({k for k in request.query_params if k not in allowed})
        if unknown:
            accepts = ", ".join(sorted(allowed)) or "none"
            raise ValidationFailed(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(u) for u in unknown)}; this endpoint accepts: {accepts}",
                field=unknown[0],
            )


async def _check_body(request: Request) -> None:
    body = await request.body()
    if not body:
        return
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        sent = f"'{content_type}'" if content_type else "no Content-Type"
        raise UnsupportedMediaType(
            f"the body was sent with {sent}: send JSON with 'Content-Type: application/json'"
        )


def _json_error(body: bytes) -> ValidationFailed:
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return ValidationFailed(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno} (character {exc.pos})",
            field="body",
        )
    except UnicodeDecodeError:
        return ValidationFailed("the request body is not UTF-8 encoded JSON", field="body")
    return ValidationFailed("the request body is not valid JSON", field="body")
