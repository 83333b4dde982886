"""The registry seen over HTTP: versions, aliases, metrics, promotion."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from smartrec.api.auth import ADMIN
from smartrec.api.deps import RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.registry.mlflow_registry import CHAMPION

router = APIRouter(
    tags=["models"],
    route_class=StrictRoute,
    dependencies=[ADMIN],
    responses=responses(401, 403, 422, 429),
)


@router.get("/models")
def list_models(rt: RuntimeDep) -> dict[str, Any]:
    versions = rt.registry.list_versions()
    return {
        "model_name": rt.registry.model_name,
        "serving_version": rt.service.model_version,
        "versions": [v.as_dict() for v in versions],
    }


@router.post("/models/{version}/promote", responses=responses(404))
def promote(version: str, rt: RuntimeDep) -> dict[str, Any]:
    """Make a version the champion; this process swaps to it at once, others on their next poll."""
    rt.registry.load(version)  # a version that cannot be loaded must not become the champion
    rt.registry.set_alias(CHAMPION, version)
    rt.service.reload()
    return {"champion": version, "serving_version": rt.service.model_version}
