"""The application factory: ``create_app(settings)``; state is created in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from smartrec import __version__
from smartrec.api import docs, problems
from smartrec.api.accesslog import AccessLog
from smartrec.api.auth import AuthMiddleware
from smartrec.api.fastlane import FeedLane
from smartrec.api.metrics import GAUGE_REFRESH_S, Metrics, Repeating
from smartrec.api.middleware import BodyLimit, MetricsMiddleware
from smartrec.api.routers import catalog, health, ingest, keys, models, recommendations, training
from smartrec.config import Settings
from smartrec.runtime import Runtime
from smartrec.schemas import NO_NUL

DESCRIPTION = """Self-hostable smart recommendation engine.

Errors are RFC 9457 problems (`application/problem+json`). Routes need an API key with the
scope their tag says (`Authorization: Bearer <token>`), unless the server runs with auth off
(the default on a loopback address): `read` for recommendations and read-back, `ingest` for
items, users and events, `admin` for training, models, deletions and keys."""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    access_log = (
        AccessLog(settings.log_format, level=settings.log_level) if settings.access_log else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        rt = runtime or Runtime.build(settings)
        rt.start()
        app.state.runtime = rt
        if access_log is not None:
            access_log.start()
        # Several workers: a scrape reaches one of them, so each keeps its own gauges current.
        gauges = (
            Repeating(lambda: health.update_gauges(rt, metrics), GAUGE_REFRESH_S, "smartrec-gauges")
            if metrics.multiprocess
            else None
        )
        if gauges is not None:
            health.update_gauges(rt, metrics)
            gauges.start()
        try:
            yield
        finally:
            if gauges is not None:
                gauges.stop()
            if access_log is not None:
                access_log.stop()  # writes what is left
            rt.stop()
            metrics.close()

    app = FastAPI(
        title="smartrec",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets below (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    problems.install(app)
    # Order matters: the recommendation routes (``/items/{id}/similar``) before the catalogue's
    # ``/items/{id}``, whose path converter would take "50/similar" as an id.
    for router in (
        ingest.router,
        recommendations.router,
        catalog.router,
        training.router,
        models.router,
        keys.router,
    ):
        app.include_router(router, prefix="/v1")
    app.include_router(health.router)
    docs.install(app)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    if settings.feeds_enabled and settings.feed_lane:
        route = next(
            r
            for r in recommendations.router.routes
            if getattr(r, "path", None) == recommendations.USER_RECOMMENDATIONS
        )
        app.add_middleware(FeedLane, route=route)  # innermost: auth, metrics and limits wrap it
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        AuthMiddleware,
        required=settings.auth_required,
        default_rate=settings.rate_limit_per_key,
        burst=settings.rate_limit_burst,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, access_log=access_log)
    app.state.access_log = access_log
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        # Outermost: preflights need no key, and 401/429 answers carry the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "Location"],
            max_age=600,
        )
    return app


#: Any JSON value whose strings (and keys) hold no NUL: what item and user attributes take.
JSON_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ]
}


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document, plus what the server enforces from its settings (``n`` up to
    ``SMARTREC_MAX_N``) and the problem schema every error answer uses."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problems.Problem.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for sub, schema in components["Problem"].pop("$defs", {}).items():
        components.setdefault(sub, schema)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            # The HTTP server answers 400 before the app for a request it cannot parse.
            operation.setdefault("responses", {})["400"] = {
                "description": "The HTTP request could not be parsed",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}},
                },
            }
            for param in operation.get("parameters", []):
                if param.get("name") == "n" and param.get("in") == "query":
                    param["schema"]["maximum"] = settings.max_n
    session = components.get("SessionIn", {}).get("properties", {}).get("n")
    if session is not None:
        session["maximum"] = settings.max_n
    components["JsonValue"] = JSON_VALUE
    event = components.get("EventIn")
    if event is not None:
        # The configured event types; those whose weight scales by the value need one.
        event["properties"]["type"]["enum"] = sorted(settings.event_weights)
        if settings.value_event_types:
            event["if"] = {
                "properties": {"type": {"enum": sorted(settings.value_event_types)}},
                "required": ["type"],
            }
            event["then"] = {"properties": {"value": {"type": "number"}}, "required": ["value"]}
    app.openapi_schema = doc
    return doc
