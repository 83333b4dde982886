"""API keys over HTTP (admin scope): create (the token is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.concurrency import run_in_threadpool

from smartrec.api.auth import ADMIN
from smartrec.api.deps import RuntimeDep
from smartrec.api.problems import responses
from smartrec.api.strict import StrictRoute
from smartrec.keys import ApiKey
from smartrec.schemas import SCOPES, KeyCreated, KeyIn, KeyOut, KeysOut, from_epoch_ms

router = APIRouter(tags=["keys"], route_class=StrictRoute, dependencies=[ADMIN])
KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        key_id=key.key_id,
        name=key.name,
        scopes=[s for s in SCOPES if s in key.scopes],
        rate_limit=key.rate_limit,
        created_at=from_epoch_ms(key.created_at),
        revoked_at=from_epoch_ms(key.revoked_at),
    )


@router.post(
    "/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 415, 422),
)
async def create_key(body: KeyIn, rt: RuntimeDep) -> KeyCreated:
    """A new key. Its token is in this answer only: the server keeps its hash."""
    key, token = await run_in_threadpool(
        rt.keys.create, list(body.scopes), body.name, body.rate_limit
    )
    return KeyCreated(**key_out(key).model_dump(), token=token)


@router.get("/keys", response_model=KeysOut, responses=responses(401, 403, 422))
async def list_keys(rt: RuntimeDep) -> KeysOut:
    keys = await run_in_threadpool(rt.keys.list)
    return KeysOut(keys=[key_out(k) for k in keys])


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=responses(401, 403, 404, 422))
async def revoke_key(key_id: KeyId, rt: RuntimeDep) -> KeyOut:
    """Revoke a key: refused at once by this process, by other processes and replicas within
    SMARTREC_AUTH_CACHE_TTL_S."""
    return key_out(await run_in_threadpool(rt.keys.revoke, key_id))
