"""Settings: every backend is chosen by a URL; embedded defaults keep all state under one home.

Sources, highest priority first: explicit arguments, ``SMARTREC_*`` environment variables, a TOML
file (``SMARTREC_CONFIG`` or ``--config``), then the defaults below.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from smartrec.domain.weights import DEFAULT_EVENT_WEIGHTS, VALUE_TYPES, EventWeights

#: The TOML file given to :func:`load_settings`; beats ``SMARTREC_CONFIG`` without mutating env.
_CONFIG_FILE: ContextVar[str | None] = ContextVar("smartrec_config_file", default=None)

#: Metrics the trainer computes on the validation window (any can pick the champion).
SELECTION_METRICS = ("ndcg@10", "map", "precision@10", "recall@10", "coverage")

DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"k": 100, "shrink": 10.0},
    "ease": {"l2": 500.0},
    "als": {"factors": 64, "iterations": 15},
    "bpr": {"factors": 64, "iterations": 100},
}


class Settings(BaseSettings):
    """All configuration of one smartrec deployment."""

    model_config = SettingsConfigDict(
        env_prefix="SMARTREC_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: Where embedded state lives: SQLite database, MLflow store, artifacts.
    home: Path = Path(".smartrec")
    #: SQLAlchemy URL of the catalog + event log. Default: SQLite under ``home``.
    database_url: str | None = None
    #: MLflow tracking URI (the model registry). Default: MLflow on SQLite under ``home``.
    registry_url: str | None = None
    #: Where model artifacts are written (a path or fsspec URL). Default: ``home/artifacts``.
    artifacts_url: str | None = None
    #: Seconds one request to an MLflow tracking server may take (artifact uploads of a
    #: training included), and how many times a failed one is retried (with a short
    #: back-off). MLflow's own retries (7, with a doubling back-off) would hold a replica's
    #: start for minutes while the server is down. ``MLFLOW_HTTP_REQUEST_TIMEOUT`` /
    #: ``..._MAX_RETRIES`` in the environment win over these.
    registry_timeout_s: int = Field(default=120, ge=1)
    registry_retries: int = Field(default=2, ge=0, le=10)
    #: Object storage for Parquet snapshots of the event log (``smartrec snapshot export``;
    #: ``smartrec train --snapshot``): a path, or ``s3://bucket/prefix`` (``gs://``, ``az://``)
    #: with the ``s3`` (``gcs``, ``azure``) extra. Default: ``home/snapshots``.
    snapshot_url: str | None = None
    #: Where ``POST /v1/events`` hands events: ``database://`` (the database is the log; the
    #: API writes it) or ``kafka://[user:password@]host:port[,host:port]?topic=...`` (Kafka;
    #: ``smartrec worker`` writes the log). See docs/operations/events.md.
    events_url: str = "database://"
    #: Seconds ``POST /v1/events`` waits for the bus to confirm a batch before answering 503.
    events_publish_timeout_s: float = Field(default=5.0, gt=0)
    #: The ``Retry-After`` (seconds) of that 503.
    events_retry_after_s: int = Field(default=5, ge=1)
    #: State shared by every API process and worker: ``memory://`` (each process its own) or
    #: ``redis://host:6379/0`` (``rediss://`` for TLS; ``redis+cluster://node:6379`` for a Redis
    #: Cluster): a process that stores events tells every serving process at once (instead of
    #: at their next poll of the event log), users' feeds are built once for every replica, and
    #: popular rankings and trending counts are computed by one process for all.
    cache_url: str = "memory://"
    #: ``smartrec worker`` starts a training job every this many seconds (0 = never), one per
    #: interval across all workers; the champion rules of a manual job apply.
    retrain_interval_s: float = Field(default=0.0, ge=0)
    #: Messages ``smartrec worker`` reads, writes and commits as one batch.
    worker_batch_size: int = Field(default=5000, ge=1, le=100_000)
    #: Registered model name in MLflow.
    model_name: str = "smartrec"
    #: MLflow experiment that training runs are logged under.
    experiment: str = "smartrec"

    #: Weight of each accepted event type; ``rating`` (see ``value_event_types``) scales by value.
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    value_event_types: list[str] = Field(default_factory=lambda: sorted(VALUE_TYPES))

    #: Algorithms trained by each job, with their parameters; the best on validation wins.
    models: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    #: Share of the newest events held out (in time) to choose and compare models.
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.9)
    #: Metric that picks the best model and decides promotion to ``champion``.
    selection_metric: str = "ndcg@10"
    #: Train the multi-stage pipeline (retrievers + ranker + rules) besides the single models;
    #: it is served when it beats the best single model on the validation window.
    pipeline_enabled: bool = True
    #: A pipeline TOML file; None = the default pipeline shipped with the package.
    pipeline_file: str | None = None
    #: Time budget (seconds) for hyperparameter tuning before each training job; 0 = off.
    #: Tuned values found by `smartrec tune` are used either way.
    tune_budget_s: float = Field(default=0.0, ge=0)
    #: Half-life of the popularity fallback (days); None = no decay.
    popularity_half_life_days: float | None = 30.0
    #: Minimum events before training is attempted.
    min_training_events: int = 10

    #: How far past the server clock an event's timestamp may be (seconds). Decay and windows
    #: count back from the newest event, so one event dated years ahead would skew them.
    max_future_skew_s: float = Field(default=86_400.0, ge=0)
    #: A training job whose process has not shown a sign of life for this long is failed
    #: (its server died); the owner refreshes it every ``job_stale_after_s / 4``.
    job_stale_after_s: float = Field(default=300.0, ge=5.0)
    #: Largest accepted ingest batch (rows) and request body (bytes).
    max_batch_size: int = Field(default=10_000, gt=0)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: Largest ``n`` a recommendation request may ask for.
    max_n: int = Field(default=1000, gt=0)
    #: Seconds between checks of the registry for a moved ``champion`` alias (0 = never).
    reload_interval_s: float = 10.0
    #: Load the champion at start (turn off in tests that build state by hand).
    load_model_on_start: bool = True
    #: Seconds a popular-items answer may be reused.
    popular_cache_ttl_s: float = 30.0
    #: Seconds between recounts of the served pipeline's windowed item counts from the event
    #: log (its trending candidates and ``pop.*`` features follow the live log); 0 = the counts
    #: of training only. With a Redis cache one process per period counts for all.
    live_stats_interval_s: float = Field(default=30.0, ge=0)
    #: With feeds off, a user's first page from the pipeline is kept this long (seconds; 0 =
    #: off). The key includes the user's event history, so an event sent since is never
    #: answered from it.
    user_cache_ttl_s: float = Field(default=10.0, ge=0)
    user_cache_entries: int = Field(default=20_000, ge=1)
    #: Per-user feeds (``serving/feeds.py``): the pipeline's ranking of a user's candidates,
    #: kept so that a request runs the business rules only. Off = every request retrieves and
    #: ranks.
    feeds_enabled: bool = True
    #: Ranked items a feed keeps (enough for several pages, filters and diversity; a request
    #: the feed cannot answer goes through the full pipeline). About 30 bytes an item.
    feed_items: int = Field(default=100, ge=10, le=10_000)
    #: Users whose feeds are kept in memory per process (least recently used dropped first).
    feed_entries: int = Field(default=100_000, ge=1)
    #: Feeds built ahead of requests, after a model is installed, for this many of the most
    #: recently active users (0 = build on demand only).
    feed_precompute_users: int = Field(default=10_000, ge=0)
    #: A feed older than this is rebuilt (item age and windowed popularity drift; new items
    #: reach feeds through content retrieval at the next build).
    feed_max_age_s: float = Field(default=900.0, gt=0)
    #: Seconds between polls of the event log for users with events stored by other processes
    #: (their feeds are dropped). Events sent to this process drop feeds at once. 0 = no poll.
    feed_poll_interval_s: float = Field(default=1.0, ge=0)
    #: Answer ``GET /v1/users/{id}/recommendations`` before FastAPI's router (``api/fastlane.py``:
    #: from a fresh feed, else the pipeline in the thread pool; the same bytes without the
    #: router's cost); off = every request is routed.
    feed_lane: bool = True

    #: Threads serving blocking request work per process. Requests are CPU-bound numpy work
    #: under the GIL: a few threads keep tail latency low; scale with ``workers`` instead.
    api_threads: int = Field(default=2, ge=1, le=256)
    #: Server processes for ``smartrec serve`` (each loads the champion).
    workers: int = Field(default=1, ge=1, le=64)

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    #: ``text`` for people, ``json`` for log collectors (one JSON object per line), for every
    #: log line, the access log included.
    log_format: Literal["text", "json"] = "text"
    #: One log line per request: method, path, status, duration, model version.
    access_log: bool = True

    #: API keys. ``auto``: required unless ``host`` is a loopback address; ``required``;
    #: ``off`` (on a non-loopback address only when set explicitly, and logged as a warning).
    #: With keys required the server refuses to start while no key exists (``smartrec keys
    #: create``).
    auth: Literal["auto", "required", "off"] = "auto"
    #: Seconds a verified key stays cached in a process: a key revoked through another replica
    #: stops working here within this time (at once in the process that revoked it).
    auth_cache_ttl_s: float = Field(default=10.0, gt=0)
    #: Requests per second per API key (a token bucket in each process); 0 = no limit. A key
    #: created with its own limit (``smartrec keys create --rate-limit``) uses that instead.
    rate_limit_per_key: float = Field(default=0.0, ge=0)
    #: Requests a key may send in a burst above its rate (the bucket's size); 0 = twice the
    #: rate, at least 1.
    rate_limit_burst: int = Field(default=0, ge=0)
    #: Browser origins allowed to call the API (CORS), comma-separated or a JSON list, e.g.
    #: ``https://shop.example``; ``*`` allows any. Empty: no CORS headers.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @property
    def loopback(self) -> bool:
        """Bound to a loopback address only (127.0.0.0/8, ::1, localhost)."""
        import ipaddress

        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def auth_required(self) -> bool:
        return self.auth == "required" or (self.auth == "auto" and not self.loopback)

    @field_validator("selection_metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        if value not in SELECTION_METRICS:
            raise ValueError(f"unknown metric {value!r}; one of {', '.join(SELECTION_METRICS)}")
        return value

    @field_validator("popularity_half_life_days", mode="before")
    @classmethod
    def _none_words(cls, value: Any) -> Any:
        """Environment variables cannot say None: accept 'none', 'null' or '' for no decay."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("event_weights")
    @classmethod
    def _weights_not_empty(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one event type must be configured")
        return value

    @model_validator(mode="after")
    def _value_types_known(self) -> Settings:
        unknown = set(self.value_event_types) - set(self.event_weights)
        if unknown:
            raise ValueError(f"value_event_types not in event_weights: {sorted(unknown)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _CONFIG_FILE.get() or os.environ.get("SMARTREC_CONFIG")
        if toml_file:
            if not Path(toml_file).is_file():
                from smartrec.errors import ConfigError

                raise ConfigError(f"settings file {toml_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    # ----------------------------------------------------------------- derived values
    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'smartrec.db'}"

    @property
    def resolved_registry_url(self) -> str:
        return self.registry_url or f"sqlite:///{self.resolved_home / 'mlflow.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str(self.resolved_home / "artifacts")

    @property
    def resolved_snapshot_url(self) -> str:
        return self.snapshot_url or str(self.resolved_home / "snapshots")

    @property
    def weights(self) -> EventWeights:
        return EventWeights(dict(self.event_weights), frozenset(self.value_event_types))

    def ensure_home(self) -> None:
        """Create the home directory when an embedded backend needs it."""
        needs_home = (
            self.database_url is None or self.registry_url is None or self.artifacts_url is None
        )
        if needs_home:
            self.resolved_home.mkdir(parents=True, exist_ok=True)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, optionally a TOML file, and explicit overrides."""
    token = _CONFIG_FILE.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.reset(token)
