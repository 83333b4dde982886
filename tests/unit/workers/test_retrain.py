"""The retraining schedule: one job per interval across workers, never two at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from smartrec.storage.memory import MemoryStore
from smartrec.workers import RetrainScheduler


class Jobs:
    """Records what would be trained; the job row is created as JobRunner.submit does."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.submitted: list[str] = []

    def submit(self, request: dict[str, Any], job_id: str | None = None) -> str:
        assert job_id is not None and request == {"scheduled": True}
        self.store.create_job(job_id, request)
        self.submitted.append(job_id)
        return job_id


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_one_job_per_interval_however_many_workers_tick() -> None:
    store, clock = MemoryStore(), Clock(10_000)
    jobs = Jobs(store)
    workers = [RetrainScheduler(jobs, store, 60, clock) for _ in range(3)]
    assert [w.tick() for w in workers] == ["scheduled-0", None, None]
    clock.ms = 59_999
    assert [w.tick() for w in workers] == [None, None, None]
    store.update_job("scheduled-0", status="succeeded")
    clock.ms = 60_000
    assert [w.tick() for w in reversed(workers)] == ["scheduled-1", None, None]
    assert jobs.submitted == ["scheduled-0", "scheduled-1"]


@pytest.mark.parametrize(
    ("status", "started"),
    [("queued", False), ("running", False), ("failed", True), ("succeeded", True)],
)
def test_a_slot_is_skipped_while_any_training_is_unfinished(status: str, started: bool) -> None:
    """Whoever started it (an earlier slot, however far back, or ``POST /v1/training-jobs``)."""
    store, clock = MemoryStore(), Clock(0)
    jobs = Jobs(store)
    scheduler = RetrainScheduler(jobs, store, 10, clock)
    store.create_job("manual", {})
    store.update_job("manual", status=status)
    clock.ms = 30_000
    assert (scheduler.tick() == "scheduled-3") is started
    store.update_job("manual", status="succeeded")
    clock.ms = 40_000
    assert scheduler.tick() == (None if started else "scheduled-4")


def test_a_job_whose_process_died_does_not_block_the_schedule() -> None:
    store, clock = MemoryStore(), Clock(0)
    jobs = Jobs(store)
    store.create_job("orphan", {})
    store.update_job("orphan", status="running", worker="elsewhere:1", heartbeat_at=0)
    scheduler = RetrainScheduler(jobs, store, 10, clock, stale_after_s=60)
    assert scheduler.tick() == "scheduled-0"
    assert store.get_job("orphan")["status"] == "failed"  # type: ignore[index]


def test_ticks_racing_in_threads_start_the_slot_once() -> None:
    store = MemoryStore()
    jobs = Jobs(store)
    clock = Clock(5_000)
    barrier = threading.Barrier(8)
    started: list[str | None] = []

    def tick() -> None:
        scheduler = RetrainScheduler(jobs, store, 30, clock)
        barrier.wait()
        started.append(scheduler.tick())

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert started.count("scheduled-0") == 1 and started.count(None) == 7
    assert jobs.submitted == ["scheduled-0"]


def test_run_ticks_at_start_and_stops_when_asked() -> None:
    store = MemoryStore()
    jobs = Jobs(store)
    scheduler = RetrainScheduler(jobs, store, 3600)
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    deadline = time.monotonic() + 5
    while not jobs.submitted:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    scheduler.stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and len(jobs.submitted) == 1


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetrainScheduler(Jobs(MemoryStore()), MemoryStore(), 0)
