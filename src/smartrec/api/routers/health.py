"""Liveness, readiness and Prometheus metrics for the load balancer and the scraper."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.api.metrics import Metrics
from smartrec.api.problems import problem, responses
from smartrec.api.strict import StrictRoute
from smartrec.runtime import Runtime

#: Public: the load balancer's probes and the scraper need no key.
router = APIRouter(tags=["health"], route_class=StrictRoute, responses=responses(422))


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=responses(503))
def readyz(rt: RuntimeDep) -> dict[str, object] | JSONResponse:
    if not rt.store.ping():
        return problem(503, "Service not ready", "the database does not answer")
    if not rt.service.ready():
        error = rt.service.registry_error
        if error is not None:  # its text (hosts, paths) is for the log, not for any caller
            kind = error.split(":", 1)[0]
            detail = f"no model is loaded and the model registry cannot be used ({kind})"
        else:
            detail = "no model is loaded and there are no events for the popularity fallback"
        return problem(503, "Service not ready", detail)
    return {
        "status": "ready",
        "model_version": rt.service.model_version,
        "feeds": rt.service.feed_status(),
        "live_stats": rt.service.live_stats_status(),
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
    update_gauges(rt, m)
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)


def update_gauges(rt: Runtime, m: Metrics) -> None:
    """The gauges read from this process's state: at each scrape, and with several workers
    also every few seconds in each worker (the scrape reaches only one of them)."""
    state = rt.service.state
    if state is None:
        m.show_model(None, None)
    else:
        m.show_model(state.version, state.bundle.algorithm)
    m.show_feeds(rt.service.feed_status())
