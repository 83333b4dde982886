"""The async client (asyncio or trio): the operations of :mod:`smartrec.client._core`, awaited.

Every method mirrors the one of the same name on :class:`~smartrec.client.SmartRec`; the
docstrings are there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

import anyio
import httpx

from smartrec.client import _core as ops
from smartrec.client._core import (
    Call,
    EventLike,
    Fields,
    ItemLike,
    Limits,
    Op,
    RetryPolicy,
    Since,
    Sleep,
    UserLike,
)
from smartrec.client._errors import ConnectionFailed, SmartRecError, error_from
from smartrec.client._models import Health, ModelsOut, Promoted, Readiness
from smartrec.client._sync import DEFAULT_URL
from smartrec.schemas import (
    EventOut,
    EventsOut,
    EventsPage,
    ItemDeleted,
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
    UserOut,
)

T = TypeVar("T")


class AsyncSmartRec:
    """:class:`~smartrec.client.SmartRec` for async code: same arguments, awaitable methods,
    ``async for`` over the paging iterators, ``async with`` and ``await close()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        batch_size: int = ops.DEFAULT_BATCH_SIZE,
        max_body_bytes: int = ops.DEFAULT_MAX_BODY_BYTES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("SMARTREC_API_KEY")
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=ops.headers(key, headers),
            timeout=timeout,
            transport=transport,
        )
        self.policy = RetryPolicy(max_retries, backoff, max_backoff, max_retry_after)
        self.limits = Limits(batch_size, max_body_bytes)
        self.items = AsyncItems(self)
        self.users = AsyncUsers(self)
        self.events = AsyncEvents(self)
        self.sessions = AsyncSessions(self)
        self.rankings = AsyncRankings(self)
        self.training = AsyncTraining(self)
        self.models = AsyncModels(self)
        self.keys = AsyncKeys(self)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncSmartRec:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    # ------------------------------------------------------------------ executor
    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.content,
                    headers=ops.JSON_BODY if call.content is not None else None,
                )
            except httpx.TransportError as error:
                delay = self.policy.after_error(call, error, attempt)
                if delay is None:
                    raise ConnectionFailed(
                        f"{call.method} {call.path}: {type(error).__name__}: {error}"
                    ) from error
            else:
                if response.is_success:
                    return call.parse(response)
                delay = self.policy.after_response(call, response, attempt)
                if delay is None:
                    raise error_from(response)
            await anyio.sleep(delay)
            attempt += 1

    async def _step(self, step: ops.Step) -> Any:
        if isinstance(step, Sleep):
            await anyio.sleep(step.seconds)
            return None
        return await self._send(cast(Call[Any], step))

    async def _run(self, op: Op[T] | Call[T]) -> T:
        if isinstance(op, Call):
            return await self._send(op)
        value: Any = None
        failure: SmartRecError | None = None
        while True:
            try:
                step = op.throw(failure) if failure is not None else op.send(value)
            except StopIteration as stop:
                return cast(T, stop.value)
            value, failure = None, None
            if isinstance(step, ops.Emit):
                continue
            try:
                value = await self._step(step)
            except SmartRecError as error:
                failure = error

    async def _stream(self, op: Op[None]) -> AsyncIterator[Any]:
        value: Any = None
        failure: SmartRecError | None = None
        while True:
            try:
                step = op.throw(failure) if failure is not None else op.send(value)
            except StopIteration:
                return
            value, failure = None, None
            if isinstance(step, ops.Emit):
                yield step.value
                continue
            try:
                value = await self._step(step)
            except SmartRecError as error:
                failure = error

    # ------------------------------------------------------------------ top-level calls
    async def popular(
        self,
        n: int = 10,
        *,
        category: str | None = None,
        window: str | None = None,
        fields: Fields = None,
    ) -> RecommendationsOut:
        return await self._run(ops.popular(n, category, window, fields))

    async def health(self) -> Health:
        return await self._run(ops.health())

    async def ready(self) -> Readiness:
        return await self._run(ops.ready())


class _AsyncResource:
    def __init__(self, client: AsyncSmartRec) -> None:
        self._client = client


class AsyncItems(_AsyncResource):
    async def upsert(
        self, items: Iterable[ItemLike] | ItemLike, *, batch_size: int | None = None
    ) -> UpsertOut:
        limits = self._client.limits.with_batch_size(batch_size)
        op = ops.upsert("/v1/items", "items", items, ops.item_wire, limits)
        return await self._client._run(op)

    async def get(self, item_id: str) -> ItemOut:
        return await self._client._run(ops.get_item(item_id))

    async def delete(self, item_id: str) -> ItemDeleted:
        return await self._client._run(ops.delete_item(item_id))

    def list(
        self,
        *,
        category: str | None = None,
        updated_since: Since = None,
        limit: int | None = None,
    ) -> AsyncIterator[ItemOut]:
        op = ops.item_pages(category, updated_since, limit, rows=True)
        return cast(AsyncIterator[ItemOut], self._client._stream(op))

    def pages(
        self,
        *,
        category: str | None = None,
        updated_since: Since = None,
        limit: int | None = None,
    ) -> AsyncIterator[ItemsPage]:
        op = ops.item_pages(category, updated_since, limit, rows=False)
        return cast(AsyncIterator[ItemsPage], self._client._stream(op))

    async def similar(
        self,
        item_id: str,
        n: int = 10,
        *,
        category: str | None = None,
        fields: Fields = None,
    ) -> RecommendationsOut:
        return await self._client._run(ops.similar(item_id, n, category, fields))


