"""Trending that moves: the served pipeline's window counts follow the event log."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np

from smartrec.domain import EventRecord
from smartrec.pipeline.features import ItemColumns
from smartrec.serving.live_stats import THROTTLE
from smartrec.serving.requests import RecommendRequest
from smartrec.storage.cache.memory import MemorySharedCache
from smartrec.storage.memory import MemoryStore
from tests.unit.serving import served


def _popular_order(service: object) -> list[str]:
    state = service.state  # type: ignore[attr-defined]
    retriever = state.pipeline.retriever("popular")
    order, _ = retriever._arrays()
    return [state.item_ids[i] for i in order[:5]]


def _burst(store: MemoryStore, item: str, n: int, ts_ms: int) -> None:
    """``n`` users buy ``item`` at ``ts_ms`` (inside every window ending at the newest event)."""
    store.add_events(
        [
            EventRecord(f"burst-{item}-{k}", f"burst-user-{k}", item, "purchase", None, ts_ms)
            for k in range(n)
        ]
    )


def test_an_item_that_takes_off_reaches_the_trending_candidates(tmp_path: Path) -> None:
    store = served.world_store()
    service = served.service(store, tmp_path)
    service.install(served.bundle())
    state = service.state
    assert state is not None and state.pipeline is not None
    window = next(iter(state.pipeline.stats.window_counts))
    service.refresh_live_stats()  # the log as it is (training counted an earlier split)
    assert not service.refresh_live_stats()  # nothing new: nothing swapped
    counts = state.pipeline.stats.window_counts[window]
    quiet = state.item_ids[int(np.argmin(counts[: state.n_model]))]
    assert quiet not in _popular_order(service)
    newest = store.newest_event_ms()
    assert newest is not None
    before = service.live_stats_status()["refreshed"]
    _burst(store, quiet, 500, newest)
    assert service.refresh_live_stats()
    assert _popular_order(service)[0] == quiet
    live = state.pipeline.stats.window_counts[window]
    assert live[state.position(quiet)] == counts[state.position(quiet)] + 500
    # A visitor with no history gets the popular retriever's head, now led by it.
    got = service.recommend(RecommendRequest("first-visit", n=10)).items
    assert quiet in [r.item_id for r in got]
    status = service.live_stats_status()
    assert status["refreshed"] == before + 1 and status["last"]["changed"]


def test_replicas_count_once_per_period_through_the_shared_cache(tmp_path: Path) -> None:
    store = served.world_store()
    shared = MemorySharedCache()
    replicas = []
    for name in ("a", "b"):
        service = served.service(
            store, tmp_path / name, shared_cache=shared, live_stats_interval_s=60
        )
        service.install(served.bundle())
        replicas.append(service)
    with mock.patch.object(store, "item_activity", wraps=store.item_activity) as activity:
        for service in replicas:
            service.refresh_live_stats()
    windows = len(replicas[0].state.pipeline.stats.window_counts)  # type: ignore[union-attr]
    assert activity.call_count == windows  # b read a's counts
    a, b = (s.state.pipeline.stats.window_counts for s in replicas)  # type: ignore[union-attr]
    for window in a:
        np.testing.assert_array_equal(a[window], b[window])


def test_the_thread_recounts_every_interval_and_stops(tmp_path: Path) -> None:
    store = served.world_store()
    service = served.service(store, tmp_path, live_stats_interval_s=0.05)
    service.install(served.bundle())
    service.refresh_live_stats()
    state = service.state
    assert state is not None and state.pipeline is not None
    quiet = state.item_ids[state.n_model - 1]
    newest = store.newest_event_ms()
    assert newest is not None
    _burst(store, quiet, 500, newest)
    stop = threading.Event()
    service.live.start(stop, lambda: service.state)
    deadline = time.monotonic() + 10
    while _popular_order(service)[0] != quiet:
        assert time.monotonic() < deadline, "the counts never moved"
        time.sleep(0.02)
    stop.set()
    service.live.join()
    assert service.live._thread is None


def test_a_slow_recount_spaces_out_the_next(tmp_path: Path) -> None:
    service = served.service(served.world_store(), tmp_path, live_stats_interval_s=5)
    live = service.live
    assert live.next_wait() == 5
    live.last = {"seconds": 2.0}  # a million active items
    assert live.next_wait() == 2.0 * THROTTLE
    live.last = {"seconds": 0.01}
    assert live.next_wait() == 5


def test_swapping_statistics_builds_their_columns_once_outside_requests(tmp_path: Path) -> None:
    """Requests racing a swap never rebuild the feature columns (a second at a million items):
    the swap builds them and installs both under one lock."""
    service = served.service(served.world_store(), tmp_path)
    service.install(served.bundle())
    pipeline = service.state.pipeline  # type: ignore[union-attr]
    assert pipeline is not None
    stop = threading.Event()
    built: list[object] = []
    real_build = ItemColumns.build

    def counting(stats: object) -> ItemColumns:
        built.append(stats)
        return real_build(stats)  # type: ignore[arg-type]

    def requests() -> None:
        while not stop.is_set():
            _ = pipeline.item_columns

    with mock.patch.object(ItemColumns, "build", side_effect=counting):
        readers = [threading.Thread(target=requests) for _ in range(3)]
        for reader in readers:
            reader.start()
        swaps = [dataclasses.replace(pipeline.stats) for _ in range(20)]
        for stats in swaps:
            pipeline.use_stats(stats)
        stop.set()
        for reader in readers:
            reader.join()
    assert built == swaps  # one build per swap, each from the swapped-in statistics
    assert pipeline.item_columns.stats is swaps[-1]


def test_sessions_since_training_reach_the_co_visitation_retriever(tmp_path: Path) -> None:
    """Shoppers now view X then Y in one session; the trained matrix never paired them. After
    a recount, a visitor who views X gets Y, because of X, from co-visitation."""
    store = served.world_store()
    service = served.service(store, tmp_path)
    service.install(served.bundle(covisit=True))
    state = service.state
    assert state is not None and state.pipeline is not None
    covisit = state.pipeline.retriever("covisit")
    assert covisit.matrix is not None
    trained = covisit.matrix.copy()  # what training fitted, apart from the object it keeps
    x, y = next(
        (a, b)
        for a in range(state.n_model)
        for b in range(state.n_model)
        if a != b and trained[a, b] == 0 and trained.getrow(a).nnz
    )
    x_id, y_id = state.item_ids[x], state.item_ids[y]
    newest = store.newest_event_ms()
    assert newest is not None
    store.add_events(
        [
            EventRecord(f"s{k}-{item}", f"shopper-{k}", item, "view", None, newest + at)
            for k in range(30)
            for item, at in ((x_id, 1_000), (y_id, 2_000))
        ]
    )
    assert service.refresh_live_stats()
    assert covisit.matrix is not None and covisit.matrix[x, y] > 0 and covisit.matrix[y, x] > 0
    assert covisit.matrix.getrow(x).nnz <= covisit.params.neighbours
    assert not service.refresh_live_stats()  # nothing new since
    items, sums = covisit._sums([x])  # a visitor whose newest item is X
    rank = int(np.sum(sums > sums[np.flatnonzero(items == y)[0]]))
    assert rank < covisit.config.n  # Y is among X's co-visited candidates now
    store.add_events([EventRecord("v1", "visitor", x_id, "view", None, newest + 5_000)])
    got = service.recommend(RecommendRequest("visitor", n=100)).items
    found = {r.item_id: r.reasons for r in got}
    assert y_id in found, [r.item_id for r in got]
    assert {"kind": "similar_to", "item_id": x_id, "via": "covisit"}.items() <= next(
        reason for reason in found[y_id] if reason.get("via") == "covisit"
    ).items()
    # What a bundle saves is still what training fitted.
    saved = tmp_path / "saved"
    covisit.save(saved)
    with np.load(saved / "covisit.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["data"], trained.data)
        np.testing.assert_array_equal(npz["indices"], trained.indices)
