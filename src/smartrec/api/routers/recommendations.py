"""Reading side: personalised, similar, popular, session and re-ranking."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from smartrec.api.auth import READ
from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.api.wire import (
    FEED_TRIED,
    PathId,
    answer_body,
    param,
    recommend_request,
    source_of,
)
from smartrec.errors import ValidationFailed
from smartrec.schemas import ITEM_FIELDS, RankingIn, RecommendationsOut, SessionIn
from smartrec.serving import (
    PopularRequest,
    RankRequest,
    RecommendRequest,
    Results,
    SessionRequest,
    SimilarRequest,
)
from smartrec.serving.state import WINDOW_PATTERN

router = APIRouter(
    tags=["recommendations"],
    route_class=StrictRoute,
    dependencies=[READ],
    responses=responses(401, 403, 422, 429),
)

N = Annotated[int, Query(ge=param("n").ge, description=param("n").description)]
Category = Annotated[
    str | None,
    Query(max_length=param("category").max_length, description=param("category").description),
]


_FIELD = "(" + "|".join(ITEM_FIELDS) + ")"
Fields = Annotated[
    str | None,
    Query(
        pattern=rf"^{_FIELD}(,{_FIELD})*$",
        max_length=64,
        description="Item fields each answer item carries, comma-separated: "
        + ", ".join(ITEM_FIELDS),
    ),
]


def _check_n(n: int, limit: int) -> None:
    if n > limit:
        raise ValidationFailed(f"n={n} is over the limit of {limit} (SMARTREC_MAX_N)", field="n")


def item_details(rt: Any, fields: str | None, results: Results) -> dict[str, dict[str, Any]]:
    """The asked-for catalogue fields of each answered item (read fresh from the catalogue)."""
    if not fields or not results.items:
        return {}
    wanted = [f for f in ITEM_FIELDS if f in fields.split(",")]
    rows = rt.store.catalog([r.item_id for r in results.items])
    out: dict[str, dict[str, Any]] = {}
    for item_id, row in rows.items():
        values = {"title": row.title, "categories": row.categories, "attributes": row.attributes}
        out[item_id] = {f: values[f] for f in wanted}
    return out


def _answer(results: Results, rt: Any = None, fields: str | None = None, **answer: Any) -> Response:
    details = item_details(rt, fields, results) if fields else None
    body = answer_body(results.items, results.model_version, details=details, **answer)
    return Response(content=body, media_type="application/json")


USER_RECOMMENDATIONS = "/users/{user_id:path}/recommendations"


def _fields(fields: Fields = None) -> str | None:
    """``fields`` as a dependency, so that it follows the request's parameters in the
    OpenAPI document (a route's own parameters are listed before its dependencies')."""
    return fields


@router.get(USER_RECOMMENDATIONS, response_model=RecommendationsOut)
async def user_recommendations(
    request: Request,
    rt: RuntimeDep,
    metrics: MetricsDep,
    asked: Annotated[RecommendRequest, Depends(recommend_request)],
    fields: Annotated[str | None, Depends(_fields)],
) -> Response:
    _check_n(asked.n, rt.settings.max_n)
    # A fresh feed answers on the event loop (rules only, no I/O, well under a millisecond);
    # anything that reads the database or runs the full pipeline goes to the thread pool. The
    # feed lane (api/fastlane.py) answers most such requests before this route runs; when it
    # asked already and the feed could not answer, it is not asked twice.
    tried = request.scope.get(FEED_TRIED, False)
    fast = None if tried else rt.service.recommend_fast(asked)
    results: Results = (
        fast if fast is not None else await run_in_threadpool(rt.service.recommend, asked)
    )
    metrics.recommendations.labels("user", source_of(results)).inc()
    answer = {"user_id": asked.user_id, "next_page_token": results.next_page_token}
    if fields:
        return await run_in_threadpool(partial(_answer, results, rt, fields, **answer))
    return _answer(results, **answer)


@router.get(
    "/items/{item_id:path}/similar", response_model=RecommendationsOut, responses=responses(404)
)
def similar_items(
    rt: RuntimeDep,
    metrics: MetricsDep,
    item_id: PathId,
    n: N = 10,
    category: Category = None,
    fields: Fields = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    results = rt.service.similar(SimilarRequest(item_id, n, category))
    metrics.recommendations.labels("similar", source_of(results)).inc()
    return _answer(results, rt, fields, item_id=item_id)


@router.get("/popular", response_model=RecommendationsOut)
def popular(
    rt: RuntimeDep,
    metrics: MetricsDep,
    n: N = 10,
    category: Category = None,
    window: Annotated[
        str | None, Query(pattern=WINDOW_PATTERN, description="e.g. 24h, 7d, 2w")
    ] = None,
    fields: Fields = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    results = rt.service.popular(PopularRequest(n, category, window))
    metrics.recommendations.labels("popular", source_of(results)).inc()
    return _answer(results, rt, fields)


@router.post("/sessions/recommendations", response_model=RecommendationsOut)
def session_recommendations(
    body: SessionIn, rt: RuntimeDep, metrics: MetricsDep, fields: Fields = None
) -> Response:
    _check_n(body.n, rt.settings.max_n)
    results = rt.service.session(SessionRequest(body.item_ids, body.n))
    metrics.recommendations.labels("session", source_of(results)).inc()
    return _answer(results, rt, fields)


@router.post("/rankings", response_model=RecommendationsOut)
def rankings(
    body: RankingIn, rt: RuntimeDep, metrics: MetricsDep, fields: Fields = None
) -> Response:
    results = rt.service.rank(RankRequest(body.user_id, body.item_ids))
    metrics.recommendations.labels("ranking", source_of(results)).inc()
    return _answer(results, rt, fields, user_id=body.user_id)
