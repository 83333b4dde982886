"""Dependency aliases (``Annotated``) so routers stay short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from smartrec.api.metrics import Metrics
from smartrec.runtime import Runtime


# Async on purpose: FastAPI runs a plain-def dependency in the thread pool, a hop per request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
