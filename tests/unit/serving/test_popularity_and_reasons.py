"""Popularity from the event log (in-memory store) and the reasons' wire shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast
from unittest import mock

import numpy as np

from smartrec.domain import EventRecord, EventWeights
from smartrec.pipeline.retrievers import PipelineParts, Retriever, retriever_class
from smartrec.pipeline.spec import parse_spec
from smartrec.serving.cache import decode_ranking, encode_ranking
from smartrec.serving.erasures import Erasures
from smartrec.serving.popularity import Popularity
from smartrec.serving.reasons import found_reasons
from smartrec.serving.rules_stage import categories_of
from smartrec.serving.state import ServingState
from smartrec.storage.cache.memory import MemorySharedCache
from smartrec.storage.memory import MemoryStore


def _store() -> MemoryStore:
    store = MemoryStore()
    store.upsert_items(
        [
            {"item_id": "a", "title": "A", "categories": ["x"]},
            {"item_id": "b", "title": "B", "categories": ["y"]},
            {"item_id": "c", "title": "C", "categories": ["x"], "available": False},
        ]
    )
    store.add_events(
        [EventRecord(f"e{k}", f"u{k}", "a", "view", None, 1_000 + k) for k in range(3)]
        + [EventRecord(f"f{k}", f"u{k}", "b", "view", None, 2_000 + k) for k in range(2)]
        + [EventRecord(f"g{k}", f"u{k}", "c", "view", None, 3_000 + k) for k in range(5)]
    )
    return store


def test_popular_from_the_log_keeps_visible_items_of_the_category() -> None:
    popularity = Popularity(_store(), EventWeights(), ttl_s=60)
    everything = popularity.popular(None, 10, None, None)
    assert [r.item_id for r in everything.items] == ["a", "b"]  # c is unavailable
    assert everything.items[0].reasons == [{"kind": "popular"}]
    in_x = popularity.popular(None, 10, "x", "1d")
    assert [r.item_id for r in in_x.items] == ["a"]
    assert in_x.items[0].reasons == [{"kind": "popular_in", "category": "x", "window": "1d"}]


def test_replicas_share_the_logs_ranking_computed_once() -> None:
    """Two processes over one shared cache: the aggregate over the event log runs in one of
    them; the other answers the same from the cache (its catalogue filter is its own)."""
    store = _store()
    shared = MemorySharedCache()
    a = Popularity(store, EventWeights(), ttl_s=60, shared=shared)
    b = Popularity(store, EventWeights(), ttl_s=60, shared=shared)
    with mock.patch.object(store, "item_activity", wraps=store.item_activity) as activity:
        first = a.popular(None, 10, None, "7d")
        second = b.popular(None, 10, "x", "7d")
        again = b.popular(None, 10, None, "7d")
    assert activity.call_count == 1
    assert [r.item_id for r in first.items] == [r.item_id for r in again.items] == ["a", "b"]
    assert [r.item_id for r in second.items] == ["a"]


def test_a_ranking_survives_its_encoding() -> None:
    ranking = [("a", 3.5), ("é 用户\n", 1.0), ("", 0.25), ("x" * 300, 1e-9)]
    assert decode_ranking(encode_ranking(ranking)) == ranking
    assert decode_ranking(encode_ranking([])) == []
    data = encode_ranking(ranking)
    for bad in (b"", data[:-1], data + b"x", b"\xff\xff\xff\xff"):
        assert decode_ranking(bad) is None


def test_an_erased_user_has_no_model_row() -> None:
    store = _store()
    erasures = Erasures(store)
    state = cast(
        ServingState, SimpleNamespace(snapshot_ms=10**15, users=SimpleNamespace(get=lambda u: 7))
    )
    assert erasures.model_user(state, "u1") == 7
    erasures.record("u1")
    assert erasures.model_user(state, "u1") == 7  # erased before the training read the log
    state = cast(ServingState, SimpleNamespace(snapshot_ms=0, users=state.users))
    assert erasures.model_user(state, "u1") == -1 and erasures.model_user(state, "u2") == 7


def _retrievers(*blocks: dict[str, Any]) -> list[Retriever]:
    """Retriever instances of spec blocks (their ``reason`` reads the config only)."""
    spec = parse_spec({"retrievers": list(blocks), "ranker": {"kind": "fusion"}})
    parts = cast(PipelineParts, SimpleNamespace())
    return [retriever_class(r.kind)(r, parts) for r in spec.retrievers]


def test_reasons_are_the_answers_dicts_once_per_cause() -> None:
    state: Any = SimpleNamespace(item_ids=["h", "i"], titles=["H", None])
    by = _retrievers(
        {"name": "nb", "kind": "neighbours", "model": "ease"},
        {"name": "ct", "kind": "content"},
        {"name": "e1", "kind": "embedding", "model": "als"},
        {"name": "e2", "kind": "embedding", "model": "als"},
        {"name": "pop", "kind": "popular", "windows": ["7d"]},
        {"name": "cv", "kind": "covisit"},
        {"name": "nb2", "kind": "neighbours", "model": "itemknn"},
    )
    got = found_reasons(state, by, [0, 0, None, None, None, 1, 0], "x")
    assert got == [
        {"kind": "similar_to", "item_id": "h", "title": "H"},
        {"kind": "similar_to", "item_id": "h", "title": "H", "via": "content"},
        {"kind": "personalized", "algorithm": "als"},
        {"kind": "popular_in", "window": "7d", "category": "x"},
        {"kind": "similar_to", "item_id": "i", "title": None, "via": "covisit"},
    ]
    # The JSON's key order: the item's id and title stand where the retriever put the item.
    assert [list(r) for r in got] == [
        ["kind", "item_id", "title"],
        ["kind", "item_id", "title", "via"],
        ["kind", "algorithm"],
        ["kind", "window", "category"],
        ["kind", "item_id", "title", "via"],
    ]
    # No history item behind a similarity: no similarity reason; no category: none named.
    assert found_reasons(state, by[:2] + by[4:5], [None, None, None], None) == [
        {"kind": "popular_in", "window": "7d"}
    ]


def test_categories_of_items_in_catalogue_order() -> None:
    cats = {"x": np.array([True, False, True]), "y": np.array([True, True, False])}
    state = cast(ServingState, SimpleNamespace(categories=cats))
    assert categories_of(state, np.array([2, 0, 1])) == [["x"], ["x", "y"], ["y"]]
