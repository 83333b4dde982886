"""The app's routes with their full paths. FastAPI >= 0.16x keeps included routers as
branches (``_IncludedRouter``) rather than copying their routes into ``app.routes``; this walks
both shapes, for the 405 ``Allow`` header and the scope table test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from starlette.routing import compile_path


def iter_routes(app: Any) -> Iterator[tuple[str, Any]]:
    """(full path template, route) for every route of the app."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                yield context.path, context.original_route
        elif getattr(route, "path", None) is not None:
            yield route.path, route


@lru_cache(maxsize=256)
def _regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route takes on this request path."""
    methods: set[str] = set()
    for template, route in iter_routes(app):
        found = getattr(route, "methods", None)
        if found and _regex(template).match(path):
            methods |= set(found)
    return sorted(methods)
