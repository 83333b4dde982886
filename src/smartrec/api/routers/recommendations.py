"""Reading side: personalised, similar, popular, session and re-ranking."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from smartrec.api.auth import READ
from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.api.fastlane import FEED_TRIED
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.errors import ValidationFailed
from smartrec.schemas import ITEM_FIELDS, RankingIn, RecommendationsOut, SessionIn
from smartrec.serving import Recommendation, Results
from smartrec.serving.state import WINDOW_PATTERN

router = APIRouter(
    tags=["recommendations"],
    route_class=StrictRoute,
    dependencies=[READ],
    responses=responses(401, 403, 422, 429),
)

N = Annotated[int, Query(ge=1, description="How many items to return")]
#: An id in the URL (routes use the ``path`` converter: ids may hold "/", sent as %2F). NUL
#: cannot be stored nor looked up in PostgreSQL text (a 500 otherwise).
PathId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
Category = Annotated[str | None, Query(max_length=256, description="Only items of this category")]


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


class _ItemJson(TypedDict, total=False):
    item_id: str
    score: float
    reasons: list[dict[str, Any]]
    title: str | None
    categories: list[str]
    attributes: dict[str, Any]


class _AnswerJson(TypedDict, total=False):
    """:class:`RecommendationsOut` as plain dicts (same fields, same order, same JSON)."""

    user_id: str | None
    item_id: str | None
    model_version: str | None
    items: list[_ItemJson]
    next_page_token: str | None


_ANSWER = TypeAdapter(_AnswerJson)


def answer_body(
    items: list[Recommendation],
    model_version: str | None,
    user_id: str | None = None,
    item_id: str | None = None,
    next_page_token: str | None = None,
    details: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    """The JSON of a :class:`RecommendationsOut`, serialised once in pydantic's Rust core from
    plain dicts: returning the model would make FastAPI dump it, validate the dump and
    serialise it again, and building the models costs more than the rules behind them (the
    service's results are typed already)."""
    return _ANSWER.dump_json(
        {
            "user_id": user_id,
            "item_id": item_id,
            "model_version": model_version,
            "items": [_item_json(r, details) for r in items],
            "next_page_token": next_page_token,
        }
    )


def _item_json(r: Recommendation, details: dict[str, dict[str, Any]] | None) -> _ItemJson:
    out: _ItemJson = {"item_id": r.item_id, "score": r.score, "reasons": r.reasons}
    if details:
        out.update(details.get(r.item_id, {}))  # type: ignore[typeddict-item]
    return out


def _answer(results: Results, rt: Any = None, fields: str | None = None, **answer: Any) -> Response:
    details = item_details(rt, fields, results) if fields else None
    body = answer_body(results.items, results.model_version, details=details, **answer)
    return Response(content=body, media_type="application/json")


def source_of(results: Results) -> str:
    if not results.items:
        return "empty"
    return (
        str(results.items[0].reasons[0].get("kind", "model"))
        if results.items[0].reasons
        else "model"
    )


USER_RECOMMENDATIONS = "/users/{user_id:path}/recommendations"


@router.get(USER_RECOMMENDATIONS, response_model=RecommendationsOut)
async def user_recommendations(
    request: Request,
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
            description="An expression of the filter language (docs: filters), e.g. "
            'category in ["Comedy","Drama"] and attributes.release_year >= 1990',
            # Not a regular language: a named format (fuzzers are given its grammar).
            json_schema_extra={"format": "smartrec-filter"},
        ),
    ] = None,
    page_token: Annotated[
        str | None,
        Query(
            max_length=16_384,
            description="next_page_token of the previous page (opaque: the items shown so far)",
            json_schema_extra={"format": "smartrec-page-token"},
        ),
    ] = None,
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
    fields: Fields = None,
) -> Response:
    _check_n(n, rt.settings.max_n)
    args = (user_id, n, exclude_seen, category, page_token)
    rules: dict[str, Any] = {"filter": filter, "diversity": diversity}
    rules |= {"max_per_category": max_per_category, "exploration": exploration}
    # A fresh feed answers on the event loop (rules only, no I/O, well under a millisecond);
    # anything that reads the database or runs the full pipeline goes to the thread pool. The
    # feed lane (api/fastlane.py) answers most such requests before this route runs; when it
    # asked already and the feed could not answer, it is not asked twice.
    tried = request.scope.get(FEED_TRIED, False)
    fast = None if tried else rt.service.recommend_fast(*args, **rules)
    results: Results = (
        fast
        if fast is not None
        else await run_in_threadpool(partial(rt.service.recommend, *args, **rules))
    )
    metrics.recommendations.labels("user", source_of(results)).inc()
    if fields:
        return await run_in_threadpool(
            partial(
                _answer,
                results,
                rt,
                fields,
                user_id=user_id,
                next_page_token=results.next_page_token,
            )
        )
    return _answer(results, user_id=user_id, next_page_token=results.next_page_token)


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
    results = rt.service.similar(item_id, n, category)
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
    results = rt.service.popular(n, category, window)
    metrics.recommendations.labels("popular", source_of(results)).inc()
    return _answer(results, rt, fields)


@router.post("/sessions/recommendations", response_model=RecommendationsOut)
def session_recommendations(
    body: SessionIn, rt: RuntimeDep, metrics: MetricsDep, fields: Fields = None
) -> Response:
    _check_n(body.n, rt.settings.max_n)
    results = rt.service.session(body.item_ids, body.n)
    metrics.recommendations.labels("session", source_of(results)).inc()
    return _answer(results, rt, fields)


@router.post("/rankings", response_model=RecommendationsOut)
def rankings(
    body: RankingIn, rt: RuntimeDep, metrics: MetricsDep, fields: Fields = None
) -> Response:
    results = rt.service.rank(body.user_id, body.item_ids)
    metrics.recommendations.labels("ranking", source_of(results)).inc()
    return _answer(results, rt, fields, user_id=body.user_id)
