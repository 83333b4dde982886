"""UserRanker's exclusions, and RecommendationService end to end on the in-memory store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smartrec.domain import EventRecord, EventWeights
from smartrec.domain.clock import now_ms
from smartrec.serving import RecommendRequest
from smartrec.serving.erasures import Erasures
from smartrec.serving.ranker import UserRanker
from smartrec.storage.memory import MemoryStore
from tests.unit.serving import served

USER = "u05"


def ranked_ids(store: MemoryStore, exclude_seen: bool, user: str = USER) -> list[str]:
    state = served.state(store)
    ranker = UserRanker(store, Erasures(store), feed_items=100)
    got = ranker.rank(state, user, store.user_history(user), 10, exclude_seen, None)
    order = np.argsort(-got.scores, kind="stable")
    return [state.item_ids[i] for i in got.items[order].tolist()]


def dislike(store: MemoryStore, user: str, item: str) -> None:
    """Enough dislikes that the user's feedback on ``item`` is negative overall."""
    weights = EventWeights()
    total = sum(weights.weight_of(t, v) for i, t, v in store.user_history(user) if i == item)
    count = int(total // -weights.weight_of("dislike", None)) + 1
    store.add_events(
        [
            EventRecord(f"d{k}-{user}-{item}", user, item, "dislike", None, now_ms())
            for k in range(count)
        ]
    )


def test_seen_items_are_excluded_with_exclude_seen() -> None:
    store = served.world_store()
    seen = served.world().seen[USER]
    assert set(ranked_ids(store, exclude_seen=False)) & seen  # they would rank
    got = ranked_ids(store, exclude_seen=True)
    assert got and not set(got) & seen


def test_disliked_items_never_come_back_even_without_exclude_seen() -> None:
    store = served.world_store()
    first = ranked_ids(store, exclude_seen=False)[0]
    assert first in served.world().seen[USER]
    dislike(store, USER, first)
    got = ranked_ids(store, exclude_seen=False)
    assert first not in got
    assert set(got) & served.world().seen[USER]  # the other seen items are still allowed


def test_recommend_reflects_events_once_they_are_announced(tmp_path: Path) -> None:
    store = served.world_store()
    service = served.service(store, tmp_path)
    service.install(served.bundle())
    request = RecommendRequest(USER, n=5)
    first = [r.item_id for r in service.recommend(request).items]
    assert len(first) == 5 and not set(first) & served.world().seen[USER]
    top = first[0]
    store.add_events([EventRecord("fresh-1", USER, top, "purchase", None, now_ms())])
    # The user's feed was built from the history before the event: served until announced.
    assert [r.item_id for r in service.recommend(request).items] == first
    service.events_arrived([USER])
    again = [r.item_id for r in service.recommend(request).items]
    assert top not in again and len(again) == 5


def test_a_new_user_is_answered_from_their_first_events(tmp_path: Path) -> None:
    store = served.world_store()
    service = served.service(store, tmp_path)
    service.install(served.bundle())
    request = RecommendRequest("newcomer", n=5)
    cold = service.recommend(request).items
    assert cold and not any(r["kind"] == "similar_to" for x in cold for r in x.reasons)
    viewed = ["i10", "i11", "i12"]
    store.add_events(
        [EventRecord(f"n{k}", "newcomer", i, "view", None, now_ms()) for k, i in enumerate(viewed)]
    )
    service.events_arrived(["newcomer"])
    warm = service.recommend(request).items
    assert not {r.item_id for r in warm} & set(viewed)
    because = {r.get("item_id") for x in warm for r in x.reasons if r["kind"] == "similar_to"}
    assert because and because <= set(viewed)  # explained by what they just viewed
