"""Training's promotion under contention and registry failures.

Each test here fails on a mutant that the suite once let through (issue 11): the promotion lock
replaced by ``nullcontext()``, and a registry error swallowed so that training promotes blindly.
A real trainer on SQLite and the embedded MLflow registry, on a small event log.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from smartrec.config import Settings
from smartrec.domain import EventRecord
from smartrec.runtime import build_registry
from smartrec.storage.sql import SqlStore
from smartrec.training import Trainer, TrainResult

#: The name every process takes the promotion lock under (API jobs, ``smartrec train``).
PROMOTION_LOCK = "smartrec-promotion"
WAIT_S = 120.0


def _events(prefix: str, t0: int) -> list[EventRecord]:
    """Two taste groups over 20 items, every user active throughout: the newest tenth (the
    validation window) holds users with earlier history, so that models are compared."""
    out = []
    for u in range(40):
        base = 0 if u % 2 == 0 else 10
        for k in range(8):
            item = base + (u * 3 + k) % 10
            out.append(
                EventRecord(f"{prefix}{u}-{k}", f"u{u}", f"i{item}", "view", None, t0 + k * 100 + u)
            )
    return out


@pytest.fixture()
def trainer(tmp_path: Path) -> Any:
    """A popularity-only trainer (fast) with a stored log; closed afterwards."""
    settings = Settings(home=tmp_path / "home", models={"popularity": {}}, pipeline_enabled=False)
    settings.ensure_home()
    store = SqlStore(settings.resolved_database_url)
    store.migrate()
    store.add_events(_events("a", 1_000_000))
    yield Trainer(settings, store, build_registry(settings))
    store.close()


def test_the_champion_is_read_and_moved_only_under_the_promotion_lock(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the lock, a finished job registers its version but must
    not read the champion (it would compare against one about to change)."""
    registered, read = threading.Event(), threading.Event()
    register, alias_version = trainer.registry.register, trainer.registry.alias_version

    def register_spy(*args: Any, **kwargs: Any) -> Any:
        info = register(*args, **kwargs)
        registered.set()
        return info

    def alias_spy(*args: Any, **kwargs: Any) -> Any:
        read.set()
        return alias_version(*args, **kwargs)

    monkeypatch.setattr(trainer.registry, "register", register_spy)
    monkeypatch.setattr(trainer.registry, "alias_version", alias_spy)
    results: list[TrainResult] = []
    other = SqlStore(trainer.settings.resolved_database_url)  # another process's connection
    thread = threading.Thread(target=lambda: results.append(trainer.run()), daemon=True)
    with other.lock(PROMOTION_LOCK):
        thread.start()
        assert registered.wait(WAIT_S), "the job never registered its version"
        # Without the lock the read follows the registration within milliseconds; with it,
        # it cannot happen at all until the lock is released below.
        assert not read.wait(2.0), "the champion was read while another process held the lock"
    thread.join(WAIT_S)
    assert not thread.is_alive()
    other.close()
    assert results and results[0].promoted
    assert alias_version("champion") == results[0].model_version


def test_a_registry_error_reading_the_champion_fails_the_job_and_promotes_nothing(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable alias is not "no champion": promoting then would replace a good model
    blindly. The job fails and the alias stays where it was."""
    first = trainer.run()
    assert first.promoted
    moved: list[str] = []

    def unreachable(*args: Any, **kwargs: Any) -> str | None:
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(trainer.registry, "alias_version", unreachable)
    monkeypatch.setattr(trainer.registry, "set_alias", lambda alias, v: moved.append(v))
    with pytest.raises(ConnectionError, match="registry unreachable"):
        trainer.run()
    assert moved == []
    monkeypatch.undo()
    assert trainer.registry.alias_version("champion") == first.model_version


def test_a_champion_the_registry_cannot_load_stays(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A champion that cannot be re-scored (registry error loading it) is kept, with a note:
    a person can promote by hand; training must not."""
    first = trainer.run()
    assert first.promoted

    def broken(version: str) -> Any:
        raise OSError(f"artifact of version {version} unreadable")

    monkeypatch.setattr(trainer.registry, "load", broken)
    second = trainer.run()
    assert second.champion_before == first.model_version
    assert second.promoted is False
    assert second.champion_metrics is None
    assert any("unreadable" in note for note in second.notes), second.notes
    monkeypatch.undo()
    assert trainer.registry.alias_version("champion") == first.model_version
