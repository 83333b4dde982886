"""Serving behaviour that needs real storage: seen items, catalog changes across processes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from smartrec.config import Settings
from smartrec.domain import EventRecord, Interactions
from smartrec.models import create
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.serving import PopularRequest, RecommendRequest
from smartrec.serving.service import HISTORY_LIMIT, RecommendationService
from smartrec.storage.sql import SqlStore


def _popularity_service(store: SqlStore, home: Path) -> RecommendationService:
    """A service serving a popularity bundle fitted on what the store holds."""
    snap = store.snapshot()
    data = Interactions.from_events(
        snap.user_ids, snap.item_ids, np.ones(len(snap)), snap.timestamps
    )
    pop = create("popularity").fit(data)
    bundle = ModelBundle(pop, pop, data.items, data.users, {"version": "t"})
    settings = Settings(home=home, reload_interval_s=0)
    registry = ModelRegistry("sqlite:///unused.db", str(home), cache_dir=home)  # never called
    service = RecommendationService(settings, store, registry)
    service.install(bundle)
    return service


def test_items_seen_before_the_history_window_are_not_recommended(db_url: str, home: Path) -> None:
    store = SqlStore(db_url)
    store.migrate()
    n_old = HISTORY_LIMIT + 100
    # The heavy user touched i0..i599, oldest first; i0..i49 are the most popular items.
    events = [EventRecord(f"h{k}", "heavy", f"i{k}", "view", None, 1_000 + k) for k in range(n_old)]
    events += [
        EventRecord(f"p{u}-{k}", f"fan{u}", f"i{k}", "view", None, 5_000 + u)
        for u in range(30)
        for k in range(50)
    ]
    events += [EventRecord(f"n{k}", "fan0", f"new{k}", "view", None, 9_000) for k in range(20)]
    store.add_events(events)
    service = _popularity_service(store, home)
    got = [r.item_id for r in service.recommend(RecommendRequest("heavy", 10)).items]
    assert len(got) == 10
    assert not {f"i{k}" for k in range(n_old)} & set(got), got
    # With exclude_seen=false the popular old items do come back.
    assert "i0" in [
        r.item_id
        for r in service.recommend(RecommendRequest("heavy", 10, exclude_seen=False)).items
    ]
    store.close()


def test_catalog_changes_from_another_process_reach_serving(db_url: str, home: Path) -> None:
    writer = SqlStore(db_url)  # stands for another replica writing to the same database
    writer.migrate()
    writer.add_events(
        [EventRecord(f"e{k}", f"u{k % 5}", f"i{k % 8}", "view", None, 1_000 + k) for k in range(40)]
    )
    reader = SqlStore(db_url)
    service = _popularity_service(reader, home)
    first = service.popular(PopularRequest(3)).items[0].item_id
    assert service.refresh_catalog() == 0  # nothing new
    time.sleep(0.002)
    writer.upsert_items([{"item_id": first, "title": "gone", "available": False}])
    assert service.refresh_catalog() == 1
    assert first not in [r.item_id for r in service.popular(PopularRequest(8)).items]
    assert service.refresh_catalog() == 0  # applied once
    writer.upsert_items([{"item_id": first, "title": "back", "categories": ["c"]}])
    service.refresh_catalog()
    assert [r.item_id for r in service.popular(PopularRequest(3, "c")).items] == [first]
    writer.close()
    reader.close()


def test_windows_do_not_grow_the_cache_without_bound(db_url: str, home: Path) -> None:
    store = SqlStore(db_url)
    store.migrate()
    store.add_events([EventRecord(f"e{k}", "u", f"i{k}", "view", None, k) for k in range(5)])
    service = _popularity_service(store, home)
    for k in range(400):  # every distinct window is a new cache key
        service.popular(PopularRequest(3, None, f"1.{k:06d}d"))
    assert len(service.popularity.cache) <= 256
    store.close()
