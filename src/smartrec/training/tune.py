"""Hyperparameter tuning with optuna, judged on a time split of the training data only.

Why a split of the training data: the caller's own test window must stay unseen, so the newest
share of the *given* events is held out exactly as the trainer does for model choice
(:func:`~smartrec.training.validation.temporal_split`: users with earlier history, their new
positive items relevant). Every algorithm gets one
seeded TPE study; its current defaults are always the first trial, so the chosen parameters are
never worse than the defaults on that split (ties keep the defaults).

Adding a target (e.g. the learned ranker): write ``(trial) -> params`` with ``trial.suggest_*``
calls named after the model's real parameters, register it with ``@search_space("ranker")`` (or
``SEARCH_SPACES["ranker"] = fn``), and pass ``evaluate_fn`` to :func:`tune` when
``create(name, **params)`` cannot build and fit it from :class:`Interactions`. The defaults trial
takes its values from ``defaults=`` or else from the model's ``default_params()``, so the names
must match. Values outside a range are still tried (optuna warns, we silence it); a categorical
default must be one of the choices.

Precedence when training next (:func:`apply_tuned`): package defaults < tuned values < values
the user set explicitly in settings.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartrec.config import Settings
from smartrec.domain import Interactions
from smartrec.errors import ModelError, TrainingError
from smartrec.models import create, get_algorithm
from smartrec.registry import ModelRegistry
from smartrec.training.validation import Validation, evaluate, temporal_split

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
SearchSpace = Callable[["optuna.Trial"], dict[str, Any]]
#: ``(algorithm, params, validation) -> metrics``; must contain the objective metric.
EvaluateFn = Callable[[str, dict[str, Any], Validation], Mapping[str, float]]
SplitFn = Callable[[Interactions], Validation]

TUNING_KIND = "tuning"
KIND_TAG = "smartrec.kind"
TUNED_ARTIFACT = "tuned.json"
#: Consecutive repeats of already-scored parameters after which a study gives its time back.
_MAX_REPEATS = 10

#: Search space per algorithm; see the module docstring for adding one.
SEARCH_SPACES: dict[str, SearchSpace] = {}


def search_space(name: str) -> Callable[[SearchSpace], SearchSpace]:
    """Register ``fn`` as the search space of ``name`` (replacing any earlier one)."""

    def register(fn: SearchSpace) -> SearchSpace:
        SEARCH_SPACES[name] = fn
        return fn

    return register


@search_space("popularity")
def _popularity_space(trial: optuna.Trial) -> dict[str, Any]:
    # None = no decay; categorical so that "no decay" competes with the half-lives as an equal.
    half_lives = [None, 1.0, 3.0, 7.0, 14.0, 30.0, 90.0, 365.0]
    return {
        "half_life_days": trial.suggest_categorical("half_life_days", half_lives),
        "use_weights": trial.suggest_categorical("use_weights", [False, True]),
    }


@search_space("itemknn")
def _itemknn_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "k": trial.suggest_int("k", 10, 1000, log=True),
        "shrink": trial.suggest_float("shrink", 0.0, 200.0),
        "binary": trial.suggest_categorical("binary", [True, False]),
    }


@search_space("ease")
def _ease_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 10.0, 5000.0, log=True)}


@search_space("als")
def _als_space(trial: optuna.Trial) -> dict[str, Any]:
    # Wide regularisation: on ML-100K the best is ~20 while the library default is 0.05.
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 100.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.1, 100.0, log=True),
        "iterations": trial.suggest_int("iterations", 5, 50),
    }


@search_space("bpr")
def _bpr_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.3, log=True),
        "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 10, 300, log=True),
    }


# --------------------------------------------------------------------------- results
@dataclass
class TrialRecord:
    algorithm: str
    number: int
    params: dict[str, Any]
    value: float | None
    metrics: dict[str, float]
    seconds: float
    is_default: bool
    error: str | None = None


@dataclass
class TuneResult:
    """Per-algorithm outcome (dicts keyed by algorithm) plus every scored trial.

    ``best_params`` holds only algorithms with at least one successful trial; the others are in
    ``errors``. ``n_trials`` counts parameter sets fitted or attempted (repeats are not refitted).
    """

    objective_metric: str
    best_params: dict[str, dict[str, Any]]
    best_value: dict[str, float | None]
    default_params: dict[str, dict[str, Any]]
    default_value: dict[str, float | None]
    n_trials: dict[str, int]
    algorithm_seconds: dict[str, float]
    seconds: float
    budget_s: float
    seed: int
    validation_users: int
    validation_cutoff: float
    history: list[TrialRecord] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def best_algorithm(self) -> str | None:
        scored = {a: v for a, v in self.best_value.items() if v is not None}
        return max(scored, key=lambda a: scored[a]) if scored else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the split
def temporal_validation(data: Interactions, fraction: float = 0.1) -> Validation:
    """The trainer's own split of ``data`` (nothing outside it), so tuning and training judge
    models on the same kind of window; shared rather than copied so the two cannot drift."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("validation fraction must be in (0, 1)")
    return temporal_split(data, fraction)


