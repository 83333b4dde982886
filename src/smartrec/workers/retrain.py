"""Scheduled retraining: one training job per interval across every worker.

Time is cut into slots of ``interval_s``; the job of a slot has a fixed id
(``scheduled-<slot>``). A worker looks for that job and creates it under the store's
cross-process lock (an advisory lock on PostgreSQL), so however many workers run, exactly one
creates it and runs it; the others find it and skip the slot. A slot is skipped too while any
training job (scheduled or sent to the API) is queued or running, so trainings never overlap.
The job is an ordinary training job (``GET /v1/training-jobs/scheduled-<slot>`` shows it),
with the champion rules of a manual one; API processes load a promoted model through their
alias watcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from smartrec.domain.clock import now_ms
from smartrec.storage.jobs import STALE_REASON
from smartrec.storage.ports import Store

log = logging.getLogger(__name__)

LOCK = "smartrec-retrain"


class Submits(Protocol):
    def submit(self, request: dict[str, Any], job_id: str | None = None) -> str: ...


class RetrainScheduler:
    def __init__(
        self,
        jobs: Submits,
        store: Store,
        interval_s: float,
        clock: Callable[[], int] = now_ms,
        stale_after_s: float = 300.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.jobs = jobs
        self.store = store
        self.interval_ms = int(interval_s * 1000)
        self.clock = clock
        self.stale_after_ms = int(stale_after_s * 1000)
        self.stop = threading.Event()

    def job_id(self, slot: int) -> str:
        return f"scheduled-{slot}"

    def tick(self) -> str | None:
        """Start this slot's job unless a worker did, or a training (scheduled or sent to the
        API) is still unfinished; returns its id when this call started it."""
        slot = self.clock() // self.interval_ms
        job_id = self.job_id(slot)
        with self.store.lock(LOCK):
            if self.store.get_job(job_id) is not None:
                return None
            # A job whose process died would block the schedule forever: fail it first.
            self.store.fail_orphaned_jobs(STALE_REASON, self.stale_after_ms)
            busy = self.store.unfinished_jobs()
            if busy:
                log.info("scheduled training %s skipped: %s still unfinished", job_id, busy[0])
                return None
            self.jobs.submit({"scheduled": True}, job_id=job_id)
        log.info("scheduled training %s started", job_id)
        return job_id

    def run(self) -> None:
        """Tick at every slot boundary (and at start) until :attr:`stop` is set."""
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:  # a database blip: the next tick tries again
                log.exception("scheduled training could not be started")
            wait_ms = self.interval_ms - self.clock() % self.interval_ms
            self.stop.wait(min(wait_ms / 1000 + 0.05, 60.0))
