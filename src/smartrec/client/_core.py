"""Everything the sync and async clients share: requests as data, and the operations over them.

An operation is a generator that yields *steps* (:class:`Call`: send this request and give me
its parsed answer; :class:`Sleep`; :class:`Emit`: hand this value to the caller of an
iterator) and returns its result. Chunked uploads, paging and job polling are written once, as
operations; :class:`~smartrec.client.SmartRec` and :class:`~smartrec.client.AsyncSmartRec` only
execute steps, with blocking or awaitable I/O. The retry policy is shared the same way.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from smartrec.client._errors import SmartRecError, UnexpectedResponse, WaitTimeout, retry_after
from smartrec.client._models import Health, ModelsOut, Promoted, Readiness
from smartrec.schemas import (
    ITEM_FIELDS,
    EventIn,
    EventsOut,
    EventsPage,
    ItemDeleted,
    ItemIn,
    ItemOut,
    ItemsPage,
    KeyCreated,
    KeyOut,
    KeysOut,
    RecommendationsOut,
    TrainingJobCreated,
    TrainingJobOut,
    UpsertOut,
    UserErased,
    UserIn,
    UserOut,
    to_epoch_ms,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: The server's default ``max_batch_size`` and ``max_body_bytes``.
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
JOB_DONE = ("succeeded", "failed")

Params = list[tuple[str, str | int | float | bool | None]]
ItemLike = ItemIn | Mapping[str, Any]
UserLike = UserIn | Mapping[str, Any]
EventLike = EventIn | Mapping[str, Any]
Fields = Iterable[str] | str | None
#: A time: a datetime (naive = UTC), an ISO 8601 string, or epoch seconds.
Since = datetime | str | int | float | None


# --------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params | None = None
    #: JSON body, encoded once so that every retry sends the same bytes.
    content: bytes | None = None
    #: Safe to send twice: retried after 503 and after errors once the request may have left.
    idempotent: bool = True
    #: False for probes (``/readyz``): their answer is the point, not something to wait out.
    retry: bool = True


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit(Generic[T]):
    value: T


Step = Call[Any] | Sleep | Emit[Any]
#: An operation returning T.
Op = Generator[Step, Any, T]


# --------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, ``Retry-After`` honoured.

    429 is retried for every call (the server refused before acting); 503 and failures after the
    request may have reached the server only for idempotent calls (all but starting a training
    job and creating a key); failures to connect for every call (nothing was sent).
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    #: A longer ``Retry-After`` is not waited out: the error is raised with ``retry_after`` set.
    max_retry_after: float = 60.0

    def _wait(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    def after_response(
        self, call: Call[Any], response: httpx.Response, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again, or None to raise."""
        status = response.status_code
        if not call.retry or attempt >= self.max_retries:
            return None
        if status != 429 and not (status == 503 and call.idempotent):
            return None
        asked = retry_after(response)
        if asked is None:
            return self._wait(attempt)
        return asked if asked <= self.max_retry_after else None

    def after_error(
        self, call: Call[Any], error: httpx.TransportError, attempt: int
    ) -> float | None:
        if not call.retry or attempt >= self.max_retries:
            return None
        unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        sent = isinstance(error, httpx.NetworkError | httpx.TimeoutException)
        sent = sent or isinstance(error, httpx.RemoteProtocolError)
        if unsent or (sent and call.idempotent):
            return self._wait(attempt)
        return None


# --------------------------------------------------------------------------- encoding
def _parse_model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            request = response.request
            raise UnexpectedResponse(
                f"{request.method} {request.url.path} answered {response.status_code} with a "
                f"body that is not a {model.__name__}: {error.errors()[0]['msg']}"
            ) from error

    return parse


def _encode(value: Any) -> bytes:
    # NaN stays NaN (invalid JSON): the server refuses it rather than the client storing null.
    return json.dumps(to_jsonable_python(value), ensure_ascii=False).encode()


def _path(*parts: str) -> str:
    """``/v1/items/a%2Fb``: every id percent-encoded, "/" included."""
    return "/".join(quote(p, safe="") if i else p for i, p in enumerate(parts))


def _params(**values: Any) -> Params:
    out: Params = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        out.append((key, value))
    return out


