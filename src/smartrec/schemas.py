"""Wire schemas of the HTTP API (docs/api/), shared by the API, the client and the demo's ingest
path."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it everywhere so both databases agree.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


def _json_safe(value: Any, path: str = "") -> Any:
    """Attributes must be storable as JSON on every database: no NaN/Infinity, no NUL."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'} must be a finite number")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(str(key))
            _json_safe(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_safe(item, f"{path}[{i}]")
    return value


#: Strings PostgreSQL can store (no NUL), stated in the schema as the server checks it.
NO_NUL = r"^[^\u0000]*$"
#: An id: no NUL, and not only whitespace (ids are stripped).
ID_PATTERN = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL})]
Id = Annotated[
    str,
    Field(min_length=1, max_length=256, json_schema_extra={"pattern": ID_PATTERN}),
    AfterValidator(_no_nul),
]
#: Path suffixes that name a sub-resource (``/v1/items/{id}/similar``, ``/v1/users/{id}/events``):
#: an id ending in one could not be read, deleted or erased by its URL, so it is refused.
ITEM_SUFFIXES = ("/similar",)
USER_SUFFIXES = ("/events", "/recommendations")


def _suffix_check(suffixes: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value.endswith(suffixes):
            raise ValueError(f"an id may not end in {' or '.join(suffixes)} (its URL's)")
        return value

    return AfterValidator(check)


def _reserved(suffixes: tuple[str, ...]) -> str:
    alternatives = "|".join(x.lstrip("/") for x in suffixes)
    return rf"^(?!.*/({alternatives})$)[^\u0000]*[^\u0000\s][^\u0000]*$"


ItemId = Annotated[
    str,
    Field(min_length=1, max_length=256, json_schema_extra={"pattern": _reserved(ITEM_SUFFIXES)}),
    AfterValidator(_no_nul),
    _suffix_check(ITEM_SUFFIXES),
]
UserId = Annotated[
    str,
    Field(min_length=1, max_length=256, json_schema_extra={"pattern": _reserved(USER_SUFFIXES)}),
    AfterValidator(_no_nul),
    _suffix_check(USER_SUFFIXES),
]
#: Any JSON object without NUL in a string or key (``JsonValue`` is declared in the OpenAPI
#: document by ``api/app.py``: JSON Schema can say it recursively).
Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_json_safe),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        }
    ),
]


#: Every instant ISO 8601 can write: years 1 to 9999 (epoch seconds).
MIN_EPOCH_S = -62_135_596_800
MAX_EPOCH_S = 253_402_300_799
#: Epoch seconds written as a string: at most 10 digits before 1970, 11 after (years 1653 to
#: 5138), up to microseconds.
EPOCH_STRING = r"^(-?[0-9]{1,10}|[0-9]{11})(\.[0-9]{1,6})?$"
_EPOCH_STRING = re.compile(EPOCH_STRING)
#: The wire schema of a timestamp, exactly what :func:`to_epoch_ms` takes.
TIMESTAMP_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": MIN_EPOCH_S, "maximum": MAX_EPOCH_S},
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": EPOCH_STRING},
        {"type": "null"},
    ],
    "description": "ISO 8601 / RFC 3339 date-time, or epoch seconds (a number or a string)",
}


#: The wire form of a timestamp (epoch milliseconds once validated).
Timestamp = Annotated[int | None, WithJsonSchema(TIMESTAMP_SCHEMA)]


@overload
def from_epoch_ms(ms: int) -> datetime: ...
@overload
def from_epoch_ms(ms: None) -> None: ...
@overload
def from_epoch_ms(ms: int | None) -> datetime | None: ...
def from_epoch_ms(ms: int | None) -> datetime | None:
    """Stored epoch milliseconds -> the UTC datetime answers carry."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_epoch_ms(value: Any) -> int | None:
    """ISO 8601 strings or epoch seconds (a number, or a string of digits) -> epoch ms."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("timestamp out of range (epoch seconds)") from None
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        seconds = dt.timestamp()
    elif isinstance(value, str):
        seconds = float(value) if _EPOCH_STRING.match(value) else _iso_seconds(value)
    else:
        raise ValueError("timestamp must be ISO 8601 or epoch seconds")
    if not math.isfinite(seconds) or not MIN_EPOCH_S <= seconds <= MAX_EPOCH_S:
        raise ValueError("timestamp out of range (years 1 to 9999)")
    return round(seconds * 1000)


def _iso_seconds(text: str) -> float:
    """RFC 3339 / ISO 8601, any case (``t``, ``z``); a leap second counts as the one before."""
    bad = ValueError("timestamp must be ISO 8601 (e.g. 2024-05-01T12:00:00Z) or epoch seconds")
    normal = text.upper().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(normal)
    except ValueError:
        leap = re.sub(r"(T\d\d:\d\d):60", r"\1:59", normal)
        if leap == normal:
            raise bad from None
        try:
            dt = datetime.fromisoformat(leap)
        except ValueError:
            raise bad from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError):
        raise ValueError("timestamp out of range (years 1 to 9999)") from None


