"""ModelHolder: installs, reloads when the champion alias moves, applies catalogue edits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from smartrec.config import Settings
from smartrec.domain.clock import now_ms
from smartrec.registry import ModelRegistry
from smartrec.serving.erasures import Erasures
from smartrec.serving.holder import ModelHolder
from smartrec.serving.state import ServingState
from smartrec.storage.memory import MemoryStore
from tests.unit.serving import served


class Calls:
    def __init__(self) -> None:
        self.installed: list[ServingState] = []
        self.catalog = 0

    def on_install(self, state: ServingState) -> None:
        self.installed.append(state)

    def on_catalog(self) -> None:
        self.catalog += 1


def holder(
    store: MemoryStore, tmp_path: Path, registry: served.FakeRegistry
) -> tuple[ModelHolder, Calls]:
    calls = Calls()
    settings = Settings(home=tmp_path, **served.QUIET)
    reg: Any = registry
    typed: ModelRegistry = reg
    made = ModelHolder(settings, store, typed, Erasures(store), calls.on_install, calls.on_catalog)
    return made, calls


def test_install_serves_the_bundle_and_says_so(tmp_path: Path) -> None:
    store = served.world_store()
    h, calls = holder(store, tmp_path, served.FakeRegistry())
    assert h.state is None
    h.install(served.bundle("v1"))
    assert h.state is not None and h.state.version == "v1"
    assert calls.installed == [h.state]


def test_reload_follows_the_champion_alias(tmp_path: Path) -> None:
    store = served.world_store()
    registry = served.FakeRegistry({"v1": served.bundle("v1"), "v2": served.bundle("v2")})
    h, calls = holder(store, tmp_path, registry)
    assert not h.reload()  # no champion yet: nothing to serve
    registry.champion = "v1"
    assert h.reload() and h.state is not None and h.state.version == "v1"
    assert not h.reload()  # the alias did not move: not loaded again
    assert registry.loads == ["v1"]
    before = h.state
    registry.champion = "v2"
    assert h.reload() and h.state.version == "v2"
    assert registry.loads == ["v1", "v2"] and calls.installed == [before, h.state]


def edit(store: MemoryStore, row: dict[str, Any], stamp: int) -> None:
    """Upsert ``row`` as another process would at ``stamp`` (the store moves the row's
    ``updated_at`` past its last one when ``stamp`` is not later)."""
    with mock.patch("smartrec.storage.memory.store.now_ms", lambda: stamp):
        store.upsert_items([row])


def test_catalogue_refresh_applies_rows_changed_by_anyone_once(tmp_path: Path) -> None:
    store = served.world_store(received_ago_ms=60_000)  # the catalogue predates the install
    h, calls = holder(store, tmp_path, served.FakeRegistry())
    h.install(served.bundle())
    state = h.state
    assert state is not None
    # Rows stamped at the mark's millisecond are applied again at install (a write may have
    # committed late within it); from then on only rows changed after are.
    base = calls.catalog
    assert h.refresh_catalog() == 0 and calls.catalog == base
    pos = state.position("i03")
    row = next(i for i in served.world().items if i["item_id"] == "i03")
    assert row["categories"] == ["home", "electronics"]
    assert state.allowed(None)[pos] and state.allowed("home")[pos]
    later = now_ms() + 1_000
    edit(store, {**row, "available": False}, later)  # as another process would
    assert h.refresh_catalog() == 1 and calls.catalog == base + 1
    assert not state.allowed(None)[pos]
    assert h.refresh_catalog() == 0 and calls.catalog == base + 1  # applied once
    edit(store, {**row, "categories": ["garden"]}, later + 1_000)  # back, elsewhere
    assert h.refresh_catalog() == 1
    assert state.allowed(None)[pos] and state.allowed("garden")[pos]
    assert not state.allowed("home")[pos]


def test_two_edits_of_an_item_within_one_millisecond_both_reach_serving(tmp_path: Path) -> None:
    store = served.world_store(received_ago_ms=60_000)
    h, _ = holder(store, tmp_path, served.FakeRegistry())
    h.install(served.bundle())
    state = h.state
    assert state is not None
    pos = state.position("i03")
    row = next(i for i in served.world().items if i["item_id"] == "i03")
    stamp = now_ms() + 1_000
    edit(store, {**row, "available": False}, stamp)
    assert h.refresh_catalog() == 1 and not state.allowed(None)[pos]
    edit(store, {**row, "available": True}, stamp)  # the same millisecond, seen after the poll
    assert h.refresh_catalog() == 1
    assert state.allowed(None)[pos]


class FlakyRegistry(served.FakeRegistry):
    """A registry that can be switched off, as an MLflow server that stops answering."""

    def __init__(self) -> None:
        super().__init__({"v1": served.bundle("v1")})
        self.down = False

    def alias_version(self, alias: str = "champion") -> str | None:
        if self.down:
            raise ConnectionError("mlflow.example:5000 refused the connection")
        return super().alias_version(alias)


def test_a_registry_that_is_down_keeps_the_loaded_model_and_readiness(tmp_path: Path) -> None:
    registry = FlakyRegistry()
    registry.champion = "v1"
    service = served.service(served.world_store(), tmp_path / "a", registry)
    assert service.reload() and service.ready()
    registry.down = True
    with pytest.raises(ConnectionError):
        service.reload()
    assert service.ready() and service.model_version == "v1"  # serving what it has
    assert service.registry_error is not None


def test_no_model_and_a_registry_that_is_down_is_not_ready_until_it_answers(
    tmp_path: Path,
) -> None:
    registry = FlakyRegistry()
    registry.champion = "v1"
    registry.down = True
    service = served.service(served.world_store(), tmp_path / "b", registry)
    with pytest.raises(ConnectionError):
        service.reload()
    # Events are there (the popularity fallback could answer), but another replica may serve
    # the champion: this one says so instead of serving popular items behind a load balancer.
    assert not service.ready()
    registry.down = False
    assert service.reload() and service.ready() and service.registry_error is None


def test_the_watcher_syncs_the_catalogue_while_the_registry_is_down(tmp_path: Path) -> None:
    registry = FlakyRegistry()
    registry.champion = "v1"
    store = served.world_store()
    service = served.service(store, tmp_path / "c", registry, reload_interval_s=0.05)
    service.reload()
    registry.down = True
    stop = threading.Event()
    service.holder.start_watcher(stop)
    try:
        item = served.world().items[0]["item_id"]
        store.upsert_items([{"item_id": item, "title": "renamed while MLflow is down"}])
        state = service.state
        assert state is not None
        position = state.position(item)
        deadline = time.monotonic() + 10
        while state.titles[position] != "renamed while MLflow is down":
            assert time.monotonic() < deadline, "the catalogue stopped syncing"
            time.sleep(0.02)
    finally:
        stop.set()
        service.holder.join()


def test_a_champion_that_cannot_be_loaded_falls_back_to_popular_items(tmp_path: Path) -> None:
    """Not an outage: the registry answers, the version does not load (a damaged bundle). The
    replica serves the popularity fallback, as before, and stays ready."""
    registry = FlakyRegistry()
    registry.champion = "v9"  # not in the registry's bundles: load() raises KeyError
    service = served.service(served.world_store(), tmp_path / "d", registry)
    with pytest.raises(KeyError):
        service.reload()
    assert service.ready() and service.registry_error is None
