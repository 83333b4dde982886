"""One table of parameters: the route's dependency and the feed lane read the same names,
defaults and limits, and build the same request object."""

from __future__ import annotations

import dataclasses
import inspect

from smartrec.api import wire
from smartrec.api.fastlane import read_query
from smartrec.serving import RecommendRequest


def test_the_table_is_the_request_objects_fields() -> None:
    fields = [f.name for f in dataclasses.fields(RecommendRequest)]
    assert fields == ["user_id", *(p.name for p in wire.RECOMMEND_PARAMS)]


def test_the_route_dependency_declares_the_table() -> None:
    sig = inspect.signature(wire.recommend_request)
    assert list(sig.parameters) == [f.name for f in dataclasses.fields(RecommendRequest)]
    assert sig.parameters["n"].default == 10 and sig.parameters["exclude_seen"].default is True
    built = wire.recommend_request(user_id="u", n=3, diversity=0.5)
    assert built == RecommendRequest("u", 3, diversity=0.5)


def test_the_lane_reads_within_the_tables_limits() -> None:
    assert wire.param("max_per_category").le == 1000
    assert read_query(b"max_per_category=1000") == {"max_per_category": 1000}
    assert read_query(b"max_per_category=1001") is None
    assert read_query(b"exploration=0.5") == {"exploration": 0.5}
    assert read_query(b"exploration=0.6") is None
    args = read_query(b"n=4&category=c&exclude_seen=false")
    assert args is not None
    assert RecommendRequest("u", **args) == RecommendRequest(
        "u", n=4, category="c", exclude_seen=False
    )
