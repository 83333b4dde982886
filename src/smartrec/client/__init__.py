"""A typed Python client of the smartrec HTTP API, blocking or async, over httpx.

Answers are parsed into the server's own schemas (:mod:`smartrec.schemas`), so a field the
server renames breaks type checking, not production::

    from smartrec.client import SmartRec

    with SmartRec("http://127.0.0.1:8000") as rec:
        rec.items.upsert([{"item_id": "sku-1", "title": "Trail shoe", "categories": ["shoes"]}])
        rec.events.send([{"user_id": "u1", "item_id": "sku-1", "type": "view"}])
        job = rec.training.wait(rec.training.start().job_id)
        for item in rec.users.recommendations("u1", n=5).items:
            print(item.item_id, item.score)

Importing it loads no part of the engine: only httpx, pydantic and the wire schemas.
"""

from smartrec.client._async import AsyncSmartRec
from smartrec.client._core import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BODY_BYTES,
    EventLike,
    ItemLike,
    RetryPolicy,
    UserLike,
)
from smartrec.client._errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    SmartRecError,
    Unauthorized,
    UnexpectedResponse,
    WaitTimeout,
)
from smartrec.client._models import Health, ModelsOut, ModelVersion, Promoted, Readiness
from smartrec.client._sync import SmartRec

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "ApiError",
    "AsyncSmartRec",
    "Conflict",
    "ConnectionFailed",
    "EventLike",
    "Forbidden",
    "Health",
    "InvalidRequest",
    "ItemLike",
    "ModelVersion",
    "ModelsOut",
    "NotFound",
    "PayloadTooLarge",
    "Promoted",
    "RateLimited",
    "Readiness",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "SmartRec",
    "SmartRecError",
    "Unauthorized",
    "UnexpectedResponse",
    "UserLike",
    "WaitTimeout",
]
