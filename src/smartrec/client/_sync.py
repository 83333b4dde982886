"""The blocking client: executes the shared operations of :mod:`smartrec.client._core`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

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
DEFAULT_URL = "http://127.0.0.1:8000"


class SmartRec:
    """A smartrec server over HTTP, with answers parsed into the server's own schemas.

    ``api_key`` defaults to ``$SMARTREC_API_KEY``. Rate-limited and unavailable answers and
    network errors are retried (see :class:`~smartrec.client._core.RetryPolicy`); error answers
    raise :class:`~smartrec.client.ApiError` subclasses. Batches are split to ``batch_size``
    rows (the server's ``max_batch_size``) and ``max_body_bytes``.
    """

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("SMARTREC_API_KEY")
        self._http = httpx.Client(
            base_url=base_url,
            headers=ops.headers(key, headers),
            timeout=timeout,
            transport=transport,
        )
        self.policy = RetryPolicy(max_retries, backoff, max_backoff, max_retry_after)
        self.limits = Limits(batch_size, max_body_bytes)
        self.items = Items(self)
        self.users = Users(self)
        self.events = Events(self)
        self.sessions = Sessions(self)
        self.rankings = Rankings(self)
        self.training = Training(self)
        self.models = Models(self)
        self.keys = Keys(self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SmartRec:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    # ------------------------------------------------------------------ executor
    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(delay)
            attempt += 1

    def _step(self, step: ops.Step) -> Any:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        return self._send(cast(Call[Any], step))

    def _run(self, op: Op[T] | Call[T]) -> T:
        if isinstance(op, Call):
            return self._send(op)
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
                value = self._step(step)
            except SmartRecError as error:
                failure = error

    def _stream(self, op: Op[None]) -> Iterator[Any]:
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
                value = self._step(step)
            except SmartRecError as error:
                failure = error

    # ------------------------------------------------------------------ top-level calls
    def popular(
        self,
        n: int = 10,
        *,
        category: str | None = None,
        window: str | None = None,
        fields: Fields = None,
    ) -> RecommendationsOut:
        """Most popular items, over all time or a ``window`` such as ``"24h"`` or ``"7d"``."""
        return self._run(ops.popular(n, category, window, fields))

    def health(self) -> Health:
        """Liveness (``/healthz``); not retried."""
        return self._run(ops.health())

    def ready(self) -> Readiness:
        """Readiness (``/readyz``): raises :class:`ServiceUnavailable` when not ready; not
        retried, since the answer is the point."""
        return self._run(ops.ready())


class _Resource:
    def __init__(self, client: SmartRec) -> None:
        self._client = client


class Items(_Resource):
    """The catalogue: ``/v1/items``."""

    def upsert(
        self, items: Iterable[ItemLike] | ItemLike, *, batch_size: int | None = None
    ) -> UpsertOut:
        """Insert or fully replace items, in batches; the counts are summed."""
        limits = self._client.limits.with_batch_size(batch_size)
        return self._client._run(ops.upsert("/v1/items", "items", items, ops.item_wire, limits))

    def get(self, item_id: str) -> ItemOut:
        return self._client._run(ops.get_item(item_id))

    def delete(self, item_id: str) -> ItemDeleted:
        return self._client._run(ops.delete_item(item_id))

    def list(
        self,
        *,
        category: str | None = None,
        updated_since: Since = None,
        limit: int | None = None,
    ) -> Iterator[ItemOut]:
        """Every item (of a category, updated since a time), fetched a page of ``limit`` at a
        time as the iterator is consumed."""
        op = ops.item_pages(category, updated_since, limit, rows=True)
        return cast(Iterator[ItemOut], self._client._stream(op))

    def pages(
        self,
        *,
        category: str | None = None,
        updated_since: Since = None,
        limit: int | None = None,
    ) -> Iterator[ItemsPage]:
        """Like :meth:`list`, a page at a time (with its ``next_cursor``)."""
        op = ops.item_pages(category, updated_since, limit, rows=False)
        return cast(Iterator[ItemsPage], self._client._stream(op))

    def similar(
        self,
        item_id: str,
        n: int = 10,
        *,
        category: str | None = None,
        fields: Fields = None,
    ) -> RecommendationsOut:
        return self._client._run(ops.similar(item_id, n, category, fields))


class Users(_Resource):
    """Users, their events and their recommendations: ``/v1/users``."""

    def upsert(
        self, users: Iterable[UserLike] | UserLike, *, batch_size: int | None = None
    ) -> UpsertOut:
        limits = self._client.limits.with_batch_size(batch_size)
        return self._client._run(ops.upsert("/v1/users", "users", users, ops.user_wire, limits))

    def get(self, user_id: str) -> UserOut:
        return self._client._run(ops.get_user(user_id))

    def delete(self, user_id: str) -> UserErased:
        """Erase a user: the user row and every event of the user."""
        return self._client._run(ops.delete_user(user_id))

    def events(self, user_id: str, *, limit: int | None = None) -> Iterator[EventOut]:
        """The user's stored events, newest first, paged as the iterator is consumed."""
        op = ops.user_event_pages(user_id, limit, rows=True)
        return cast(Iterator[EventOut], self._client._stream(op))

    def event_pages(self, user_id: str, *, limit: int | None = None) -> Iterator[EventsPage]:
        op = ops.user_event_pages(user_id, limit, rows=False)
        return cast(Iterator[EventsPage], self._client._stream(op))

    def recommendations(
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
        return self._client._run(call)

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
    ) -> Iterator[RecommendationsOut]:
        """Page after page (following ``next_page_token``; no item twice) until the server has
        no more, a page is empty, or ``max_pages``."""
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
        return cast(Iterator[RecommendationsOut], self._client._stream(op))


class Events(_Resource):
    """Behaviour events: ``/v1/events``."""

    def send(
        self, events: Iterable[EventLike] | EventLike, *, batch_size: int | None = None
    ) -> EventsOut:
        """Store events in batches; counts are summed.

        Every event without ``timestamp`` or ``event_id`` gets them here, on the object passed
        (dicts and :class:`EventIn` alike; other mappings are copied), the id being the one the
        server derives from user, item, type and time. Retries, and sending the same objects
        again after an error, therefore count each event once (``duplicates``).
        """
        limits = self._client.limits.with_batch_size(batch_size)
        return self._client._run(ops.send_events(events, limits))


class Sessions(_Resource):
    def recommend(self, item_ids: Iterable[str], n: int = 10) -> RecommendationsOut:
        """Recommendations for an anonymous visitor from the items just touched."""
        return self._client._run(ops.session(item_ids, n))


class Rankings(_Resource):
    def rank(self, user_id: str, item_ids: Iterable[str]) -> RecommendationsOut:
        """The caller's own list (1 to 10,000 ids), ordered for this user."""
        return self._client._run(ops.rank(user_id, item_ids))


class Training(_Resource):
    """Training jobs: ``/v1/training-jobs``."""

    def start(
        self,
        pipeline: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tune_budget_s: float | None = None,
    ) -> TrainingJobCreated:
        """Queue a training; ``pipeline`` such as ``{"ease": {"l2": 300}}`` trains exactly
        those algorithms. Not retried once sent (a retry could queue a second job)."""
        return self._client._run(ops.start_training(pipeline, tune_budget_s))

    def get(self, job_id: str) -> TrainingJobOut:
        return self._client._run(ops.get_job(job_id))

    def wait(
        self, job_id: str, *, timeout: float | None = 600.0, poll_interval: float = 1.0
    ) -> TrainingJobOut:
        """Poll until the job succeeded or failed (returned either way; check ``status``);
        raises :class:`WaitTimeout` after ``timeout`` seconds."""
        return self._client._run(ops.wait_job(job_id, timeout, poll_interval))

    def run(
        self,
        pipeline: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tune_budget_s: float | None = None,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
    ) -> TrainingJobOut:
        """:meth:`start` then :meth:`wait`."""
        op = ops.run_training(pipeline, tune_budget_s, timeout, poll_interval)
        return self._client._run(op)


class Models(_Resource):
    """The model registry: ``/v1/models``."""

    def list(self) -> ModelsOut:
        return self._client._run(ops.list_models())

    def promote(self, version: str) -> Promoted:
        """Make ``version`` the champion (served by this server at once)."""
        return self._client._run(ops.promote(version))


class Keys(_Resource):
    """API keys: ``/v1/keys`` (needs an ``admin`` key when the server requires keys)."""

    def create(self, scopes: Iterable[str], name: str | None = None) -> KeyCreated:
        """A new key; its ``token`` is shown this once. Not retried once sent."""
        return self._client._run(ops.create_key(scopes, name))

    def list(self) -> KeysOut:
        return self._client._run(ops.list_keys())

    def revoke(self, key_id: str) -> KeyOut:
        """Revoke a key at once; answers the key with its ``revoked_at``."""
        return self._client._run(ops.revoke_key(key_id))