def _fields(fields: Fields) -> str | None:
    """``("title", "categories")`` -> ``"title,categories"`` (a string is sent as given)."""
    if fields is None:
        return None
    if isinstance(fields, str):
        return fields
    names = list(fields)
    unknown = [f for f in names if f not in ITEM_FIELDS]
    if unknown:
        raise ValueError(f"unknown item field(s) {unknown}; known: {', '.join(ITEM_FIELDS)}")
    return ",".join(names)


def _ms_to_seconds(ms: int | None) -> float | None:
    # A validated model holds epoch *milliseconds*; the wire takes epoch seconds (exact for ms).
    return None if ms is None else ms / 1000


def item_wire(item: ItemLike) -> Mapping[str, Any]:
    if isinstance(item, ItemIn):
        row = item.model_dump()
        row["published_at"] = _ms_to_seconds(item.published_at)
        return row
    return item


def user_wire(user: UserLike) -> Mapping[str, Any]:
    return user.model_dump() if isinstance(user, UserIn) else user


def event_id_for(user_id: str, item_id: str, event_type: str, ts_ms: int) -> str:
    """The id the server gives an event sent without one (:func:`smartrec.ingest.event_id_for`),
    so an event is the same event whether this client or anything else sent it."""
    key = f"{user_id}\x1f{item_id}\x1f{event_type}\x1f{ts_ms}".encode()
    return "h:" + hashlib.blake2b(key, digest_size=16).hexdigest()


def identify(event: EventLike, now_ms: int) -> Mapping[str, Any]:
    """Give an event a timestamp (now) and an ``event_id`` when it has none, *on the object
    passed*, so that sending the same objects again, after an error, is deduplicated; returns
    its JSON form. Rows the server will refuse anyway are left for it to name."""
    if isinstance(event, EventIn):
        if event.timestamp is None:
            event.timestamp = now_ms
        if event.event_id is None:
            event.event_id = event_id_for(event.user_id, event.item_id, event.type, event.timestamp)
        row = event.model_dump()
        row["timestamp"] = _ms_to_seconds(event.timestamp)
        return row
    target: MutableMapping[str, Any] = event if isinstance(event, MutableMapping) else dict(event)
    if target.get("timestamp") is None:
        target["timestamp"] = now_ms / 1000
    if target.get("event_id") is None:
        keys = [target.get(k) for k in ("user_id", "item_id", "type")]
        if all(isinstance(k, str) for k in keys):
            try:
                ts_ms = to_epoch_ms(target["timestamp"])
            except ValueError:
                ts_ms = None
            if ts_ms is not None:
                user, item, kind = (str(k).strip() for k in keys)  # the server strips them
                target["event_id"] = event_id_for(user, item, kind, ts_ms)
    return target


