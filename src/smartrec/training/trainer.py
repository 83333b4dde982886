"""One training run, the same code behind ``smartrec train`` and ``POST /v1/training-jobs``.

Model choice is honest about time: the newest share of the event log is held out, every
candidate (and the current champion's configuration) is fitted on the older part only and
scored on the held-out part; the winner is then refitted on everything and registered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from smartrec.config import Settings
from smartrec.domain import CatalogItem, IdMap, Interactions
from smartrec.domain.metrics import ranking_metrics
from smartrec.domain.records import EventSnapshot
from smartrec.errors import SmartrecError, TrainingError
from smartrec.models import Recommender, create
from smartrec.pipeline.core import TrainedPipeline, recommend_users
from smartrec.pipeline.spec import PipelineSpec, load_spec, parse_spec
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.registry.mlflow_registry import CHAMPION
from smartrec.storage.ports import Store
from smartrec.training.pipeline_fit import fit_pipeline
from smartrec.training.promotion import PIPELINE, champion_on_split, should_promote
from smartrec.training.tune import (
    TuneResult,
    apply_tuned,
    explicit_models,
    load_tuned_params,
    log_tuning,
    temporal_validation,
    tune,
)
from smartrec.training.validation import K, Validation, evaluate, temporal_split

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    model_version: str | None
    algorithm: str
    params: dict[str, Any]
    metrics: dict[str, float]
    candidates: dict[str, dict[str, float]]
    promoted: bool
    champion_before: str | None
    champion_metrics: dict[str, float] | None
    n_events: int
    n_users: int
    n_items: int
    validation_users: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    def __init__(self, settings: Settings, store: Store, registry: ModelRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.catalog: dict[str, CatalogItem] = {}
        self._tuned_pipeline: dict[str, Any] = {}
        self.snapshot_at = 0.0
        #: Where the events come from instead of the log: (when they were read, the events),
        #: e.g. a Parquet snapshot in object storage (``smartrec train --snapshot``).
        self.source: Callable[[], tuple[float, EventSnapshot]] | None = None

    # ----------------------------------------------------------------- data
    def load_data(self) -> Interactions:
        if self.source is not None:
            self.snapshot_at, snap = self.source()  # erasures after it are served as such
        else:
            self.snapshot_at = time.time()  # before the read: an erasure during it may be in it
            snap = self.store.snapshot()
        if len(snap) < self.settings.min_training_events:
            raise TrainingError(
                f"only {len(snap)} events stored; training needs at least "
                f"{self.settings.min_training_events} (SMARTREC_MIN_TRAINING_EVENTS)"
            )
        weights = self.settings.weights.weigh(snap.types, snap.values)
        catalog = self.store.catalog(with_text=self.settings.pipeline_enabled)
        self.catalog = catalog
        # Catalogue items without events join the item axis at the end, so that content
        # retrieval can recommend them (their model scores are zero).
        cold = [i for i, row in catalog.items() if not row.placeholder]
        items = IdMap.from_values(list(snap.item_ids) + cold) if cold else None
        return Interactions.from_events(
            snap.user_ids,
            snap.item_ids,
            weights,
            snap.timestamps,
            items=items,
            item_categories={k: v.categories for k, v in catalog.items()},
        )

    def split(self, data: Interactions) -> Validation:
        """Hold out the newest events (``validation_fraction``); see :func:`temporal_split`."""
        return temporal_split(data, self.settings.validation_fraction)

    # ----------------------------------------------------------------- scoring
    @staticmethod
    def evaluate(model: Recommender, val: Validation, batch: int = 1024) -> dict[str, float]:
        return evaluate(model, val, batch)

    def _fit_and_score(
        self, name: str, params: dict[str, Any], val: Validation
    ) -> tuple[dict[str, float], float]:
        started = time.perf_counter()
        if name == PIPELINE:
            spec = parse_spec(params["spec"])
            pipeline = fit_pipeline(val.train, spec, self.catalog, label_split="time")
            fit_seconds = time.perf_counter() - started
            return self.evaluate_pipeline(pipeline, val), fit_seconds
        model = create(name, **params)
        model.fit(val.train)
        fit_seconds = time.perf_counter() - started
        return self.evaluate(model, val), fit_seconds

    @staticmethod
    def evaluate_pipeline(pipeline: TrainedPipeline, val: Validation) -> dict[str, float]:
        if val.n_users == 0:
            return {}
        recs = recommend_users(pipeline, val.train, val.users, K)
        return ranking_metrics(recs, val.relevant, K, n_items=val.train.n_items)

    def pipeline_spec(
        self, configs: dict[str, dict[str, Any]], tuned: dict[str, Any] | None = None
    ) -> PipelineSpec:
        """The configured pipeline, its models' parameters from the training configuration and
        its ranking choices from the newest tuning (when there is one)."""
        from smartrec.pipeline.tuning import apply_pipeline_params

        spec = load_spec(self.settings.pipeline_file).with_models(configs)
        chosen = self._tuned_pipeline if tuned is None else tuned
        if chosen:
            try:
                spec = apply_pipeline_params(spec, chosen)
            except Exception as exc:  # a tuning of another pipeline file: ignore it
                log.warning("tuned pipeline parameters not applied: %s", exc)
        return spec

    def tune(
        self,
        budget_s: float,
        algorithms: list[str] | None = None,
        progress: Progress | None = None,
        data: Interactions | None = None,
        trials: int | None = None,
    ) -> TuneResult:
        """Tune the models (60 % of the budget when the pipeline is on) then the pipeline's
        ranking stage on the trainer's own validation split; log the choices to MLflow, where
        the next training finds them. ``trials`` caps each study (reproducible choices when the
        budget reaches the cap). Returns the TuneResult (ranking choices under
        ``best_params["pipeline"]``)."""
        say = progress or (lambda msg: log.info(msg))
        configs = dict(self.settings.models)
        names = algorithms or list(configs)
        if data is None:
            data = self.load_data()
        model_budget = budget_s * (0.6 if self.settings.pipeline_enabled else 1.0)
        say(f"tuning {sorted(names)} for {model_budget:.0f}s")
        result = tune(
            data,
            names,
            model_budget,
            defaults={n: configs.get(n, {}) for n in names},
            validation_fraction=self.settings.validation_fraction,
            progress=say,
            trials=trials,
        )
        if self.settings.pipeline_enabled:
            from smartrec.training.pipeline_tune import tune_pipeline

            tuned_models = apply_tuned(configs, result.best_params, {})
            fraction = self.settings.validation_fraction
            try:
                chosen = tune_pipeline(
                    data,
                    self.pipeline_spec(tuned_models, {}),
                    self.catalog,
                    budget_s - model_budget,
                    lambda d: temporal_validation(d, fraction),
                    progress=say,
                    trials=trials,
                )
                result.best_params[PIPELINE] = chosen.params
            except Exception as exc:  # the models' tuning still counts
                say(f"pipeline tuning failed: {type(exc).__name__}: {exc}")
        log_tuning(result, self.registry, self.settings.experiment)
        return result

    def _configured_models(
        self, say: Progress, budget_s: float, data: Interactions | None = None
    ) -> dict[str, dict[str, Any]]:
        """The configured models with tuned values where the configuration does not pin them;
        tunes first (on ``data``, the run's snapshot) when ``tune_budget_s`` is set."""
        configs = dict(self.settings.models)
        if budget_s > 0:
            self.tune(budget_s, progress=say, data=data)
        try:
            tuned = load_tuned_params(self.registry, self.settings.experiment)
        except Exception as exc:  # the registry may be unreachable; train on the configuration
            say(f"tuned parameters not read: {type(exc).__name__}: {exc}")
            return configs
        self._tuned_pipeline = dict(tuned.get(PIPELINE, {}))
        if tuned:
            say(f"using tuned parameters for {sorted(set(tuned) & {*configs, PIPELINE})}")
        return apply_tuned(configs, tuned, explicit_models(self.settings))

    # ----------------------------------------------------------------- the run
    def run(
        self,
        models: dict[str, dict[str, Any]] | None = None,
        progress: Progress | None = None,
        tune_budget_s: float | None = None,
    ) -> TrainResult:
        say = progress or (lambda msg: log.info(msg))
        started = time.perf_counter()
        say("loading the event log")
        data = self.load_data()  # once: tuning and training see the same snapshot
        say(f"{data.n_events} events, {data.n_users} users, {data.n_items} items")
        budget = self.settings.tune_budget_s if tune_budget_s is None else tune_budget_s
        configs = models if models is not None else self._configured_models(say, budget, data)
        if not configs:
            raise TrainingError("no models configured to train")
        metric = self.settings.selection_metric
        val = self.split(data)
        notes: list[str] = []
        if val.n_users == 0:
            notes.append(
                "the validation window has no user with earlier history: models could not be "
                "compared; the first configured model was kept"
            )
        candidates: dict[str, dict[str, float]] = {}
        for name, params in configs.items():
            say(f"fitting {name} on the training window")
            try:
                scores, fit_s = self._fit_and_score(name, dict(params), val)
            except Exception as exc:  # one bad model (or parameter) must not sink the job
                reason = (
                    str(exc) if isinstance(exc, SmartrecError) else f"{type(exc).__name__}: {exc}"
                )
                notes.append(f"{name} skipped: {reason}")
                say(notes[-1])
                continue
            candidates[name] = {**scores, "fit_seconds": round(fit_s, 3)}
            say(f"{name}: {metric}={scores.get(metric, float('nan')):.4f} ({fit_s:.1f}s)")
        if not candidates:
            raise TrainingError("every configured model failed: " + "; ".join(notes))
        single = max(candidates, key=lambda n: candidates[n].get(metric, -1.0))
        spec: PipelineSpec | None = None
        if self.settings.pipeline_enabled and models is None:
            spec = self.pipeline_spec(configs)
            say("fitting the pipeline (retrievers + ranker) on the training window")
            try:
                scores, fit_s = self._fit_and_score(
                    PIPELINE, {"spec": spec.model_dump(mode="json")}, val
                )
                candidates[PIPELINE] = {**scores, "fit_seconds": round(fit_s, 3)}
                say(f"pipeline: {metric}={scores.get(metric, float('nan')):.4f} ({fit_s:.1f}s)")
            except Exception as exc:
                notes.append(f"pipeline skipped: {type(exc).__name__}: {exc}")
                say(notes[-1])
                spec = None
        best = max(candidates, key=lambda n: candidates[n].get(metric, -1.0))
        if best == PIPELINE and candidates[PIPELINE].get(metric, -1.0) <= candidates[single].get(
            metric, -1.0
        ):
            best = single  # a tie goes to the simpler, cheaper single model
        primary = single
        best_params = dict(configs[primary])

        say(f"refitting {primary} on all {data.n_events} events")
        final = create(primary, **best_params).fit(data)
        pipeline: TrainedPipeline | None = None
        if best == PIPELINE and spec is not None:
            say("refitting the pipeline on all events")
            pipeline = fit_pipeline(data, spec, self.catalog, label_split="time", progress=say)
            if "fallback" in pipeline.info:
                notes.append(str(pipeline.info["fallback"]))
            best_params = {"spec": spec.model_dump(mode="json"), "primary": primary}
        popularity = create(
            "popularity", half_life_days=self.settings.popularity_half_life_days
        ).fit(data)
        bundle = ModelBundle(
            model=final,
            popularity=popularity,
            items=data.items,
            users=data.users,
            pipeline=pipeline,
            meta={
                "params": best_params,
                "pipeline_info": pipeline.info if pipeline is not None else None,
                "reference_time": data.reference_time,
                "n_events": data.n_events,
                "trained_at": time.time(),
                "snapshot_at": self.snapshot_at,
                "event_weights": dict(self.settings.event_weights),
                "value_event_types": list(self.settings.value_event_types),
                "validation": candidates.get(best, {}),
            },
        )
        best_metrics = {k: v for k, v in candidates[best].items() if k != "fit_seconds"}
        logged = (
            {
                "ranker": pipeline.info.get("ranker"),
                "primary": primary,
                "retrievers": ",".join(r.name for r in pipeline.spec.retrievers),
            }
            if pipeline is not None
            else best_params
        )
        info = self.registry.register(
            bundle,
            params={"algorithm": best, **{f"{best}.{k}": v for k, v in logged.items()}},
            metrics=best_metrics,
            tags={"smartrec.selection_metric": metric},
            extra_artifacts={"candidates.json": json.dumps(candidates, indent=2)},
        )
        # Read, compare and move the alias under one lock shared by every process: two jobs
        # finishing together must not both "beat" the same old champion.
        with self.store.lock("smartrec-promotion"):
            champion_before = self.registry.alias_version(CHAMPION)
            champion_metrics: dict[str, float] | None = None
            if champion_before is not None and val.n_users:
                say(f"re-scoring champion {champion_before} on the same split")
                scored = {
                    n: (
                        {"spec": spec.model_dump(mode="json")}
                        if n == PIPELINE and spec is not None
                        else dict(configs.get(n, {})),
                        {k: v for k, v in m.items() if k != "fit_seconds"},
                    )
                    for n, m in candidates.items()
                }
                champion_metrics = self._champion_on_split(champion_before, val, notes, scored)
            promoted, why = self._should_promote(
                best_metrics, champion_metrics, champion_before, metric
            )
            if promoted:
                self.registry.set_alias(CHAMPION, info.version)
                say(f"version {info.version} ({best}) is now the champion")
            else:
                notes.append(f"version {info.version} was not promoted: {why}")
                say(notes[-1])
        return TrainResult(
            model_version=info.version,
            algorithm=best,
            params=best_params,
            metrics=best_metrics,
            candidates=candidates,
            promoted=promoted,
            champion_before=champion_before,
            champion_metrics=champion_metrics,
            n_events=data.n_events,
            n_users=data.n_users,
            n_items=data.n_items,
            validation_users=val.n_users,
            seconds=round(time.perf_counter() - started, 3),
            notes=notes,
        )

    def _champion_on_split(
        self,
        version: str,
        val: Validation,
        notes: list[str],
        scored: dict[str, tuple[dict[str, Any], dict[str, float]]],
    ) -> dict[str, float] | None:
        """See :func:`smartrec.training.promotion.champion_on_split`."""
        return champion_on_split(
            self.registry,
            version,
            notes,
            scored,
            lambda algorithm, params: self._fit_and_score(algorithm, params, val)[0],
        )

    _should_promote = staticmethod(should_promote)