def fit_and_evaluate(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
    """Default ``evaluate_fn``: fit on the split's older part, rank metrics at K=10."""
    model = create(algorithm, **params).fit(val.train)
    return evaluate(model, val)


def _package_defaults(algorithm: str) -> dict[str, Any]:
    try:
        return get_algorithm(algorithm).default_params()
    except ModelError:  # a target that is not a registered model (the ranker)
        return {}


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """optuna speaks only through ``progress``: its logger and warnings are muted meanwhile."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"optuna(\..*)?")
            warnings.filterwarnings("ignore", message=r"Fixed parameter .* is out of range")
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# --------------------------------------------------------------------------- tuning
def tune(
    train: Interactions,
    algorithms: Sequence[str],
    budget_s: float,
    *,
    objective_metric: str = "ndcg@10",
    validation_fraction: float = 0.1,
    split: SplitFn | None = None,
    seed: int = 0,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress | None = None,
    evaluate_fn: EvaluateFn | None = None,
    trials: int | None = None,
) -> TuneResult:
    """Search each algorithm's space for ``objective_metric`` within ``budget_s`` seconds overall.

    The split is ``split(train)`` or :func:`temporal_validation` of ``train``. The defaults of
    every algorithm are scored first, always; then each algorithm gets an equal share of the
    time left when its turn comes (unused time rolls over), and its study stops when the next
    trial would likely overrun that share. A running fit cannot be interrupted, so a budget
    smaller than the defaults' fits is exceeded by them.
    ``defaults`` are the configurations to beat (e.g. ``settings.models``); algorithms missing
    there use their package defaults. ``trials`` caps each algorithm's study (the defaults'
    trial included): with a cap the budget reaches, the result is the same on any machine (the
    studies are seeded); without one, how many trials a budget buys depends on the machine.
    """
    say = progress or (lambda msg: log.info(msg))
    started = time.monotonic()
    deadline = started + float(budget_s)
    names = list(dict.fromkeys(algorithms))
    unknown = [n for n in names if n not in SEARCH_SPACES]
    if unknown:
        raise ValueError(f"no search space for {unknown}; known: {', '.join(SEARCH_SPACES)}")
    if not names:
        raise ValueError("no algorithms to tune")
    if trials is not None and trials < 1:
        raise ValueError("trials must be >= 1")
    evaluate = evaluate_fn or fit_and_evaluate
    val = split(train) if split is not None else temporal_validation(train, validation_fraction)
    if val.n_users == 0:
        raise TrainingError(
            "the validation window of the training data has no user with earlier history: "
            "nothing to tune against"
        )
    say(f"tuning {', '.join(names)} on {val.n_users} validation users for {budget_s:.0f}s")
    given = defaults or {}
    result = TuneResult(
        objective_metric=objective_metric,
        best_params={},
        best_value={},
        default_params={},
        default_value={},
        n_trials={},
        algorithm_seconds={},
        seconds=0.0,
        budget_s=float(budget_s),
        seed=seed,
        validation_users=val.n_users,
        validation_cutoff=val.cutoff_time,
    )
    with _quiet_optuna():
        searches = [
            _Search(n, dict(given.get(n, {})), val, evaluate, objective_metric, seed, say, trials)
            for n in names
        ]
        for search in searches:  # the floor first, so the search time left is known
            search.run_defaults()
        for index, search in enumerate(searches):
            now = time.monotonic()
            search.run_until(now + max(0.0, deadline - now) / (len(searches) - index))
    for search in searches:
        result.history.extend(search.records)
        result.algorithm_seconds[search.name] = round(search.seconds, 3)
        _summarise(result, search.name, search.baseline, search.records)
    result.seconds = round(time.monotonic() - started, 3)
    return result


class _Search:
    """One algorithm's seeded TPE study, the defaults enqueued as its first trial."""

    def __init__(
        self,
        name: str,
        baseline: dict[str, Any],
        val: Validation,
        evaluate: EvaluateFn,
        metric: str,
        seed: int,
        say: Progress,
        max_trials: int | None = None,
    ) -> None:
        import optuna

        self.name = name
        self.max_trials = max_trials
        self.baseline = baseline
        self.space = SEARCH_SPACES[name]
        self.val = val
        self.evaluate = evaluate
        self.metric = metric
        self.say = say
        self.records: list[TrialRecord] = []
        self.scored: dict[str, float] = {}
        self.repeats = 0
        self.seconds = 0.0
        self.share_end = 0.0
        self.study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        enqueued = {**_package_defaults(name), **baseline}
        self.study.enqueue_trial(enqueued, user_attrs={"smartrec.default": True})

    def run_defaults(self) -> None:
        t0 = time.monotonic()
        self.study.optimize(self.objective, n_trials=1, catch=(Exception,))
        self.seconds += time.monotonic() - t0

    def run_until(self, share_end: float) -> None:
        t0 = time.monotonic()
        self.share_end = share_end
        left = None if self.max_trials is None else self.max_trials - len(self.study.trials)
        if share_end - t0 > 0 and not self._would_overrun() and (left is None or left > 0):
            self.study.optimize(
                self.objective,
                n_trials=left,
                timeout=share_end - t0,
                catch=(Exception,),
                callbacks=[self._stop_before_overrun],
            )
        self.seconds += time.monotonic() - t0

    def _would_overrun(self) -> bool:
        """optuna's timeout is checked between trials only: stop if the next one will not fit."""
        durations = [r.seconds for r in self.records[-5:]]
        expected = max(durations) if durations else 0.0
        return time.monotonic() + expected > self.share_end

    def _stop_before_overrun(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if self._would_overrun():
            study.stop()

    def objective(self, trial: optuna.Trial) -> float:
        name, metric = self.name, self.metric
        is_default = bool(trial.user_attrs.get("smartrec.default"))
        try:
            # On the defaults trial every suggest_* returns the enqueued (current) value.
            suggested = self.space(trial)
        except ValueError:
            if not is_default:
                raise
            suggested = {}  # a categorical default outside the choices: keep it as configured
        params = {**self.baseline, **suggested}
        key = _key(params)
        if key in self.scored:  # TPE repeats itself on small spaces: do not refit
            self.repeats += 1
            if self.repeats >= _MAX_REPEATS:
                trial.study.stop()
            return self.scored[key]
        self.repeats = 0
        t0 = time.perf_counter()
        try:
            metrics = {k: float(v) for k, v in self.evaluate(name, params, self.val).items()}
            value = metrics[metric]
            if not math.isfinite(value):
                raise ValueError(f"{metric} is {value}")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.records.append(
                TrialRecord(
                    name, trial.number, params, None, {}, _since(t0), is_default, error=reason
                )
            )
            self.say(f"{name} trial {trial.number} failed: {reason}")
            raise
        self.scored[key] = value
        self.records.append(
            TrialRecord(name, trial.number, params, value, metrics, _since(t0), is_default)
        )
        best = max(self.scored.values())
        self.say(f"{name} trial {trial.number}: {metric}={value:.4f} (best {best:.4f}) {params}")
        return value


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 4)


