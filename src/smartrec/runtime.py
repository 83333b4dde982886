"""Everything one smartrec process holds, built from settings (no import-time singletons).

Outside the HTTP package so that the CLI, the demo and workers build the same wiring without
importing `smartrec.api`."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from smartrec.config import Settings
from smartrec.domain.records import EventRecord
from smartrec.errors import ConfigError
from smartrec.ingest import Ingestor
from smartrec.keys import ApiKeys
from smartrec.registry import ModelRegistry
from smartrec.serving import RecommendationService
from smartrec.storage import RecordStore, Store, key_store, open_store, record_store
from smartrec.storage.cache import (
    ChangeFeed,
    FeedStore,
    SharedCache,
    open_change_feed,
    open_feed_store,
    open_shared_cache,
)
from smartrec.storage.events import EventBus, open_event_bus
from smartrec.storage.jobs import STALE_REASON
from smartrec.training import JobRunner, Trainer, TrainResult
from smartrec.workers import EventWorker, RetrainScheduler, WorkerMetrics

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    registry: ModelRegistry
    ingestor: Ingestor
    service: RecommendationService
    trainer: Trainer
    jobs: JobRunner
    keys: ApiKeys
    records: RecordStore
    bus: EventBus
    changes: ChangeFeed
    shared_feeds: FeedStore | None
    shared_cache: SharedCache | None

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.ensure_home()
        store = open_store(settings.resolved_database_url)
        registry = build_registry(settings)
        bus = open_event_bus(
            settings.events_url,
            store,
            settings.events_publish_timeout_s,
            settings.events_retry_after_s,
        )
        ingestor = Ingestor(
            store,
            store,
            settings.weights,
            settings.max_batch_size,
            settings.max_future_skew_s,
            bus=bus,
        )
        shared_feeds = feed_store(settings)
        shared_cache = open_shared_cache(settings.cache_url, key_prefix(settings))
        service = RecommendationService(settings, store, registry, shared_feeds, shared_cache)
        trainer = Trainer(settings, store, registry)

        def after_training(result: TrainResult) -> None:
            if result.promoted:
                service.reload()

        jobs = JobRunner(
            trainer, store, on_success=after_training, stale_after_s=settings.job_stale_after_s
        )
        keys = ApiKeys(key_store(store), ttl_s=settings.auth_cache_ttl_s)
        return cls(
            settings,
            store,
            registry,
            ingestor,
            service,
            trainer,
            jobs,
            keys,
            record_store(store),
            bus,
            change_feed(settings),
            shared_feeds,
            shared_cache,
        )

    def start(self) -> None:
        """Migrate, recover, load the champion, watch the registry.

        Several workers (``uvicorn --workers N``) or replicas start at once: schema migrations
        and MLflow's first set-up run under a lock so that exactly one of them does the work.
        """
        with startup_lock(self.settings, self.store):
            self.store.migrate()
            self.check_auth()
            if self.settings.load_model_on_start:
                try:
                    self.service.reload()
                except Exception:
                    log.exception("could not load the champion model; serving popular items")
            # Jobs run inside the API process that accepted them: a job whose process on this
            # host is gone can never finish, so say so instead of leaving it "running".
            failed = self.store.fail_orphaned_jobs(STALE_REASON, self.jobs.stale_after_ms)
            if failed:
                log.warning("marked %d interrupted training job(s) as failed", failed)
        if self.changes.shared:
            # Events stored by other processes (workers, other replicas) drop feeds here at once.
            self.changes.listen(self.service.events_arrived)
        self.service.start()

    def events_stored(self, user_ids: Iterable[str]) -> None:
        """This process stored events of these users: its own feeds go at once, the shared
        ones next, and then every other serving process is told through the change feed."""
        announce(set(user_ids), self.shared_feeds, self.changes, self.service.events_arrived)

    def check_auth(self) -> None:
        """Refuse to serve with keys required and none to use; warn when auth is off on an
        address others can reach."""
        settings = self.settings
        require_keys(settings, self.keys)
        if settings.auth == "off" and not settings.loopback:
            log.warning(
                "SMARTREC_AUTH=off on %s: anyone who reaches this address can ingest, train, "
                "promote and delete",
                settings.host,
            )

    def stop(self) -> None:
        self.service.stop()
        self.jobs.shutdown(wait=False)
        self.bus.close()
        self.changes.close()
        for shared in (self.shared_feeds, self.shared_cache):
            if shared is not None:
                shared.close()
        self.store.close()


def require_keys(settings: Settings, keys: ApiKeys) -> None:
    """With keys required, at least one must exist (else nobody could use the server)."""
    if settings.auth_required and keys.count_active() == 0:
        where = "" if settings.auth == "required" else f" on {settings.host} (not loopback)"
        raise ConfigError(
            f"API keys are required{where} and none exists: create one with "
            "`smartrec keys create --scope read,ingest,admin`, or set SMARTREC_AUTH=off "
            "to serve without authentication"
        )


@contextmanager
def startup_lock(settings: Settings, store: Store) -> Iterator[None]:
    """A file lock under the home (processes of one machine) plus the store's own lock (every
    process using that database: an advisory lock on PostgreSQL)."""
    import fcntl

    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".startup.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            with store.lock("smartrec-startup"):
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_registry(settings: Settings) -> ModelRegistry:
    remote = settings.resolved_registry_url.startswith(("http://", "https://", "databricks"))
    if remote:
        # MLflow's client reads these per request; a user's own setting wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.registry_timeout_s))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.registry_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
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


@dataclass
class WorkerProcess:
    """What ``smartrec worker`` runs: the event worker (with a Kafka bus) and the retraining
    schedule (with ``retrain_interval_s``), over one store."""

    store: Store
    events: EventWorker | None
    retrain: RetrainScheduler | None
    jobs: JobRunner | None
    stop: threading.Event

    def run(self) -> None:
        """Until :attr:`stop` is set (SIGTERM): the batch in hand is finished and committed."""
        thread = None
        if self.retrain is not None:
            self.retrain.stop = self.stop
            thread = threading.Thread(target=self.retrain.run, name="retrain", daemon=True)
            thread.start()
        try:
            if self.events is not None:
                self.events.stop = self.stop
                self.events.run()
            else:
                self.stop.wait()
        finally:
            self.stop.set()  # also when the event loop failed: the schedule stops with it
            if thread is not None:
                thread.join(timeout=5)
            if self.jobs is not None:
                # A training in progress is finished (its heartbeat goes on meanwhile); a
                # worker killed during it leaves a job that is failed as stale.
                self.jobs.shutdown(wait=True)
            self.store.close()


def build_worker(settings: Settings, metrics: WorkerMetrics | None = None) -> WorkerProcess:
    """``smartrec worker``'s wiring: the store (migrated, as the API would), the bus's consumer
    side (topics created when missing) and the retraining schedule."""
    from smartrec.storage.events import open_event_source, queued

    settings.ensure_home()
    drains = queued(settings.events_url)
    if not drains and settings.retrain_interval_s <= 0:
        open_event_source(settings.events_url)  # raises: says why there is nothing to do
    store = open_store(settings.resolved_database_url)
    with startup_lock(settings, store):
        store.migrate()
    events = None
    if drains:
        changes = change_feed(settings)
        shared_feeds = feed_store(settings)

        def stored(batch: list[EventRecord]) -> None:
            announce({e.user_id for e in batch}, shared_feeds, changes)

        events = EventWorker(
            open_event_source(settings.events_url),
            store,
            batch_size=settings.worker_batch_size,
            known_type=settings.weights.known,
            metrics=metrics,
            on_stored=stored,
        )
    retrain = jobs = None
    if settings.retrain_interval_s > 0:
        trainer = Trainer(settings, store, build_registry(settings))
        jobs = JobRunner(trainer, store, stale_after_s=settings.job_stale_after_s)
        retrain = RetrainScheduler(
            jobs, store, settings.retrain_interval_s, stale_after_s=settings.job_stale_after_s
        )
    return WorkerProcess(store, events, retrain, jobs, threading.Event())


def change_feed(settings: Settings) -> ChangeFeed:
    """The change feed of this deployment (one channel per model name on a shared Redis)."""
    return open_change_feed(settings.cache_url, prefix=key_prefix(settings))


def feed_store(settings: Settings) -> FeedStore | None:
    """The feeds every replica shares (None with ``memory://``), keyed per model name."""
    return open_feed_store(settings.cache_url, key_prefix(settings), settings.feed_max_age_s)


def key_prefix(settings: Settings) -> str:
    """Every shared key and channel of this deployment (one model name) starts with this."""
    return f"smartrec:{settings.model_name}:"


def announce(
    users: set[str],
    shared_feeds: FeedStore | None,
    changes: ChangeFeed,
    here: Callable[[set[str]], None] | None = None,
) -> None:
    """Events of ``users`` are stored: their shared feeds are dropped first (a request that
    rebuilds on the news must not find the old feed), then this process's own (``here``), then
    every serving process is told."""
    if shared_feeds is not None:
        shared_feeds.invalidate(users)
    if here is not None:
        here(users)
    changes.publish(users)
