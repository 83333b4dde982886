"""The feed lane's reading of a request: only what it can read without doubt, else None."""

from __future__ import annotations

import math

import pytest

from smartrec.api.fastlane import read_query, user_of
from smartrec.api.wire import answer_body
from smartrec.schemas import RecommendationsOut, RecommendedItem
from smartrec.serving import Recommendation


def test_plain_queries_are_read() -> None:
    assert read_query(b"") == {}
    assert read_query(b"n=10") == {"n": 10}
    got = read_query(
        b"n=3&diversity=0.75&exploration=0.5&max_per_category=2&exclude_seen=true"
        b"&category=Sci%20Fi&page_token=abc_-&filter=category+in+%5B%22A%22%5D"
    )
    assert got == {
        "n": 3,
        "diversity": 0.75,
        "exploration": 0.5,
        "max_per_category": 2,
        "exclude_seen": True,
        "category": "Sci Fi",
        "page_token": "abc_-",
        "filter": 'category in ["A"]',
    }
    assert read_query(b"diversity=1&exploration=0") == {"diversity": 1.0, "exploration": 0.0}


@pytest.mark.parametrize(
    "query",
    [
        b"n=0",
        b"n=010",
        b"n=-1",
        b"n=1e3",
        b"n=",
        b"n=12345678",
        b"n=1&n=2",
        b"other=1",
        b"diversity=1.5",
        b"diversity=.5",
        b"diversity=nan",
        b"diversity=inf",
        b"exploration=0.51",
        b"max_per_category=1001",
        b"max_per_category=0",
        b"exclude_seen=1",
        b"exclude_seen=yes",
        b"category=",
        b"category=" + b"x" * 257,
        b"page_token=" + b"x" * 16_385,
        b"filter=" + b"x" * 4097,
    ],
)
def test_anything_in_doubt_is_left_to_the_route(query: bytes) -> None:
    assert read_query(query) is None


def test_user_of_matches_the_route_template() -> None:
    assert user_of("/v1/users/u1/recommendations") == "u1"
    assert user_of("/v1/users/a/b/recommendations") == "a/b"  # {user_id:path}
    assert user_of("/v1/users//recommendations") is None
    assert user_of("/v1/users/u1/similar") is None
    assert user_of("/v1/items/u1/recommendations") is None
    assert user_of("/v1/users/\x00/recommendations") is None
    assert user_of("/v1/users/" + "u" * 257 + "/recommendations") is None


def test_answer_body_is_the_response_models_json() -> None:
    items = [
        Recommendation("i1", 1.5, [{"kind": "similar_to", "item_id": "i9", "title": "Ünïcode ✓"}]),
        Recommendation("i2", -0.25, [{"kind": "new", "exploration": True}]),
        Recommendation("i3", 1e-7, []),
        Recommendation("i4", math.nan, [{"kind": "popular_in", "window": "7d"}]),
    ]
    for fields in (
        {"user_id": "u1", "next_page_token": "tok"},
        {"item_id": "i0"},
        {},
    ):
        model = RecommendationsOut(
            model_version="v1",
            items=[
                RecommendedItem(item_id=r.item_id, score=r.score, reasons=r.reasons) for r in items
            ],
            **fields,
        )
        # Item fields (title, categories, attributes) are in an answer only when asked for.
        unasked = {"items": {"__all__": {"title", "categories", "attributes"}}}
        assert answer_body(items, "v1", **fields) == model.model_dump_json(exclude=unasked).encode()
    assert set(RecommendationsOut.model_fields) == {
        "user_id",
        "item_id",
        "model_version",
        "items",
        "next_page_token",
    }
