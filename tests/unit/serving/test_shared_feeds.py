"""Feeds shared between replicas: the codec, and two services over one feed store."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np

from smartrec.domain import EventRecord
from smartrec.domain.clock import now_ms
from smartrec.pipeline.core import Candidates
from smartrec.serving import feed_codec
from smartrec.serving.feeds import Feed, Ranked
from smartrec.serving.requests import RecommendRequest
from smartrec.serving.service import RecommendationService
from smartrec.serving.shared_feeds import SHARED_MARGIN_MS
from smartrec.serving.state import ServingState
from smartrec.storage.cache.memory import MemoryFeedStore
from tests.unit.serving import served

USER = "u0"


@dataclasses.dataclass
class Axis:
    """What the codec reads of a serving state: the version and the item axis."""

    version: str
    n_model: int
    item_ids: list[str]

    @property
    def n_total(self) -> int:
        return len(self.item_ids)

    def position(self, item_id: str) -> int:
        return self.item_ids.index(item_id) if item_id in self.item_ids else -1


def as_state(axis: Axis) -> ServingState:
    return cast(ServingState, axis)


def a_feed(items: list[int], exclude: list[int]) -> Feed:
    m = len(items)
    names = ["als", "covisit"]
    ranks = np.array([[1.0, np.nan]] * (m - 1), dtype=np.float16)
    ranked = Ranked(
        items=np.asarray(items, dtype=np.int64),
        scores=np.linspace(1, 0, m).astype(np.float32),
        popular=np.array([False] * (m - 1) + [True]),
        cands=Candidates(np.asarray(items[:-1]), ranks.copy(), ranks, names),
        recent=[3, 1],
        exclude=np.asarray(exclude, dtype=np.int64),
        truncated=True,
        sources=np.full((m, 2), -1, dtype=np.int32),
        hashes=np.arange(m, dtype=np.uint32),
        found=np.ones(m, dtype=np.uint64),
    )
    return Feed("v1", ranked, 1234)


def same(a: Feed, b: Feed) -> None:
    assert (a.version, a.built_ms, a.ranked.recent) == (b.version, b.built_ms, b.ranked.recent)
    for field in ("items", "scores", "popular", "exclude", "sources", "hashes", "found"):
        np.testing.assert_array_equal(getattr(a.ranked, field), getattr(b.ranked, field))
    for field in ("items", "scores", "ranks"):
        np.testing.assert_array_equal(
            getattr(a.ranked.cands, field), getattr(b.ranked.cands, field)
        )
    assert a.ranked.cands.names == b.ranked.cands.names
    assert a.ranked.truncated == b.ranked.truncated


def test_items_newer_than_the_model_travel_by_id() -> None:
    """Replica A learned of new items n1, n2 in one order, replica B in the other: positions
    of the model's items are kept, the newer ones map to B's own positions."""
    model = [f"i{k}" for k in range(5)]
    a = Axis("v1", 5, [*model, "n1", "n2"])
    b = Axis("v1", 5, [*model, "n2", "n1"])
    feed = a_feed(items=[6, 0, 5, 2], exclude=[5, 1])
    decoded = feed_codec.decode(feed_codec.encode(feed, as_state(a)), as_state(b))
    assert decoded is not None
    assert [b.item_ids[i] for i in decoded.ranked.items] == ["n2", "i0", "n1", "i2"]
    assert [b.item_ids[i] for i in decoded.ranked.exclude] == ["n1", "i1"]
    assert [b.item_ids[i] for i in decoded.ranked.cands.items] == ["n2", "i0", "n1"]
    back = feed_codec.decode(feed_codec.encode(feed, as_state(a)), as_state(a))
    assert back is not None
    same(back, feed)


def test_a_feed_this_replica_cannot_place_is_a_miss() -> None:
    model = [f"i{k}" for k in range(5)]
    a = Axis("v1", 5, [*model, "n1"])
    data = feed_codec.encode(a_feed(items=[5, 0], exclude=[]), as_state(a))
    assert feed_codec.decode(data, as_state(Axis("v1", 5, model))) is None  # n1 unknown here
    assert feed_codec.decode(data, as_state(Axis("v2", 5, [*model, "n1"]))) is None  # version
    for garbage in (b"", b"SRF1", b"SRF1\x05\x00\x00\x00{}", data[:-1], b"x" + data[1:]):
        assert feed_codec.decode(garbage, as_state(a)) is None


def test_no_bytes_make_decode_raise() -> None:
    """Whatever is in a shared store (another release's layout, damaged values) is a miss,
    never an error: random edits of a real feed, truncations and forged headers."""
    model = [f"i{k}" for k in range(5)]
    axis = Axis("v1", 5, [*model, "n1"])
    data = feed_codec.encode(a_feed(items=[5, 0, 2], exclude=[5]), as_state(axis))
    rng = random.Random(7)
    assert feed_codec.decode(data, as_state(axis)) is not None
    decoded = 0
    for _ in range(3000):  # edited: a miss, or a feed whose positions this replica has
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        got = feed_codec.decode(bytes(raw), as_state(axis))
        if got is not None:
            decoded += 1
            for positions in (got.ranked.items, got.ranked.cands.items, got.ranked.exclude):
                assert ((positions >= 0) & (positions < len(axis.item_ids))).all()
    assert 0 < decoded < 3000  # some edits hit only scores, others the layout
    for cut in range(len(data)):  # truncated: always a miss
        assert feed_codec.decode(data[:cut], as_state(axis)) is None
    head = b'{"version":"v1","arrays":[["items","<i4",[1]]],"extras":["n1"]}'
    for forged in (
        head.replace(b"[1]]]", b'[1]]],"x":1'),
        b'{"version":"v1"}',
        b'{"version":"v1","arrays":7}',
        b"[]",
        b'{"version":"v1","arrays":[["items","<i4",[-1]]]}',
    ):
        body = feed_codec.MAGIC + len(forged).to_bytes(4, "little") + forged + b"\xfe\xff\xff\xff"
        assert feed_codec.decode(body, as_state(axis)) is None


def pair(
    tmp_path: Path, **settings: Any
) -> tuple[MemoryFeedStore, RecommendationService, RecommendationService]:
    """One store of events (received ten minutes ago), one shared feed store, two serving
    replicas of one model."""
    shared = MemoryFeedStore()
    store = served.world_store(received_ago_ms=600_000)
    replicas = []
    for name in ("a", "b"):
        service = served.service(store, tmp_path / name, shared_feeds=shared, **settings)
        service.install(served.bundle())
        replicas.append(service)
    return (shared, *replicas)


def ids(service: RecommendationService, user: str = USER, n: int = 10) -> list[str]:
    return [r.item_id for r in service.recommend(RecommendRequest(user, n=n)).items]


def test_a_feed_built_on_one_replica_is_served_by_the_other(tmp_path: Path) -> None:
    shared, a, b = pair(tmp_path)
    first = ids(a)
    assert a.feeds.cache.shared_hits == 0 and shared.fetch(USER)[0] is not None
    assert ids(b) == first
    assert b.feeds.cache.shared_hits == 1  # not ranked again on b
    assert ids(b) == first and b.feeds.cache.shared_hits == 1  # now b's own copy
    # Pages and reasons from the shared copy are those of the original.
    page_a = a.recommend(RecommendRequest(USER, n=3))
    page_b = b.recommend(RecommendRequest(USER, n=3))
    assert [(r.item_id, r.reasons) for r in page_a.items] == [
        (r.item_id, r.reasons) for r in page_b.items
    ]


def test_an_event_drops_the_shared_feed_before_replicas_rebuild(tmp_path: Path) -> None:
    shared, a, b = pair(tmp_path)
    first = ids(a)
    top = first[0]
    a.store.add_events([EventRecord("e-new", USER, top, "purchase", None, now_ms())])
    # What the runtime does for the process that stored the event (Runtime.events_stored).
    shared.invalidate([USER])
    a.events_arrived([USER])
    b.events_arrived([USER])  # the change feed's notice
    assert top not in ids(b)
    # Right after the notice a takes no shared feed (in case the writer had not reached
    # Redis): it ranks for itself. Once the margin is past, a feed b built then is shared.
    assert top not in ids(a) and a.feeds.cache.shared_hits == 0
    later = now_ms() + SHARED_MARGIN_MS + 10
    with mock.patch("smartrec.serving.service.now_ms", return_value=later):
        a.feeds.cache.local.clear()
        b.feeds.cache.local.clear()
        shared.invalidate([USER])  # (the stored feed was built within the margin)
        assert top not in ids(b)
    with mock.patch("smartrec.serving.shared_feeds.now_ms", return_value=later):
        assert ids(a) == ids(b) and a.feeds.cache.shared_hits == 1


def test_a_notice_protects_from_a_feed_the_writer_could_not_drop_in_redis(
    tmp_path: Path,
) -> None:
    """The writer stored an event but could not reach Redis: the old feed is still there.
    Every replica that heard the notice refuses it (and so does the writer itself)."""
    shared, a, b = pair(tmp_path)
    top = ids(a)[0]
    assert shared.fetch(USER)[0] is not None
    a.store.add_events([EventRecord("e-new", USER, top, "purchase", None, now_ms())])
    a.events_arrived([USER])  # no shared.invalidate: Redis was away
    b.events_arrived([USER])
    assert top not in ids(a) and top not in ids(b)
    assert a.feeds.cache.shared_hits == b.feeds.cache.shared_hits == 0


def test_a_replica_that_starts_looks_back_over_the_feeds_lifetime(tmp_path: Path) -> None:
    """A feed in Redis older than an event whose invalidation never reached Redis (its writer
    has restarted since): a replica that starts finds the event in the log before it takes any
    feed, and builds that user's feed itself."""
    shared, a, _ = pair(tmp_path)
    top = ids(a)[0]
    a.store.add_events([EventRecord("e-new", USER, top, "purchase", None, now_ms())])
    late = served.service(a.store, tmp_path / "late", shared_feeds=shared, feed_poll_interval_s=60)
    late.install(served.bundle())
    stop = threading.Event()
    late.feeds.start_poller(stop)  # what start() does first
    try:
        assert top not in ids(late) and late.feeds.cache.shared_hits == 0
        other = next(u for u in a.store.active_users(5) if u != USER)
        ids(a, other)
        assert ids(late, other) == ids(a, other) and late.feeds.cache.shared_hits == 1
    finally:
        stop.set()
        late.feeds.join()


def test_a_shared_feed_older_than_an_event_found_by_the_poll_is_not_served(
    tmp_path: Path,
) -> None:
    """The writer could not reach Redis (no invalidation): the shared feed is stale. A replica
    whose poll found the event refuses it, builds afresh, and shares the fresh one."""
    shared, a, b = pair(tmp_path)
    top = ids(a)[0]
    received = now_ms()
    a.store.add_events([EventRecord("e-new", USER, top, "purchase", None, received)])
    time.sleep(0.01)
    # What b's poll marks (the commit margin left out: b's own build follows at once).
    b.feeds.cache.invalidate(USER, received, 0)
    assert top not in ids(b) and b.feeds.cache.shared_hits == 0
    data, _ = shared.fetch(USER)
    assert data is not None
    fresh = feed_codec.decode(data, b.state)  # type: ignore[arg-type]
    assert fresh is not None and fresh.built_ms > received


def test_an_erasure_drops_the_shared_feed(tmp_path: Path) -> None:
    shared, a, _b = pair(tmp_path)
    ids(a)
    assert shared.fetch(USER)[0] is not None
    a.user_erased(USER)
    assert shared.fetch(USER)[0] is None


def test_a_replica_that_starts_takes_feeds_from_the_shared_store(tmp_path: Path) -> None:
    _shared, a, b = pair(tmp_path)
    assert a.build_feeds(25) == 25
    assert b.build_feeds(25) == 0  # nothing to rank: all 25 came from the store
    status = b.feed_status()
    assert status["build"]["shared"] == 25 and status["cached"] == 25
    assert status["shared"] and status["shared_hits"] == 25


def test_another_model_version_does_not_take_the_feeds(tmp_path: Path) -> None:
    _shared, a, b = pair(tmp_path)
    first = ids(a)
    b.install(served.bundle(version="v2"))
    assert ids(b) == first  # the same model fitted once: same answer, ranked by b itself
    assert b.feeds.cache.shared_hits == 0


def test_paths_that_store_no_feed_never_read_the_shared_store(tmp_path: Path) -> None:
    shared, a, _ = pair(tmp_path, feeds_enabled=False)
    with mock.patch.object(shared, "fetch", wraps=shared.fetch) as fetch:
        ids(a)
        a.recommend(RecommendRequest(USER, n=5, exclude_seen=False))
    assert fetch.call_count == 0
    assert shared.fetch(USER)[0] is None
    _, on, _ = pair(tmp_path / "on")
    with mock.patch.object(on.feeds.cache.store, "fetch", wraps=on.feeds.cache.store.fetch) as f:
        on.recommend(RecommendRequest(USER, n=5, exclude_seen=False))
        assert f.call_count == 0
        ids(on)
        assert f.call_count == 1  # the lookup, which also reads the generation to build with


def test_the_event_loop_reads_the_shared_feed_without_the_thread_pool(tmp_path: Path) -> None:
    """What the API's lane does: ``recommend_fast`` (no I/O) misses on b, then
    ``recommend_shared`` reads the store asynchronously and answers from a's feed."""
    _shared, a, b = pair(tmp_path)
    first = ids(a)
    request = RecommendRequest(USER, n=10)
    assert b.recommend_fast(request) is None
    results = asyncio.run(b.recommend_shared(request))
    assert results is not None and [r.item_id for r in results.items] == first
    assert b.feeds.cache.shared_hits == 1
    assert b.recommend_fast(request) is not None  # kept on b from then on
    assert asyncio.run(b.recommend_shared(RecommendRequest("nobody-yet", n=10))) is None