class AsyncUsers(_AsyncResource):
    async def upsert(
        self, users: Iterable[UserLike] | UserLike, *, batch_size: int | None = None
    ) -> UpsertOut:
        limits = self._client.limits.with_batch_size(batch_size)
        op = ops.upsert("/v1/users", "users", users, ops.user_wire, limits)
        return await self._client._run(op)

    async def get(self, user_id: str) -> UserOut:
        return await self._client._run(ops.get_user(user_id))

    async def delete(self, user_id: str) -> UserErased:
        return await self._client._run(ops.delete_user(user_id))

    def events(self, user_id: str, *, limit: int | None = None) -> AsyncIterator[EventOut]:
        op = ops.user_event_pages(user_id, limit, rows=True)
        return cast(AsyncIterator[EventOut], self._client._stream(op))

    def event_pages(self, user_id: str, *, limit: int | None = None) -> AsyncIterator[EventsPage]:
        op = ops.user_event_pages(user_id, limit, rows=False)
        return cast(AsyncIterator[EventsPage], self._client._stream(op))

    async def recommendations(
        self,
        user_id: str,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        category: str | None = None,
        filter: str | None = None,
        fields: Fields = None,
        page_token: str | None = None,
        diversity: float | None = None,
        max_per_category: int | None = None,
        exploration: float | None = None,
    ) -> RecommendationsOut:
        call = ops.recommendations(
            user_id,
            n,
            exclude_seen=exclude_seen,
            category=category,
            filter=filter,
            fields=fields,
            page_token=page_token,
            diversity=diversity,
            max_per_category=max_per_category,
            exploration=exploration,
        )
        return await self._client._run(call)

    def recommendation_pages(
        self,
        user_id: str,
        n: int = 10,
        *,
        max_pages: int | None = None,
        exclude_seen: bool = True,
        category: str | None = None,
        filter: str | None = None,
        fields: Fields = None,
        diversity: float | None = None,
        max_per_category: int | None = None,
        exploration: float | None = None,
    ) -> AsyncIterator[RecommendationsOut]:
        first = ops.recommendations(
            user_id,
            n,
            exclude_seen=exclude_seen,
            category=category,
            filter=filter,
            fields=fields,
            diversity=diversity,
            max_per_category=max_per_category,
            exploration=exploration,
        )
        op = ops.recommendation_pages(first, max_pages)
        return cast(AsyncIterator[RecommendationsOut], self._client._stream(op))


class AsyncEvents(_AsyncResource):
    async def send(
        self, events: Iterable[EventLike] | EventLike, *, batch_size: int | None = None
    ) -> EventsOut:
        limits = self._client.limits.with_batch_size(batch_size)
        return await self._client._run(ops.send_events(events, limits))


class AsyncSessions(_AsyncResource):
    async def recommend(self, item_ids: Iterable[str], n: int = 10) -> RecommendationsOut:
        return await self._client._run(ops.session(item_ids, n))


class AsyncRankings(_AsyncResource):
    async def rank(self, user_id: str, item_ids: Iterable[str]) -> RecommendationsOut:
        return await self._client._run(ops.rank(user_id, item_ids))


class AsyncTraining(_AsyncResource):
    async def start(
        self,
        pipeline: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tune_budget_s: float | None = None,
    ) -> TrainingJobCreated:
        return await self._client._run(ops.start_training(pipeline, tune_budget_s))

    async def get(self, job_id: str) -> TrainingJobOut:
        return await self._client._run(ops.get_job(job_id))

    async def wait(
        self, job_id: str, *, timeout: float | None = 600.0, poll_interval: float = 1.0
    ) -> TrainingJobOut:
        return await self._client._run(ops.wait_job(job_id, timeout, poll_interval))

    async def run(
        self,
        pipeline: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tune_budget_s: float | None = None,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
    ) -> TrainingJobOut:
        op = ops.run_training(pipeline, tune_budget_s, timeout, poll_interval)
        return await self._client._run(op)


class AsyncModels(_AsyncResource):
    async def list(self) -> ModelsOut:
        return await self._client._run(ops.list_models())

    async def promote(self, version: str) -> Promoted:
        return await self._client._run(ops.promote(version))


class AsyncKeys(_AsyncResource):
    async def create(self, scopes: Iterable[str], name: str | None = None) -> KeyCreated:
        return await self._client._run(ops.create_key(scopes, name))

    async def list(self) -> KeysOut:
        return await self._client._run(ops.list_keys())

    async def revoke(self, key_id: str) -> KeyOut:
        return await self._client._run(ops.revoke_key(key_id))
