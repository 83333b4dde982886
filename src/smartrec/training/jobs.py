"""Background training jobs with a durable status row (queued / running / succeeded / failed)."""

from __future__ import annotations

import logging
import math
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from smartrec.domain.clock import now_ms
from smartrec.errors import NotFound, NotReady, SmartrecError
from smartrec.storage.jobs import STALE_REASON
from smartrec.storage.ports import Store
from smartrec.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    """NaN/Infinity are not JSON (PostgreSQL refuses them in jsonb): store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class JobRunner:
    """Runs one training at a time in a worker thread; status lives in the SQL job table."""

    def __init__(
        self,
        trainer: Trainer,
        store: Store,
        on_success: Callable[[TrainResult], None] | None = None,
        stale_after_s: float = 300.0,
    ) -> None:
        self.trainer = trainer
        self.store = store
        self.on_success = on_success
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartrec-train")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.stale_after_ms = int(stale_after_s * 1000)
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def submit(self, request: dict[str, Any], job_id: str | None = None) -> str:
        """Queue a training; ``job_id`` names it (default: a random id)."""
        if self._closed:
            raise NotReady("the server is shutting down; submit the training job again later")
        job_id = job_id or uuid.uuid4().hex
        self.store.create_job(job_id, request)
        future = self._pool.submit(self._run, job_id, request)
        with self._lock:
            self._futures[job_id] = future
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(
                    target=self._beat, name="smartrec-job-heartbeat", daemon=True
                )
                self._heartbeat.start()
        return job_id

    def _beat(self) -> None:
        """Keep this process's unfinished jobs (queued ones too) visibly alive."""
        interval = self.stale_after_ms / 4000
        while not self._heartbeat_stop.wait(interval):
            with self._lock:
                alive = [j for j, f in self._futures.items() if not f.done()]
            try:
                self.store.heartbeat_jobs(alive)
            except Exception:  # a database blip: the next beat will do
                log.warning("job heartbeat failed", exc_info=True)

    def _run(self, job_id: str, request: dict[str, Any]) -> None:
        self.store.update_job(job_id, status="running", started_at=now_ms())
        models = request.get("pipeline")
        log.info(
            "training job %s started: %s",
            job_id,
            "models " + ", ".join(models) if models else "the configured models",
            extra={"job_id": job_id, "job_event": "started"},
        )
        try:
            result = self.trainer.run(models=models, tune_budget_s=request.get("tune_budget_s"))
        except Exception as exc:
            expected = isinstance(exc, SmartrecError)
            message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            if not expected:
                log.error("training job %s crashed:\n%s", job_id, traceback.format_exc())
            log.warning(
                "training job %s failed: %s",
                job_id,
                message,
                extra={"job_id": job_id, "job_event": "failed", "error": message},
            )
            self.store.update_job(job_id, status="failed", error=message, finished_at=now_ms())
            return
        metric = self.trainer.settings.selection_metric
        decision = (
            "promoted to champion"
            if result.promoted
            else f"not promoted (champion {result.champion_before} stays)"
        )
        log.info(
            "training job %s succeeded: version %s (%s) %s=%.4f, %s; candidates: %s",
            job_id,
            result.model_version,
            result.algorithm,
            metric,
            result.metrics.get(metric, float("nan")),
            decision,
            ", ".join(
                f"{name} {scores.get(metric, float('nan')):.4f}"
                for name, scores in result.candidates.items()
            ),
            extra={
                "job_id": job_id,
                "job_event": "succeeded",
                "model_version": result.model_version,
                "promoted": result.promoted,
            },
        )
        # Swap this process to the new champion before reporting success, so that a client who
        # sees "succeeded" is already served by the new version.
        if self.on_success is not None:
            try:
                self.on_success(result)
            except Exception:  # the job itself succeeded; serving will catch up by polling
                log.exception("post-training hook failed for job %s", job_id)
        try:
            self.store.update_job(
                job_id,
                status="succeeded",
                model_version=result.model_version,
                metrics=result.metrics,
                result=_json_safe(result.as_dict()),
                finished_at=now_ms(),
            )
        except Exception as exc:  # never leave the row "running" behind a finished job
            log.exception("could not record the result of job %s", job_id)
            self.store.update_job(
                job_id,
                status="failed",
                model_version=result.model_version,
                error=f"trained version {result.model_version} but could not record the "
                f"result: {type(exc).__name__}: {exc}",
                finished_at=now_ms(),
            )

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        beat = job.get("heartbeat_at")
        if (
            job["status"] in ("queued", "running")
            and beat is not None
            and now_ms() - beat > self.stale_after_ms
        ):
            # Its process stopped beating: it died. Say so rather than "running" forever.
            self.store.fail_orphaned_jobs(STALE_REASON, self.stale_after_ms)
            job = self.store.get_job(job_id) or job
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        return self.get(job_id)

    def shutdown(self, wait: bool = True) -> None:
        """No new jobs. ``wait``: finish the running one first, its heartbeat going on until
        it ends (so that no other process takes it for dead); else queued jobs are cancelled."""
        self._closed = True
        if wait:
            self._pool.shutdown(wait=True)
            self._heartbeat_stop.set()
        else:
            self._heartbeat_stop.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
