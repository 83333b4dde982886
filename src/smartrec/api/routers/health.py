"""Liveness, readiness and Prometheus metrics for the load balancer and the scraper."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.api.problems import problem, responses
from smartrec.api.strict import StrictRoute

#: Public: the load balancer's probes and the scraper need no key.
router = APIRouter(tags=["health"], route_class=StrictRoute, responses=responses(422))


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=responses(503))
def readyz(rt: RuntimeDep) -> Any:
    if not rt.store.ping():
        return problem(503, "Service not ready", "the database does not answer")
    if not rt.service.ready():
        return problem(
            503,
            "Service not ready",
            "no model is loaded and there are no events for the popularity fallback",
        )
    return {
        "status": "ready",
        "model_version": rt.service.model_version,
        "feeds": rt.service.feed_status(),
    }


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(rt: RuntimeDep, m: MetricsDep) -> Response:
    m.model_info.clear()
    state = rt.service.state
    if state is not None:
        m.model_info.labels(state.version, state.bundle.algorithm).set(1)
    feeds = rt.service.feed_status()
    for what in ("cached", "hits", "misses"):
        m.feeds.labels(what).set(feeds[what])
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
