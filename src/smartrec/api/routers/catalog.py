"""Reading the catalogue back, and taking things out of it: items, users, a user's events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor

from smartrec.api.auth import ADMIN, READ
from smartrec.api.deps import RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.routers.recommendations import PathId
from smartrec.api.strict import StrictRoute
from smartrec.domain.clock import now_ms
from smartrec.errors import NotFound, ValidationFailed
from smartrec.schemas import (
    TIMESTAMP_SCHEMA,
    EventOut,
    EventsPage,
    ItemDeleted,
    ItemOut,
    ItemsPage,
    UserErased,
    UserOut,
    from_epoch_ms,
    to_epoch_ms,
)


class _ItemPath(PathConvertor):
    """An item id in a path (may hold "/", sent as %2F), except one ending in "/similar": that
    URL names the item's similar items, so DELETE on it is a 405, not the deletion of an item
    called "x/similar"."""

    regex = r"(?!.*/similar$).+"


class _UserPath(PathConvertor):
    """A user id in a path, except one ending in a user sub-resource ("/events",
    "/recommendations")."""

    regex = r"(?!.*/(?:events|recommendations)$).+"


register_url_convertor("item", _ItemPath())
register_url_convertor("user", _UserPath())

router = APIRouter(tags=["catalog"], route_class=StrictRoute)
#: A query parameter is a string: the timestamp forms that are strings.
UPDATED_SINCE = [s for s in TIMESTAMP_SCHEMA["anyOf"] if s.get("type") == "string"]

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page")]
ItemCursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00]+$",
        description="next_cursor of the previous page: the page starts after this item id",
    ),
]
EventCursor = Annotated[
    str | None,
    Query(
        max_length=300,
        pattern=r"^-?[0-9]{1,15}:[^\x00]{1,256}$",
        description="next_cursor of the previous page: '<epoch ms>:<event id>' of its last event",
    ),
]


def item_out(row: dict[str, Any]) -> ItemOut:
    return ItemOut(
        item_id=row["item_id"],
        title=row["title"],
        categories=list(row["categories"] or []),
        attributes=dict(row["attributes"] or {}),
        text=row["text"],
        available=bool(row["available"]),
        published_at=from_epoch_ms(row["published_at"]),
        created_at=from_epoch_ms(row["created_at"]),
        updated_at=from_epoch_ms(row["updated_at"]),
    )


@router.get(
    "/items", response_model=ItemsPage, dependencies=[READ], responses=responses(401, 403, 422)
)
def list_items(
    rt: RuntimeDep,
    limit: Limit = 100,
    cursor: ItemCursor = None,
    category: Annotated[str | None, Query(max_length=256, description="Only this category")] = None,
    updated_since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only items changed since (ISO 8601, or epoch seconds)",
            json_schema_extra={"anyOf": UPDATED_SINCE},
        ),
    ] = None,
) -> ItemsPage:
    """Every item, ordered by id, a page at a time (items known only from events included)."""
    since = None
    if updated_since is not None:
        try:
            since = to_epoch_ms(updated_since)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="updated_since") from None
    page = rt.records.list_items(limit, cursor, category, since)
    return ItemsPage(items=[item_out(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get(
    "/items/{item_id:item}",
    response_model=ItemOut,
    dependencies=[READ],
    responses=responses(401, 403, 404, 422),
)
def get_item(item_id: PathId, rt: RuntimeDep) -> ItemOut:
    row = rt.records.get_item(item_id)
    if row is None:
        raise NotFound(f"no item {item_id!r}")
    return item_out(row)


@router.delete(
    "/items/{item_id:item}",
    response_model=ItemDeleted,
    dependencies=[ADMIN],
    responses=responses(401, 403, 404, 422),
)
async def delete_item(item_id: PathId, rt: RuntimeDep) -> ItemDeleted:
    """Take an item out of the catalogue: out of every answer of this server at once, of other
    replicas within their reload interval. Sending it again with ``POST /v1/items`` restores it."""
    deleted = await run_in_threadpool(rt.records.delete_item, item_id, now_ms())
    if not deleted:
        raise NotFound(f"no item {item_id!r}")
    await run_in_threadpool(rt.service.catalog_changed, [item_id])
    return ItemDeleted(item_id=item_id)


@router.get(
    "/users/{user_id:path}/events",
    response_model=EventsPage,
    dependencies=[READ],
    responses=responses(401, 403, 404, 422),
)
def user_events(
    user_id: PathId, rt: RuntimeDep, limit: Limit = 100, cursor: EventCursor = None
) -> EventsPage:
    """A user's events, newest first."""
    page = rt.records.user_events(user_id, limit, cursor)
    if not page.rows and cursor is None and rt.records.get_user(user_id) is None:
        raise NotFound(f"no user {user_id!r}")
    events = [
        EventOut(
            event_id=r["event_id"],
            user_id=r["user_id"],
            item_id=r["item_id"],
            type=r["type"],
            value=r["value"],
            timestamp=from_epoch_ms(r["ts"]),
        )
        for r in page.rows
    ]
    return EventsPage(events=events, next_cursor=page.next_cursor)


@router.get(
    "/users/{user_id:user}",
    response_model=UserOut,
    dependencies=[READ],
    responses=responses(401, 403, 404, 422),
)
def get_user(user_id: PathId, rt: RuntimeDep) -> UserOut:
    row = rt.records.get_user(user_id)
    if row is None:
        raise NotFound(f"no user {user_id!r}")
    return UserOut(
        user_id=row["user_id"],
        attributes=dict(row["attributes"] or {}),
        created_at=from_epoch_ms(row["created_at"]),
        updated_at=from_epoch_ms(row["updated_at"]),
        events=row["events"],
    )


@router.delete(
    "/users/{user_id:user}",
    response_model=UserErased,
    dependencies=[ADMIN],
    responses=responses(401, 403, 404, 422),
)
async def erase_user(user_id: PathId, rt: RuntimeDep) -> UserErased:
    """Erasure: the user row and every event of the user are deleted (no later training sees
    them), and what this server cached of the user is dropped (other replicas drop theirs at
    their next event poll)."""
    existed, events = await run_in_threadpool(rt.records.erase_user, user_id, now_ms())
    if not existed and not events:
        raise NotFound(f"no user {user_id!r}")
    rt.service.user_erased(user_id)
    return UserErased(user_id=user_id, erased_events=events, user_deleted=existed)