def _batches(rows: Iterable[bytes], batch_size: int, max_bytes: int) -> Iterator[list[bytes]]:
    """Rows in request-sized groups: at most ``batch_size`` rows and ``max_bytes`` of body each
    (a single row over the limit goes alone, for the server to refuse with 413)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batch: list[bytes] = []
    size = 0
    for row in rows:
        if batch and (len(batch) >= batch_size or size + len(row) + 1 > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += len(row) + 1
    if batch:
        yield batch


def _envelope(key: str, rows: list[bytes]) -> bytes:
    return b'{"' + key.encode() + b'":[' + b",".join(rows) + b"]}"


def _one_or_many(rows: Any) -> Iterable[Any]:
    """A single item, user or event is sent as a batch of one (iterating a dict gives its keys)."""
    return [rows] if isinstance(rows, Mapping | BaseModel) else rows


# --------------------------------------------------------------------------- operations
@dataclass(frozen=True)
class Limits:
    batch_size: int = DEFAULT_BATCH_SIZE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def with_batch_size(self, batch_size: int | None) -> Limits:
        if batch_size is None:
            return self
        return Limits(batch_size, self.max_body_bytes)


def upsert(
    path: str, key: str, rows: Iterable[Any], to_wire: Callable[[Any], Any], limits: Limits
) -> Op[UpsertOut]:
    """POST rows in batches; the server replaces rows by id, so a retried batch is harmless."""
    total = 0
    encoded = (_encode(to_wire(r)) for r in _one_or_many(rows))
    for batch in _batches(encoded, limits.batch_size, limits.max_body_bytes):
        try:
            out: UpsertOut = yield Call(
                "POST", path, _parse_model(UpsertOut), None, _envelope(key, batch)
            )
        except SmartRecError as error:
            error.add_note(f"{total} {key} before this batch were stored")
            raise
        total += out.upserted
    return UpsertOut(upserted=total)


def send_events(events: Iterable[EventLike] | EventLike, limits: Limits) -> Op[EventsOut]:
    """POST events in batches, each identified first, so retries count them once."""
    now_ms = int(time.time() * 1000)
    accepted = duplicates = 0
    encoded = (_encode(identify(e, now_ms)) for e in _one_or_many(events))
    for batch in _batches(encoded, limits.batch_size, limits.max_body_bytes):
        call = Call("POST", "/v1/events", _parse_model(EventsOut), None, _envelope("events", batch))
        try:
            out: EventsOut = yield call
        except SmartRecError as error:
            error.add_note(
                f"{accepted + duplicates} events before this batch were stored or known "
                "(sending the same event objects again is safe: they now carry event ids)"
            )
            raise
        accepted += out.accepted
        duplicates += out.duplicates
    return EventsOut(accepted=accepted, duplicates=duplicates)


def paged(
    path: str, page_model: type[M], items_of: Callable[[M], list[Any]] | None, params: Params
) -> Op[None]:
    """Follow ``next_cursor`` to the last page, emitting pages (or their rows with ``items_of``)."""
    cursor: str | None = None
    while True:
        query = [*params, *_params(cursor=cursor)]
        page: M = yield Call("GET", path, _parse_model(page_model), query)
        if items_of is None:
            yield Emit(page)
        else:
            for row in items_of(page):
                yield Emit(row)
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            return


def item_pages(
    category: str | None, updated_since: Since, limit: int | None, rows: bool
) -> Op[None]:
    params = _params(limit=limit, category=category, updated_since=updated_since)
    items_of: Callable[[ItemsPage], list[Any]] | None = (lambda p: p.items) if rows else None
    return paged("/v1/items", ItemsPage, items_of, params)


def user_event_pages(user_id: str, limit: int | None, rows: bool) -> Op[None]:
    items_of: Callable[[EventsPage], list[Any]] | None = (lambda p: p.events) if rows else None
    return paged(_path("/v1/users", user_id, "events"), EventsPage, items_of, _params(limit=limit))


def recommendations(
    user_id: str,
    n: int,
    *,
    exclude_seen: bool = True,
    category: str | None = None,
    filter: str | None = None,
    fields: Fields = None,
    page_token: str | None = None,
    diversity: float | None = None,
    max_per_category: int | None = None,
    exploration: float | None = None,
) -> Call[RecommendationsOut]:
    params = _params(
        n=n,
        # Only when not the default: the feed lane reads the plainest queries fastest.
        exclude_seen=None if exclude_seen else False,
        category=category,
        filter=filter,
        fields=_fields(fields),
        page_token=page_token,
        diversity=diversity,
        max_per_category=max_per_category,
        exploration=exploration,
    )
    path = _path("/v1/users", user_id, "recommendations")
    return Call("GET", path, _parse_model(RecommendationsOut), params)


def recommendation_pages(first: Call[RecommendationsOut], max_pages: int | None) -> Op[None]:
    """Pages while the server gives a ``next_page_token`` (an empty page ends it too)."""
    call = first
    pages = 0
    while max_pages is None or pages < max_pages:
        page: RecommendationsOut = yield call
        pages += 1
        yield Emit(page)
        if not page.next_page_token or not page.items:
            return
        query = [(k, v) for k, v in (call.params or []) if k != "page_token"]
        call = Call(
            call.method, call.path, call.parse, [*query, ("page_token", page.next_page_token)]
        )


def similar(item_id: str, n: int, category: str | None, fields: Fields) -> Call[RecommendationsOut]:
    params = _params(n=n, category=category, fields=_fields(fields))
    return Call(
        "GET", _path("/v1/items", item_id, "similar"), _parse_model(RecommendationsOut), params
    )


def popular(
    n: int, category: str | None, window: str | None, fields: Fields
) -> Call[RecommendationsOut]:
    params = _params(n=n, category=category, window=window, fields=_fields(fields))
    return Call("GET", "/v1/popular", _parse_model(RecommendationsOut), params)


def session(item_ids: Iterable[str], n: int) -> Call[RecommendationsOut]:
    body = _encode({"item_ids": list(item_ids), "n": n})
    return Call(
        "POST", "/v1/sessions/recommendations", _parse_model(RecommendationsOut), None, body
    )


def rank(user_id: str, item_ids: Iterable[str]) -> Call[RecommendationsOut]:
    body = _encode({"user_id": user_id, "item_ids": list(item_ids)})
    return Call("POST", "/v1/rankings", _parse_model(RecommendationsOut), None, body)


def get_item(item_id: str) -> Call[ItemOut]:
    return Call("GET", _path("/v1/items", item_id), _parse_model(ItemOut))


def delete_item(item_id: str) -> Call[ItemDeleted]:
    return Call("DELETE", _path("/v1/items", item_id), _parse_model(ItemDeleted))


def get_user(user_id: str) -> Call[UserOut]:
    return Call("GET", _path("/v1/users", user_id), _parse_model(UserOut))


def delete_user(user_id: str) -> Call[UserErased]:
    return Call("DELETE", _path("/v1/users", user_id), _parse_model(UserErased))


def start_training(
    pipeline: Mapping[str, Mapping[str, Any]] | None, tune_budget_s: float | None
) -> Call[TrainingJobCreated]:
    body: dict[str, Any] = {}
    if pipeline is not None:
        body["pipeline"] = pipeline
    if tune_budget_s is not None:
        body["tune_budget_s"] = tune_budget_s
    # Not idempotent: a retry after the request reached the server would queue a second job.
    parse = _parse_model(TrainingJobCreated)
    return Call("POST", "/v1/training-jobs", parse, None, _encode(body), idempotent=False)


def get_job(job_id: str) -> Call[TrainingJobOut]:
    return Call("GET", _path("/v1/training-jobs", job_id), _parse_model(TrainingJobOut))


def wait_job(job_id: str, timeout: float | None, poll_interval: float) -> Op[TrainingJobOut]:
    """Poll until the job succeeded or failed; a failed job is returned, not raised (its
    ``error`` says why)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job: TrainingJobOut = yield get_job(job_id)
        if job.status in JOB_DONE:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"training job {job_id} still {job.status} after {timeout} s", job)
        pause = poll_interval
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.monotonic()))
        yield Sleep(pause)