def _summarise(
    result: TuneResult, name: str, baseline: dict[str, Any], records: list[TrialRecord]
) -> None:
    """Best = strictly better than the defaults, else the defaults (ties keep them)."""
    ok = [r for r in records if r.value is not None]
    default = next((r for r in ok if r.is_default), None)
    result.default_params[name] = dict(default.params) if default else dict(baseline)
    result.default_value[name] = default.value if default else None
    result.n_trials[name] = len(records)
    if not ok:
        result.best_value[name] = None
        errors = "; ".join(sorted({r.error or "" for r in records}))
        result.errors[name] = f"every trial failed: {errors}"
        return
    best = default or ok[0]
    for rec in ok:
        if rec.value is not None and best.value is not None and rec.value > best.value:
            best = rec
    result.best_params[name] = dict(best.params)
    result.best_value[name] = best.value


# --------------------------------------------------------------------------- MLflow
def _client_and_experiment(
    registry_or_client: ModelRegistry | MlflowClient,
    experiment: str | None,
    *,
    create_missing: bool,
) -> tuple[MlflowClient, str | None]:
    """(client, experiment id or None when it does not exist and may not be created)."""
    if isinstance(registry_or_client, ModelRegistry):
        registry = registry_or_client
        if experiment is None or experiment == registry.experiment:
            if not create_missing:
                exp = registry.client.get_experiment_by_name(registry.experiment)
                return registry.client, None if exp is None else str(exp.experiment_id)
            return registry.client, registry._experiment_id()
        client = registry.client
    else:
        client = registry_or_client
        if experiment is None:
            raise ValueError("name the experiment when passing an MlflowClient")
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return client, str(exp.experiment_id)
    if not create_missing:
        return client, None
    return client, str(client.create_experiment(experiment))


