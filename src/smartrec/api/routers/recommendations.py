"""Reading side: personalised, similar, popular, session and re-ranking."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.errors import ValidationFailed
from smartrec.schemas import RankingIn, RecommendationsOut, RecommendedItem, SessionIn
from smartrec.serving import Results

router = APIRouter(tags=["recommendations"])

N = Annotated[int, Query(ge=1, description="How many items to return")]
#: An id in the URL (routes use the ``path`` converter: ids may hold "/", sent as %2F). NUL
#: cannot be stored nor looked up in PostgreSQL text (a 500 otherwise).
PathId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
Category = Annotated[str | None, Query(max_length=256, description="Only items of this category")]


def _check_n(n: int, limit: int) -> None:
    if n > limit:
        raise ValidationFailed(f"n={n} is over the limit of {limit} (SMARTREC_MAX_N)", field="n")


def _answer(**fields: Any) -> Response:
    """Serialise once, in pydantic's Rust core: returning the model would make FastAPI dump it,
    validate the dump against the response model and serialise it again. Built without
    validation: the service's results are typed already (a tenth of the request's time)."""
    body = RecommendationsOut.model_construct(**fields).model_dump_json()
    return Response(content=body, media_type="application/json")


def _items(results: Results) -> list[RecommendedItem]:
    return [
        RecommendedItem.model_construct(item_id=r.item_id, score=r.score, reasons=r.reasons)
        for r in results.items
    ]


def _source(results: Results) -> str:
    if not results.items:
        return "empty"
    return (
        str(results.items[0].reasons[0].get("kind", "model"))
        if results.items[0].reasons
        else "model"
    )


@router.get("/users/{user_id:path}/recommendations", response_model=RecommendationsOut)
async def user_recommendations(
    rt: RuntimeDep,
    metrics: MetricsDep,
    user_id: PathId,
    n: N = 10,
    exclude_seen: bool = True,
    category: Category = None,
    filter: Annotated[
        str | None,
        Query(
            max_length=4096,
            description='e.g. category in ["Comedy","Drama"] and attributes.release_year >= 1990',
        ),
    ] = None,
    page_token: Annotated[str | None, Query(max_length=16_384)] = None,
    diversity: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="MMR trade-off: 1 = relevance only, lower = varied"),
    ] = None,
    max_per_category: Annotated[
        int | None, Query(ge=1, le=1000, description="At most this many items per category")
    ] = None,
    exploration: Annotated[
        float | None, Query(ge=0.0, le=0.5, description="Share of the page for new items")
    ] = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    args = (user_id, n, exclude_seen, category, page_token)
    rules: dict[str, Any] = {"filter": filter, "diversity": diversity}
    rules |= {"max_per_category": max_per_category, "exploration": exploration}
    # A fresh feed answers on the event loop (rules only, no I/O, well under a millisecond);
    # anything that reads the database or runs the full pipeline goes to the thread pool.
    fast = rt.service.recommend_fast(*args, **rules)
    results: Results = (
        fast
        if fast is not None
        else await run_in_threadpool(partial(rt.service.recommend, *args, **rules))
    )
    metrics.recommendations.labels("user", _source(results)).inc()
    return _answer(
        user_id=user_id,
        model_version=results.model_version,
        items=_items(results),
        next_page_token=results.next_page_token,
    )


@router.get("/items/{item_id:path}/similar", response_model=RecommendationsOut)
def similar_items(
    rt: RuntimeDep,
    metrics: MetricsDep,
    item_id: PathId,
    n: N = 10,
    category: Category = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    results = rt.service.similar(item_id, n, category)
    metrics.recommendations.labels("similar", _source(results)).inc()
    return _answer(item_id=item_id, model_version=results.model_version, items=_items(results))


@router.get("/popular", response_model=RecommendationsOut)
def popular(
    rt: RuntimeDep,
    metrics: MetricsDep,
    n: N = 10,
    category: Category = None,
    window: Annotated[str | None, Query(max_length=32, description="e.g. 24h, 7d, 2w")] = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    results = rt.service.popular(n, category, window)
    metrics.recommendations.labels("popular", _source(results)).inc()
    return _answer(model_version=results.model_version, items=_items(results))


@router.post("/sessions/recommendations", response_model=RecommendationsOut)
def session_recommendations(body: SessionIn, rt: RuntimeDep, metrics: MetricsDep) -> Response:
    _check_n(body.n, rt.settings.max_n)
    results = rt.service.session(body.item_ids, body.n)
    metrics.recommendations.labels("session", _source(results)).inc()
    return _answer(model_version=results.model_version, items=_items(results))


@router.post("/rankings", response_model=RecommendationsOut)
def rankings(body: RankingIn, rt: RuntimeDep, metrics: MetricsDep) -> Response:
    results = rt.service.rank(body.user_id, body.item_ids)
    metrics.recommendations.labels("ranking", _source(results)).inc()
    return _answer(user_id=body.user_id, model_version=results.model_version, items=_items(results))
