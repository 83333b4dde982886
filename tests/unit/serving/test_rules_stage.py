"""RulesStage: each business rule, observed on a real ranking of the small world (no HTTP)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from smartrec.pipeline.rules import decode_page_token
from smartrec.serving.erasures import Erasures
from smartrec.serving.feeds import Ranked
from smartrec.serving.ranker import UserRanker
from smartrec.serving.reasons import PipelineReasons
from smartrec.serving.requests import RecommendRequest
from smartrec.serving.results import Results
from smartrec.serving.rules_stage import RulesStage
from smartrec.serving.state import ServingState
from smartrec.storage.memory import MemoryStore
from tests.unit.serving import served

USER = "u05"


@pytest.fixture()
def store() -> MemoryStore:
    return served.world_store()


def rank(store: MemoryStore, state: ServingState, user: str = USER, **kw: Any) -> Ranked:
    ranker = UserRanker(store, Erasures(store), feed_items=100)
    history = store.user_history(user)
    return ranker.rank(state, user, history, kw.pop("n", 10), True, kw.pop("category", None))


def answer(store: MemoryStore, state: ServingState, ranked: Ranked, **request: Any) -> Results:
    req = RecommendRequest(USER, **request)
    stage = RulesStage(store, PipelineReasons())
    got = stage.apply(state, ranked, req, req.page_state(), req.item_filter(), from_feed=False)
    assert got is not None
    return got


def ids(results: Results) -> list[str]:
    return [r.item_id for r in results.items]


def test_without_rules_the_page_is_the_ranking(store: MemoryStore) -> None:
    state = served.state(store)
    ranked = rank(store, state)
    got = answer(store, state, ranked, n=10)
    best = np.argsort(-ranked.scores, kind="stable")[:10]
    assert ids(got) == [state.item_ids[i] for i in ranked.items[best].tolist()]
    assert [r.score for r in got.items] == pytest.approx(ranked.scores[best].tolist())


def test_a_filter_keeps_matching_items_only(store: MemoryStore) -> None:
    state = served.state(store)
    ranked = rank(store, state)
    cats = served.world().item_categories
    unfiltered = ids(answer(store, state, ranked, n=10))
    assert any("books" not in cats[i] for i in unfiltered)
    got = ids(answer(store, state, ranked, n=10, filter='category in ["books"]'))
    assert len(got) == 10 and all("books" in cats[i] for i in got)


def test_promoted_items_are_boosted_and_say_so(store: MemoryStore) -> None:
    plain = served.state(store)
    ranked = rank(store, plain)
    order = np.argsort(-ranked.scores, kind="stable")
    low = plain.item_ids[int(ranked.items[order[15]])]  # well below the first page
    assert low not in ids(answer(store, plain, ranked, n=10))
    state = served.state(store, promoted=[low], boost_promoted=1000.0)
    got = answer(store, state, rank(store, state), n=10)
    assert got.items[0].item_id == low
    assert {"kind": "promoted"} in got.items[0].reasons
    assert all({"kind": "promoted"} not in r.reasons for r in got.items[1:])


def test_exploration_gives_new_items_a_share_of_the_page_best_by_content(
    store: MemoryStore,
) -> None:
    # Every item counts as new (the world's events are from 2024): the share is observable.
    state = served.state(store, new_days=100_000.0)
    ranked = rank(store, state)
    plain = answer(store, state, ranked, n=10, exploration=0.0)
    assert not any(r.get("exploration") for x in plain.items for r in x.reasons)
    got = answer(store, state, ranked, n=10, exploration=0.5)
    explored = [x.item_id for x in got.items if {"kind": "new", "exploration": True} in x.reasons]
    assert len(explored) == 5
    # The other half is the ranking's head; the explored items come from below it, in the
    # order of the retriever that reaches new items (content), best first.
    assert [i for i in ids(got) if i not in explored] == ids(plain)[:5]
    assert not set(explored) & set(ids(plain)[:5])
    assert state.pipeline is not None
    col = next(k for k, r in enumerate(state.pipeline.retrievers) if r.reaches_new_items)
    content = {
        state.item_ids[int(i)]: ranked.cands.scores[k, col]
        for k, i in enumerate(ranked.cands.items.tolist())
    }
    values = [content.get(i, np.nan) for i in explored]
    finite = [v for v in values if v == v]
    assert finite == sorted(finite, reverse=True) and finite


def test_diversity_spreads_the_page_over_categories(store: MemoryStore) -> None:
    state = served.state(store)
    ranked = rank(store, state, n=10)
    cats = served.world().item_categories

    def spread(results: Results) -> int:
        return len({c for i in ids(results) for c in cats[i][:1]})

    plain = answer(store, state, ranked, n=6)
    varied = answer(store, state, ranked, n=6, diversity=0.0)
    assert set(ids(varied)) != set(ids(plain))
    assert spread(varied) > spread(plain)


def test_a_category_cap_bounds_each_category_on_the_page(store: MemoryStore) -> None:
    state = served.state(store)
    ranked = rank(store, state)
    cats = served.world().item_categories

    def most(results: Results) -> int:
        return max(Counter(c for i in ids(results) for c in cats[i]).values())

    assert most(answer(store, state, ranked, n=6)) > 2
    capped = answer(store, state, ranked, n=6, max_per_category=2)
    assert len(capped.items) == 6 and most(capped) == 2


def test_pages_follow_each_other_without_repeats_to_the_end(store: MemoryStore) -> None:
    """Each page is ranked without the items its token says were shown (as the service does),
    and the session walks every item the user may be shown exactly once."""
    state = served.state(store)
    ranker = UserRanker(store, Erasures(store), feed_items=100)
    stage = RulesStage(store, PipelineReasons())
    history = store.user_history(USER)
    seen: list[str] = []
    token: str | None = None
    for _ in range(50):
        req = RecommendRequest(USER, n=7, page_token=token)
        shown = req.page_state()
        at = state.positions_of(shown.shown) if shown.shown else None
        ranked = ranker.rank(state, USER, history, 7, True, None, at)
        got = stage.apply(state, ranked, req, shown, None, from_feed=False)
        assert got is not None and got.items
        seen += ids(got)
        token = got.next_page_token
        if token is None:
            break
        assert len(decode_page_token(token).shown) == len(seen)  # the token holds the session
    assert token is None, "paging never ended"
    assert len(seen) == len(set(seen))  # no item twice in a session
    everything = {i["item_id"] for i in served.world().items}
    assert set(seen) == everything - served.world().seen[USER]


def test_a_feed_too_short_for_the_page_is_refused(store: MemoryStore) -> None:
    state = served.state(store)
    ranked = rank(store, state).trim(12)
    stage = RulesStage(store, PipelineReasons())
    first = RecommendRequest(USER, n=5)
    page = stage.apply(state, ranked, first, first.page_state(), None, from_feed=True)
    assert page is not None and page.next_page_token is not None
    second = RecommendRequest(USER, n=5, page_token=page.next_page_token)
    shown = second.page_state()
    got = stage.apply(state, ranked, second, shown, None, from_feed=True)
    assert got is not None and not set(ids(got)) & set(ids(page))
    third = RecommendRequest(USER, n=5, page_token=got.next_page_token)
    # 12 kept, 10 shown: fewer than a page (and one more) left, so the online path answers.
    assert stage.apply(state, ranked, third, third.page_state(), None, from_feed=True) is None
