"""Background training jobs with a durable status row (queued / running / succeeded / failed)."""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from smartrec.errors import NotFound, SmartrecError
from smartrec.storage.sql.store import SqlStore, now_ms
from smartrec.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


class JobRunner:
    """Runs one training at a time in a worker thread; status lives in the SQL job table."""

    def __init__(
        self,
        trainer: Trainer,
        store: SqlStore,
        on_success: Callable[[TrainResult], None] | None = None,
    ) -> None:
        self.trainer = trainer
        self.store = store
        self.on_success = on_success
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartrec-train")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def submit(self, request: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        self.store.create_job(job_id, request)
        future = self._pool.submit(self._run, job_id, request)
        with self._lock:
            self._futures[job_id] = future
        return job_id

    def _run(self, job_id: str, request: dict[str, Any]) -> None:
        self.store.update_job(job_id, status="running", started_at=now_ms())
        try:
            result = self.trainer.run(models=request.get("pipeline"))
        except Exception as exc:
            expected = isinstance(exc, SmartrecError)
            message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            if not expected:
                log.error("training job %s crashed:\n%s", job_id, traceback.format_exc())
            self.store.update_job(job_id, status="failed", error=message, finished_at=now_ms())
            return
        # Swap this process to the new champion before reporting success, so that a client who
        # sees "succeeded" is already served by the new version.
        if self.on_success is not None:
            try:
                self.on_success(result)
            except Exception:  # the job itself succeeded; serving will catch up by polling
                log.exception("post-training hook failed for job %s", job_id)
        self.store.update_job(
            job_id,
            status="succeeded",
            model_version=result.model_version,
            metrics=result.metrics,
            result=result.as_dict(),
            finished_at=now_ms(),
        )

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        return self.get(job_id)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
