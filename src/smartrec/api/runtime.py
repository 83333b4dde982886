"""Everything one API process holds, built from settings (no import-time singletons)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from smartrec.config import Settings
from smartrec.ingest import Ingestor
from smartrec.registry import ModelRegistry
from smartrec.serving import RecommendationService
from smartrec.storage.sql import SqlStore
from smartrec.training import JobRunner, Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: SqlStore
    registry: ModelRegistry
    ingestor: Ingestor
    service: RecommendationService
    trainer: Trainer
    jobs: JobRunner

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.ensure_home()
        store = SqlStore(settings.resolved_database_url)
        registry = build_registry(settings)
        ingestor = Ingestor(store, store, settings.weights, settings.max_batch_size)
        service = RecommendationService(settings, store, registry)
        trainer = Trainer(settings, store, registry)

        def after_training(result: TrainResult) -> None:
            if result.promoted:
                service.reload()

        jobs = JobRunner(trainer, store, on_success=after_training)
        return cls(settings, store, registry, ingestor, service, trainer, jobs)

    def start(self) -> None:
        """Migrate, recover, load the champion, watch the registry."""
        self.store.migrate()
        if self.store.dialect == "sqlite":
            # Embedded mode runs jobs in this process only: any left running died with it.
            failed = self.store.fail_unfinished_jobs("the server stopped while the job was running")
            if failed:
                log.warning("marked %d interrupted training job(s) as failed", failed)
        if self.settings.load_model_on_start:
            try:
                self.service.reload()
            except Exception:
                log.exception("could not load the champion model; serving popular items")
        self.service.start_watcher()

    def stop(self) -> None:
        self.service.stop()
        self.jobs.shutdown(wait=False)
        self.store.close()


def build_registry(settings: Settings) -> ModelRegistry:
    remote = settings.resolved_registry_url.startswith(("http://", "https://", "databricks"))
    # With a tracking server, artifacts go where the server keeps them unless told otherwise:
    # a local default directory would be invisible to the other replicas.
    artifacts = settings.artifacts_url if remote else settings.resolved_artifacts_url
    return ModelRegistry(
        settings.resolved_registry_url,
        artifacts,
        model_name=settings.model_name,
        experiment=settings.experiment,
        cache_dir=settings.resolved_home / "cache" / "models",
    )
