"""Training jobs run in the background; their status is durable in the database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from smartrec.api.auth import ADMIN
from smartrec.api.deps import RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.errors import ValidationFailed
from smartrec.models import algorithm_names, check_params, integral_params
from smartrec.schemas import TrainingJobCreated, TrainingJobIn, TrainingJobOut

router = APIRouter(
    tags=["training"],
    route_class=StrictRoute,
    dependencies=[ADMIN],
    responses=responses(401, 403, 422, 429),
)


@router.post(
    "/training-jobs",
    response_model=TrainingJobCreated,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(415),
)
def create_job(
    rt: RuntimeDep, response: Response, body: TrainingJobIn | None = None
) -> TrainingJobCreated:
    pipeline = body.pipeline if body else None
    if pipeline is not None:
        unknown = sorted(set(pipeline) - set(algorithm_names()))
        if unknown:
            raise ValidationFailed(
                f"unknown algorithm(s) {unknown}; known: {', '.join(algorithm_names())}",
                field="pipeline",
            )
        if not pipeline:
            raise ValidationFailed("pipeline names no algorithm", field="pipeline")
        for name, params in pipeline.items():
            for param, message in check_params(name, params):
                raise ValidationFailed(message, field=f"pipeline.{name}.{param}")
        pipeline = {name: integral_params(name, params) for name, params in pipeline.items()}
    request: dict[str, Any] = {"pipeline": pipeline}
    if body is not None and body.tune_budget_s:
        request["tune_budget_s"] = body.tune_budget_s
    job_id = rt.jobs.submit(request)
    response.headers["Location"] = f"/v1/training-jobs/{job_id}"
    return TrainingJobCreated(job_id=job_id)


@router.get("/training-jobs/{job_id}", response_model=TrainingJobOut, responses=responses(404))
def get_job(job_id: str, rt: RuntimeDep) -> TrainingJobOut:
    job = rt.jobs.get(job_id)
    return TrainingJobOut(**{k: v for k, v in job.items() if k in TrainingJobOut.model_fields})
