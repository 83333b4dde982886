"""The recommendation routes on the wire: one table of query parameters, and the answer's JSON.

``GET /v1/users/{id}/recommendations`` is read in two places: by its FastAPI route, which
validates and documents it, and by the feed lane (``fastlane.py``), which answers from a fresh
feed before FastAPI runs. Both read the parameter names, types and limits from
:data:`RECOMMEND_PARAMS` and build the same :class:`RecommendRequest`; both serialise with
:func:`answer_body`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from smartrec.serving import Recommendation, RecommendRequest, Results

#: Set in the scope when the lane asked the service and the feed could not answer.
FEED_TRIED = "smartrec.feed_tried"
#: The longest id in a URL.
MAX_ID = 256
#: An id in the URL (routes use the ``path`` converter: ids may hold "/", sent as %2F). NUL
#: cannot be stored nor looked up in PostgreSQL text (a 500 otherwise).
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00]+$")]

_INT = re.compile(r"[1-9][0-9]{0,6}")
_UNIT = re.compile(r"[01](\.[0-9]{1,17})?")
_BOOL = {"true": True, "false": False}


@dataclass(frozen=True)
class Param:
    """One query parameter: its type, limits and documentation. The lane reads a value only in
    its plain form (``n=10``, ``diversity=0.7``, ``exclude_seen=true``) and within the limits;
    anything else is FastAPI's to validate."""

    name: str
    kind: type  # int, float, bool or str
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    max_length: int | None = None
    format: str | None = None  # a named format of the OpenAPI document

    def read(self, value: str) -> int | float | bool | str | None:
        """The value as the route would read it, or None when in doubt."""
        if self.kind is str:
            return value if self.max_length is None or len(value) <= self.max_length else None
        if self.kind is bool:
            return _BOOL.get(value)
        pattern = _INT if self.kind is int else _UNIT  # plain digits; no sign, no exponent
        if not pattern.fullmatch(value):
            return None
        number = int(value) if self.kind is int else float(value)
        if (self.ge is not None and number < self.ge) or (self.le is not None and number > self.le):
            return None
        return number


#: The query parameters of ``GET /v1/users/{id}/recommendations`` (in the OpenAPI order);
#: the names are :class:`RecommendRequest`'s fields, and so are the defaults.
RECOMMEND_PARAMS: tuple[Param, ...] = (
    Param("n", int, "How many items to return", ge=1),
    Param("exclude_seen", bool),
    Param("category", str, "Only items of this category", max_length=256),
    Param(
        "filter",
        str,
        "An expression of the filter language (docs: filters), e.g. "
        'category in ["Comedy","Drama"] and attributes.release_year >= 1990',
        max_length=4096,
        # Not a regular language: a named format (fuzzers are given its grammar).
        format="smartrec-filter",
    ),
    Param(
        "page_token",
        str,
        "next_page_token of the previous page (opaque: the items shown so far)",
        max_length=16_384,
        format="smartrec-page-token",
    ),
    Param(
        "diversity",
        float,
        "MMR trade-off: 1 = relevance only, lower = varied",
        ge=0.0,
        le=1.0,
    ),
    Param("max_per_category", int, "At most this many items per category", ge=1, le=1000),
    Param("exploration", float, "Share of the page for new items", ge=0.0, le=0.5),
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RecommendRequest) if f.name != "user_id"}
assert set(_DEFAULTS) == {p.name for p in RECOMMEND_PARAMS}, "the table and the request differ"
_BY_NAME = {p.name: p for p in RECOMMEND_PARAMS}


def param(name: str) -> Param:
    """The table's entry of a parameter (routes that share it reuse its limits)."""
    return _BY_NAME[name]


def read_query(pairs: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The request's parameters from a decoded query, when each is known, given once and in
    its plain form within the limits; else None."""
    args: dict[str, Any] = {}
    for key, value in pairs:
        param = _BY_NAME.get(key)
        if param is None or key in args or not value:
            return None
        read = param.read(value)
        if read is None:
            return None
        args[key] = read
    return args


def _annotation(param: Param) -> Any:
    default = _DEFAULTS[param.name]
    kind: Any = param.kind if default is not None else param.kind | None
    limits: dict[str, Any] = {"description": param.description}
    for name in ("ge", "le", "max_length"):
        if getattr(param, name) is not None:
            limits[name] = getattr(param, name)
    if param.format is not None:
        limits["json_schema_extra"] = {"format": param.format}
    if param.description is None and len(limits) == 1:
        return kind  # a plain parameter (no Query(...) in the document)
    return Annotated[kind, Query(**limits)]


_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _recommend_request_dependency() -> Callable[..., RecommendRequest]:
    """A FastAPI dependency whose signature is the table: the route's parameters, validated
    and documented by FastAPI, gathered into one :class:`RecommendRequest`."""

    def recommend_request(**values: Any) -> RecommendRequest:
        return RecommendRequest(**values)

    params = [inspect.Parameter("user_id", _KEYWORD, annotation=PathId)]
    params += [
        inspect.Parameter(
            p.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_DEFAULTS[p.name],
            annotation=_annotation(p),
        )
        for p in RECOMMEND_PARAMS
    ]
    recommend_request.__signature__ = inspect.Signature(params, return_annotation=RecommendRequest)  # type: ignore[attr-defined]
    return recommend_request


#: ``Depends`` on it to receive the route's :class:`RecommendRequest`.
recommend_request = _recommend_request_dependency()


# ----------------------------------------------------------------------- the answer
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
    service's results are typed already). Reasons are dumped as the dicts they are (their
    keys in the order they were set)."""
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
    out: _ItemJson = {"item_id": r.item_id, "score": r.score, "reasons": r.reasons}  # type: ignore[typeddict-item]
    if details:
        out.update(details.get(r.item_id, {}))  # type: ignore[typeddict-item]
    return out


def source_of(results: Results) -> str:
    """The metric label of an answer: the first item's first reason."""
    if not results.items:
        return "empty"
    return (
        str(results.items[0].reasons[0].get("kind", "model"))
        if results.items[0].reasons
        else "model"
    )