def run_training(
    pipeline: Mapping[str, Mapping[str, Any]] | None,
    tune_budget_s: float | None,
    timeout: float | None,
    poll_interval: float,
) -> Op[TrainingJobOut]:
    created: TrainingJobCreated = yield start_training(pipeline, tune_budget_s)
    job: TrainingJobOut = yield from wait_job(created.job_id, timeout, poll_interval)
    return job


def list_models() -> Call[ModelsOut]:
    return Call("GET", "/v1/models", _parse_model(ModelsOut))


def promote(version: str) -> Call[Promoted]:
    # Setting the champion alias twice to one version is harmless: idempotent.
    return Call("POST", _path("/v1/models", version, "promote"), _parse_model(Promoted))


def create_key(scopes: Iterable[str], name: str | None) -> Call[KeyCreated]:
    body: dict[str, Any] = {"scopes": [scopes] if isinstance(scopes, str) else list(scopes)}
    if name is not None:
        body["name"] = name
    parse = _parse_model(KeyCreated)
    return Call("POST", "/v1/keys", parse, None, _encode(body), idempotent=False)


def list_keys() -> Call[KeysOut]:
    return Call("GET", "/v1/keys", _parse_model(KeysOut))


def revoke_key(key_id: str) -> Call[KeyOut]:
    return Call("DELETE", _path("/v1/keys", key_id), _parse_model(KeyOut))


def health() -> Call[Health]:
    return Call("GET", "/healthz", _parse_model(Health), retry=False)


def ready() -> Call[Readiness]:
    return Call("GET", "/readyz", _parse_model(Readiness), retry=False)


# --------------------------------------------------------------------------- helpers for drivers
def headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    from smartrec import __version__

    out = {"user-agent": f"smartrec-python/{__version__}", "accept": "application/json"}
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    out.update(extra or {})
    return out


JSON_BODY = {"content-type": "application/json"}
