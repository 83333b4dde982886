"""A small served world for the serving components' unit tests: the seeded synthetic world in a
:class:`MemoryStore`, a pipeline fitted on it (small models, score fusion: no LightGBM, no
MLflow), and a :class:`RecommendationService` over both with a registry stand-in."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from smartrec.config import Settings
from smartrec.domain import EventRecord, EventWeights, IdMap, Interactions
from smartrec.domain.clock import now_ms
from smartrec.domain.records import CatalogItem
from smartrec.models import create
from smartrec.pipeline.spec import PipelineSpec, load_spec, parse_spec
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.serving.service import RecommendationService
from smartrec.serving.state import ServingState
from smartrec.storage.cache import FeedStore, SharedCache
from smartrec.storage.memory import MemoryStore
from tests.worlds import World, small_world

MODELS: dict[str, dict[str, Any]] = {"als": {"factors": 8, "iterations": 4}, "ease": {"l2": 50.0}}
#: Background threads off: tests drive builds, polls and reloads themselves.
QUIET: dict[str, Any] = {
    "reload_interval_s": 0,
    "live_stats_interval_s": 0,
    "feed_poll_interval_s": 0,
    "feed_precompute_users": 0,
    "user_cache_ttl_s": 0,
}


@cache
def world() -> World:
    return small_world()


def records(events: list[dict[str, Any]]) -> list[EventRecord]:
    return [
        EventRecord(
            e["event_id"],
            e["user_id"],
            e["item_id"],
            e["type"],
            e.get("value"),
            e["timestamp"] * 1000,
        )
        for e in events
    ]


def world_store(received_ago_ms: int = 0) -> MemoryStore:
    """A fresh store holding the world's catalogue and events (each test gets its own), the
    rows stamped ``received_ago_ms`` before now (the event poll judges feeds by that)."""
    store = MemoryStore()
    stamp = now_ms() - received_ago_ms
    with mock.patch("smartrec.storage.memory.store.now_ms", lambda: stamp):
        store.upsert_items(world().items)
        store.add_events(records(world().events))
    return store


def spec(covisit: bool = False) -> PipelineSpec:
    """The shipped pipeline with small models and score fusion (plus a covisit retriever)."""
    s = load_spec().with_models(MODELS)
    s = s.model_copy(update={"ranker": s.ranker.model_copy(update={"kind": "fusion"})})
    if covisit:
        block = {"name": "covisit", "kind": "covisit", "n": 50, "recent": 20, "weight": 0.5}
        extra = parse_spec({"retrievers": [block]}).retrievers
        s = s.model_copy(update={"retrievers": [*s.retrievers, *extra]})
    return s


def training_data(store: MemoryStore) -> tuple[Interactions, dict[str, CatalogItem]]:
    """What the trainer reads: weighted events, catalogue items without events appended."""
    snap = store.snapshot()
    catalog = store.catalog(with_text=True)
    cold = [i for i, row in catalog.items() if not row.placeholder]
    data = Interactions.from_events(
        snap.user_ids,
        snap.item_ids,
        EventWeights().weigh(snap.types, snap.values),
        snap.timestamps,
        items=IdMap.from_values(list(snap.item_ids) + cold),
        item_categories={k: v.categories for k, v in catalog.items()},
    )
    return data, catalog


@cache
def _fitted(covisit: bool) -> ModelBundle:
    from smartrec.training.pipeline_fit import fit_pipeline

    data, catalog = training_data(world_store())
    pipeline = fit_pipeline(data, spec(covisit), catalog)
    return ModelBundle(
        model=create("ease", l2=50.0).fit(data),
        popularity=create("popularity").fit(data),
        items=data.items,
        users=data.users,
        meta={"version": "v1"},
        pipeline=pipeline,
    )


def bundle(version: str = "v1", covisit: bool = False, **rules: Any) -> ModelBundle:
    """A copy of the pipeline bundle fitted once (serving extends a pipeline's content index in
    place, so each test serves its own copy); ``rules`` override the spec's rules."""
    held = _fitted(covisit)
    pipeline = held.pipeline
    assert pipeline is not None
    s = pipeline.spec
    if rules:
        s = s.model_copy(update={"rules": s.rules.model_copy(update=rules)})
    copy = dataclasses.replace(pipeline, spec=s, info=dict(pipeline.info))
    return dataclasses.replace(held, pipeline=copy, meta={"version": version})


def state(store: MemoryStore, **rules: Any) -> ServingState:
    """A serving state of the pipeline over ``store``'s catalogue."""
    b = bundle(**rules)
    return ServingState(b, store.catalog(b.items.to_list()), EventWeights())


class FakeRegistry:
    """The two registry calls serving makes: the champion's version, and loading a version."""

    def __init__(self, bundles: dict[str, ModelBundle] | None = None) -> None:
        self.bundles = dict(bundles or {})
        self.champion: str | None = None
        self.loads: list[str] = []

    def alias_version(self, alias: str = "champion") -> str | None:
        return self.champion

    def load(self, version: str) -> ModelBundle:
        self.loads.append(version)
        return self.bundles[version]


def service(
    store: MemoryStore,
    home: Path,
    registry: FakeRegistry | None = None,
    shared_feeds: FeedStore | None = None,
    shared_cache: SharedCache | None = None,
    **settings: Any,
) -> RecommendationService:
    """A service over ``store`` (no background threads); installs nothing."""
    config = Settings(**{"home": home, **QUIET, **settings})
    reg: Any = registry or FakeRegistry()
    typed: ModelRegistry = reg
    return RecommendationService(config, store, typed, shared_feeds, shared_cache)


def positions(state: ServingState, item_ids: list[str]) -> np.ndarray:
    return np.asarray([state.position(i) for i in item_ids], dtype=np.int64)