def _integral(value: Any) -> Any:
    """JSON has one number type: 3.0 is the integer 3 (as JSON Schema says), 3.5 is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer, given as 3 or 3.0 (never "3" nor true).
Count = Annotated[int, BeforeValidator(_integral)]


class _Strict(BaseModel):
    """Inputs: unknown fields refused, and no type coercion ("4" is not a number, "true" not a
    boolean): the server takes exactly what the OpenAPI document says."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class ItemIn(_Strict):
    item_id: ItemId
    title: Text | None = Field(default=None, max_length=2000)
    categories: list[Id] = Field(default_factory=list, max_length=100)
    attributes: Attributes = Field(default_factory=dict)
    text: Text | None = Field(default=None, max_length=100_000)
    available: bool = True
    published_at: Timestamp = None

    @field_validator("published_at", mode="before")
    @classmethod
    def _published(cls, value: Any) -> int | None:
        return to_epoch_ms(value)


class ItemsIn(_Strict):
    items: list[ItemIn]


class UserIn(_Strict):
    user_id: UserId
    attributes: Attributes = Field(default_factory=dict)


class UsersIn(_Strict):
    users: list[UserIn]


class EventIn(_Strict):
    event_id: Id | None = None
    user_id: UserId
    item_id: ItemId
    type: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
    value: float | None = None
    #: Epoch milliseconds after validation (ISO 8601 or epoch seconds on the wire).
    timestamp: Timestamp = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> int | None:
        return to_epoch_ms(value)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class EventsIn(_Strict):
    events: list[EventIn]


class UpsertOut(BaseModel):
    upserted: int


class EventsOut(BaseModel):
    accepted: int
    duplicates: int


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reasons: list[dict[str, Any]] = Field(default_factory=list)
    #: Present only when the request asked for them (``fields=title,categories,attributes``).
    title: str | None = None
    categories: list[str] | None = None
    attributes: dict[str, Any] | None = None


class RecommendationsOut(BaseModel):
    user_id: str | None = None
    item_id: str | None = None
    model_version: str | None
    items: list[RecommendedItem]
    next_page_token: str | None = None


class SessionIn(_Strict):
    item_ids: list[Id] = Field(max_length=1000)
    n: Count = Field(10, ge=1)


class RankingIn(_Strict):
    user_id: Id
    item_ids: list[Id] = Field(min_length=1, max_length=10_000)


class TrainingJobIn(_Strict):
    #: Algorithms (and params) to train instead of the configured set, e.g. {"ease": {"l2": 300}}.
    pipeline: dict[str, dict[str, Any]] | None = None
    #: Seconds of hyperparameter tuning before training (0 or absent: the configured
    #: SMARTREC_TUNE_BUDGET_S); the values found are logged and reused by later trainings.
    tune_budget_s: float | None = Field(default=None, ge=0, le=24 * 3600)


class TrainingJobCreated(BaseModel):
    job_id: str


class TrainingJobOut(BaseModel):
    job_id: str
    status: str
    model_version: str | None = None
    metrics: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None


# --------------------------------------------------------------------------- read-back
#: Item fields an answer that lists items may carry (``fields=title,categories,attributes``).
ITEM_FIELDS = ("title", "categories", "attributes")


class ItemOut(BaseModel):
    """An item as stored. Times are ISO 8601 UTC."""

    item_id: str
    title: str | None = None
    categories: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None
    available: bool = True
    published_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ItemsPage(BaseModel):
    items: list[ItemOut]
    #: Pass as ``cursor`` for the next page; absent on the last page.
    next_cursor: str | None = None


class ItemDeleted(BaseModel):
    item_id: str
    deleted: bool = True


class UserOut(BaseModel):
    user_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Events stored for this user.
    events: int = 0


class UserErased(BaseModel):
    user_id: str
    #: Events of the user deleted from the event log.
    erased_events: int
    #: Whether a user row (``POST /v1/users``) existed.
    user_deleted: bool


class EventOut(BaseModel):
    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None = None
    timestamp: datetime


class EventsPage(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = None


# --------------------------------------------------------------------------- API keys
Scope = Literal["read", "ingest", "admin"]
#: The scopes, in the order answers list them.
SCOPES: tuple[str, ...] = ("read", "ingest", "admin")


class KeyIn(_Strict):
    scopes: list[Scope] = Field(min_length=1, max_length=3)
    name: Annotated[str, Field(max_length=200), AfterValidator(_no_nul)] | None = None
    #: Requests per second for this key (token bucket); absent = SMARTREC_RATE_LIMIT_PER_KEY.
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)


class KeyOut(BaseModel):
    """An API key as listed: never the token, which is shown once, at creation."""

    key_id: str
    name: str | None = None
    scopes: list[str]
    rate_limit: float | None = None
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyOut):
    #: The bearer token. Shown once: only its hash is stored.
    token: str


class KeysOut(BaseModel):
    keys: list[KeyOut]