def log_tuning(
    result: TuneResult,
    registry_or_client: ModelRegistry | MlflowClient,
    experiment: str | None = None,
) -> str:
    """Log ``result`` as one finished MLflow run and return its id.

    ``experiment`` defaults to the registry's own, where :func:`load_tuned_params` looks.
    Params are ``<algorithm>.<param>`` (strings, for people); ``tuned.json`` keeps the types.
    """
    from mlflow.entities import Metric, Param

    client, exp_id = _client_and_experiment(registry_or_client, experiment, create_missing=True)
    if exp_id is None:  # create_missing=True never gives None; the check is for the type
        raise TrainingError(f"MLflow experiment {experiment!r} could not be created")
    tags = {
        KIND_TAG: TUNING_KIND,
        "smartrec.objective_metric": result.objective_metric,
        "smartrec.tuning.algorithms": ",".join(result.n_trials),
        "smartrec.tuning.budget_s": str(result.budget_s),
        "smartrec.tuning.seed": str(result.seed),
    }
    run = client.create_run(exp_id, tags=tags)
    run_id: str = run.info.run_id
    try:
        ts = int(time.time() * 1000)
        metrics = [Metric("seconds", result.seconds, ts, 0)]
        for name, n in result.n_trials.items():
            metrics.append(Metric(f"{name}.n_trials", float(n), ts, 0))
            for label, values in (("best", result.best_value), ("default", result.default_value)):
                value = values.get(name)
                if value is not None:
                    metrics.append(Metric(f"{name}.{label}", value, ts, 0))
        params = [
            Param(f"{name}.{key}", str(value)[:6000])
            for name, chosen in result.best_params.items()
            for key, value in chosen.items()
        ]
        client.log_batch(run_id, metrics=metrics, params=params, tags=[])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / TUNED_ARTIFACT
            path.write_text(json.dumps(result.as_dict(), indent=2, default=str))
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def load_tuned_params(
    registry_or_client: ModelRegistry | MlflowClient, experiment: str | None = None
) -> dict[str, dict[str, Any]]:
    """Chosen params of the newest FINISHED tuning run (``{}`` when there is none)."""
    client, exp_id = _client_and_experiment(registry_or_client, experiment, create_missing=False)
    if exp_id is None:
        return {}
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{KIND_TAG}` = '{TUNING_KIND}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return {}
    run = runs[0]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run.info.run_id, TUNED_ARTIFACT, tmp)
            chosen = json.loads(Path(local).read_text())["best_params"]
            return {str(a): dict(p) for a, p in chosen.items()}
        except Exception as exc:  # artifact lost: the string params still say what was chosen
            log.warning("tuning run %s: %s unreadable (%s)", run.info.run_id, TUNED_ARTIFACT, exc)
    out: dict[str, dict[str, Any]] = {}
    for key, text in run.data.params.items():
        algorithm, _, param = key.partition(".")
        if param:
            out.setdefault(algorithm, {})[param] = _parse_param(text)
    return out


def _parse_param(text: str) -> Any:
    """MLflow keeps params as ``str(value)``: give None, booleans and numbers back."""
    words = {"None": None, "True": True, "False": False}
    if text in words:
        return words[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# --------------------------------------------------------------------------- precedence
def explicit_models(settings: Settings) -> dict[str, dict[str, Any]]:
    """What the user configured in ``models`` (init, env or TOML); ``{}`` when it is the default.

    ``models`` is replaced as a whole, so explicit means "every value in the user's dict".
    """
    if "models" not in settings.model_fields_set:
        return {}
    return {name: dict(params) for name, params in settings.models.items()}


def apply_tuned(
    models: Mapping[str, Mapping[str, Any]],
    tuned: Mapping[str, Mapping[str, Any]],
    explicit: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per algorithm of ``models``: its config, then tuned values, then explicit values on top.

    So tuned values replace defaults but never a value the user set (``explicit``, e.g.
    :func:`explicit_models`); a parameter the user did not set still takes its tuned value,
    even if that was tuned jointly with a different value of the one they pinned. Tuning never
    adds or drops a candidate: algorithms only in ``tuned`` are ignored. Next training:
    ``apply_tuned(s.models, load_tuned_params(reg), explicit_models(s))``.
    """
    pinned = explicit or {}
    return {
        name: {**dict(params), **dict(tuned.get(name, {})), **dict(pinned.get(name, {}))}
        for name, params in models.items()
    }


__all__ = [
    "SEARCH_SPACES",
    "TrialRecord",
    "TuneResult",
    "apply_tuned",
    "explicit_models",
    "fit_and_evaluate",
    "load_tuned_params",
    "log_tuning",
    "search_space",
    "temporal_validation",
    "tune",
]
