"""Catalog and behaviour ingest: items, users, events."""

from __future__ import annotations

from fastapi import APIRouter, status

from smartrec.api.auth import INGEST
from smartrec.api.deps import MetricsDep, RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.schemas import EventsIn, EventsOut, ItemsIn, UpsertOut, UsersIn

router = APIRouter(
    tags=["ingest"],
    route_class=StrictRoute,
    dependencies=[INGEST],
    responses=responses(401, 403, 413, 415, 422, 429),
)


@router.post("/items", response_model=UpsertOut)
def upsert_items(body: ItemsIn, rt: RuntimeDep) -> UpsertOut:
    """Insert or replace items (every field of an item is replaced by what is sent)."""
    count = rt.ingestor.add_items(body.items)
    rt.service.catalog_changed([i.item_id for i in body.items])
    return UpsertOut(upserted=count)


@router.post("/users", response_model=UpsertOut)
def upsert_users(body: UsersIn, rt: RuntimeDep) -> UpsertOut:
    return UpsertOut(upserted=rt.ingestor.add_users(body.users))


@router.post(
    "/events",
    response_model=EventsOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(503),
)
def add_events(body: EventsIn, rt: RuntimeDep, metrics: MetricsDep) -> EventsOut:
    """Store behaviour events. Durable when answered (in the database, or confirmed by the
    event bus); an event seen before counts as a duplicate. 503 with ``Retry-After`` when the
    bus cannot confirm the batch: nothing of it is acknowledged, send it again."""
    accepted, duplicates = rt.ingestor.add_events(body.events)
    if rt.bus.writes_log:  # else a worker stores them, and tells every process then
        rt.events_stored(e.user_id for e in body.events)
    metrics.events.inc(accepted)
    metrics.duplicates.inc(duplicates)
    return EventsOut(accepted=accepted, duplicates=duplicates)
