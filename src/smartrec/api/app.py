"""The application factory: ``create_app(settings)``; state is created in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from smartrec import __version__
from smartrec.api import problems
from smartrec.api.fastlane import FeedLane
from smartrec.api.metrics import Metrics
from smartrec.api.middleware import BodyLimit, MetricsMiddleware
from smartrec.api.routers import health, ingest, models, recommendations, training
from smartrec.api.runtime import Runtime
from smartrec.config import Settings


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        rt = runtime or Runtime.build(settings)
        rt.start()
        app.state.runtime = rt
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(
        title="smartrec",
        version=__version__,
        description="Self-hostable smart recommendation engine. Errors are RFC 9457 problems.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    problems.install(app)
    for router in (ingest.router, recommendations.router, training.router, models.router):
        app.include_router(router, prefix="/v1")
    app.include_router(health.router)
    if settings.feeds_enabled and settings.feed_lane:
        route = next(
            r
            for r in recommendations.router.routes
            if getattr(r, "path", None) == recommendations.USER_RECOMMENDATIONS
        )
        app.add_middleware(FeedLane, route=route)  # innermost: metrics and body limit wrap it
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
