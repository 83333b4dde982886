"""The async client gives what the sync one gives, against the same real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from smartrec.client import AsyncSmartRec, InvalidRequest, NotFound, SmartRec
from tests.client.conftest import SERVER_BATCH, Trained


def test_async_parity(client: SmartRec, trained: Trained) -> None:
    world = trained.world
    user = world.heaviest_user()
    item = next(iter(world.seen[user]))
    tag = uuid.uuid4().hex[:8]
    events = [
        {"user_id": f"async-{tag}", "item_id": i["item_id"], "type": "view"}
        for i in world.items[:7]
    ]

    async def main() -> None:
        async with AsyncSmartRec(trained.url, batch_size=3, backoff=0.05) as rec:
            assert (await rec.health()).status == "ok"
            assert (await rec.ready()).model_version == trained.version
            assert await rec.users.recommendations(user, n=5) == client.users.recommendations(
                user, n=5
            )
            assert await rec.items.similar(item, n=3) == client.items.similar(item, n=3)
            assert await rec.popular(4) == client.popular(4)
            basket = [i["item_id"] for i in world.items[:2]]
            assert await rec.sessions.recommend(basket, n=3) == client.sessions.recommend(
                basket, n=3
            )
            ids = [i["item_id"] for i in world.items[:5]]
            assert await rec.rankings.rank(user, ids) == client.rankings.rank(user, ids)
            pages = [p async for p in rec.users.recommendation_pages(user, n=3, max_pages=2)]
            assert pages == list(client.users.recommendation_pages(user, n=3, max_pages=2))

            first = await rec.events.send(events)
            again = await rec.events.send(events)
            assert (first.accepted, again.duplicates) == (7, 7)
            upserted = await rec.users.upsert([{"user_id": f"async-{tag}"}])
            assert upserted.upserted == 1

            job = await rec.training.get(trained.job.job_id)
            assert job == client.training.get(trained.job.job_id)
            assert (await rec.training.wait(job.job_id, timeout=1)).status == "succeeded"
            assert (await rec.models.list()).serving_version == trained.version

            with pytest.raises(NotFound):
                await rec.items.similar(f"nope-{tag}")
            with pytest.raises(InvalidRequest):
                await rec.popular(0)

    asyncio.run(main())


def test_async_paging_and_readback(client: SmartRec, trained: Trained) -> None:
    """The iterators and read-back routes (GET /v1/items, /v1/users/{id}/events, keys)."""
    user = trained.world.heaviest_user()

    async def main() -> None:
        async with AsyncSmartRec(trained.url, batch_size=SERVER_BATCH) as rec:
            items = [i.item_id async for i in rec.items.list(limit=9)]
            assert items == [i.item_id for i in client.items.list(limit=9)]
            events = [e async for e in rec.users.events(user, limit=20)]
            assert events == list(client.users.events(user, limit=20))
            assert await rec.users.get(user) == client.users.get(user)
            first = trained.world.items[0]["item_id"]
            assert await rec.items.get(first) == client.items.get(first)
            keys = await rec.keys.list()
            assert isinstance(keys.keys, list)

    asyncio.run(main())
