"""The app's routes with their full paths. FastAPI >= 0.16x keeps included routers as
branches (``_IncludedRouter``) rather than copying their routes into ``app.routes``; this walks
both shapes, for the 405 ``Allow`` header and the scope table test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from starlette.routing import Mount, compile_path

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute


def iter_routes(app: Starlette) -> Iterator[tuple[str, BaseRoute]]:
    """(full path template, route) for every route of the app."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                yield context.path, context.original_route
        elif (path := getattr(route, "path", None)) is not None:
            yield path, route


@lru_cache(maxsize=256)
def _regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(app: Starlette, path: str) -> list[str]:
    """The methods of the resource this path names: of the routes whose template matches, the
    most specific (most literal characters). ``/v1/users/u1/events`` names a user's events,
    though ``/v1/users/{user_id:path}`` would also match it with the id ``u1/events``."""
    best = -1
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Mount) and path.startswith(route.path.rstrip("/") + "/"):
            return ["GET", "HEAD"]  # static files
    for template, route in iter_routes(app):
        found = getattr(route, "methods", None)
        if not found or not _regex(template).match(path):
            continue
        literal = len(re.sub(r"\{[^}]*\}", "", template))
        if literal > best:
            best, methods = literal, set(found)
        elif literal == best:
            methods |= set(found)
    return sorted(methods)
