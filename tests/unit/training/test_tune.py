"""Hyperparameter tuning: time budget, the defaults as a floor, a split inside the given data."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.config import DEFAULT_MODELS, Settings
from smartrec.datasets import generate
from smartrec.domain import Interactions
from smartrec.errors import TrainingError
from smartrec.models import algorithm_names, create, get_algorithm
from smartrec.training.trainer import Validation
from smartrec.training.tune import (
    SEARCH_SPACES,
    _parse_param,
    apply_tuned,
    explicit_models,
    search_space,
    temporal_validation,
    tune,
)

ALL = ["popularity", "itemknn", "ease", "als", "bpr"]


@pytest.fixture(scope="module")
def data() -> Interactions:
    return generate(300, 150, 12_000, seed=3).to_interactions()


def _fake_metrics(value: float) -> dict[str, float]:
    return {"ndcg@10": value, "map": value / 2}


# --------------------------------------------------------------------------- the real thing
def test_tune_stays_in_budget_and_never_loses_to_defaults(data: Interactions) -> None:
    messages: list[str] = []
    started = time.monotonic()
    result = tune(data, ALL, 6.0, seed=1, progress=messages.append)
    elapsed = time.monotonic() - started
    assert elapsed < 20.0, elapsed  # loose: shared CPUs; a fit in flight cannot be cut short
    assert result.seconds <= elapsed + 0.01
    assert result.errors == {}
    assert set(result.best_params) == set(ALL)
    for name in ALL:
        best, default = result.best_value[name], result.default_value[name]
        assert best is not None and default is not None
        assert best >= default
        assert result.n_trials[name] >= 1
        create(name, **result.best_params[name]).fit(data)  # valid for the model
        first = next(r for r in result.history if r.algorithm == name)
        assert first.is_default and first.number == 0
        assert first.value == default
        assert first.params == result.default_params[name]
    # The defaults trial is the package defaults of each searched parameter.
    assert result.default_params["ease"] == {"l2": 500.0}
    assert result.default_params["popularity"]["half_life_days"] is None
    assert result.validation_users > 0
    assert any(m.startswith("ease trial 0") for m in messages)


def test_validation_split_never_leaves_the_given_training_data() -> None:
    full = generate(200, 80, 8000, seed=5).to_interactions()
    t_cut = float(np.quantile(full.event_times, 0.7))
    train = full.subset_events(full.event_times <= t_cut)
    later = full.subset_events(full.event_times > t_cut)
    assert train.reference_time <= t_cut < later.reference_time
    seen: list[Validation] = []

    def spy(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        seen.append(val)
        return _fake_metrics(0.5)

    tune(train, ["ease"], 0.5, evaluate_fn=spy)
    assert seen
    val = seen[0]
    assert val.cutoff_time <= t_cut
    assert val.train.n_events < train.n_events
    assert val.train.event_times.max() <= val.cutoff_time <= train.reference_time
    # Every relevant (user, item) is a positive train event at or after the cutoff.
    held = (train.event_times >= val.cutoff_time) & (train.event_weights > 0)
    allowed = sp.csr_matrix(
        (np.ones(int(held.sum())), (train.event_users[held], train.event_items[held])),
        shape=(train.n_users, train.n_items),
    )
    rel = sp.coo_matrix(val.relevant)
    users = val.users[rel.row]
    assert np.all(np.asarray(allowed[users, rel.col]).ravel() > 0)
    # Pairs that exist only after T (in the caller's test window) are never relevant.
    only_later = sp.csr_matrix(later.seen - later.seen.multiply(train.seen))
    assert np.all(np.asarray(only_later[users, rel.col]).ravel() == 0)


def test_a_custom_split_is_used(data: Interactions) -> None:
    calls: list[Interactions] = []

    def split(train: Interactions) -> Validation:
        calls.append(train)
        return temporal_validation(train, 0.2)

    result = tune(
        data, ["ease"], 0.3, split=split, evaluate_fn=lambda *_: _fake_metrics(0.1), seed=2
    )
    assert calls == [data]
    assert result.validation_cutoff == temporal_validation(data, 0.2).cutoff_time


def test_a_trial_cap_stops_each_study_and_makes_the_choice_reproducible(
    data: Interactions,
) -> None:
    def score(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        return _fake_metrics(-abs(math.log(params["l2"]) - 5.0))

    runs = [tune(data, ["ease"], 30.0, evaluate_fn=score, seed=4, trials=5) for _ in range(2)]
    assert [r.n_trials["ease"] for r in runs] == [5, 5]  # a 30 s budget would buy hundreds
    assert runs[0].seconds < 10
    assert runs[0].best_params == runs[1].best_params
    assert [h.params for h in runs[0].history] == [h.params for h in runs[1].history]
    with pytest.raises(ValueError, match="trials"):
        tune(data, ["ease"], 1.0, evaluate_fn=score, trials=0)


# --------------------------------------------------------------------------- choosing
def test_the_defaults_win_ties_and_when_nothing_beats_them(data: Interactions) -> None:
    def peak_at_default(
        algorithm: str, params: dict[str, Any], val: Validation
    ) -> dict[str, float]:
        return _fake_metrics(-((math.log(params["l2"]) - math.log(500.0)) ** 2))

    result = tune(data, ["ease"], 1.0, evaluate_fn=peak_at_default)
    assert result.best_params["ease"] == {"l2": 500.0}
    assert result.best_value["ease"] == result.default_value["ease"] == 0.0
    assert result.n_trials["ease"] > 1

    flat = tune(data, ["ease"], 0.5, evaluate_fn=lambda *_: _fake_metrics(0.3))
    assert flat.best_params["ease"] == {"l2": 500.0}


def test_given_defaults_are_the_configuration_to_beat(data: Interactions) -> None:
    def prefer_small(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        return _fake_metrics(1.0 / params["l2"])

    result = tune(
        data,
        ["ease"],
        1.5,
        defaults={"ease": {"l2": 4000.0, "max_items": 500}},
        evaluate_fn=prefer_small,
    )
    assert result.default_params["ease"] == {"l2": 4000.0, "max_items": 500}
    assert result.best_value["ease"] > result.default_value["ease"]  # type: ignore[operator]
    assert result.best_params["ease"]["l2"] < 4000.0
    assert result.best_params["ease"]["max_items"] == 500  # not searched: carried along


def test_failures_are_recorded_not_raised(data: Interactions) -> None:
    def broken(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        raise RuntimeError("no luck")

    result = tune(data, ["ease", "popularity"], 0.5, evaluate_fn=broken)
    assert result.best_params == {}
    assert result.best_value == {"ease": None, "popularity": None}
    assert "no luck" in result.errors["ease"]
    assert all(r.error and "no luck" in r.error for r in result.history)

    result = tune(data, ["ease"], 0.5, evaluate_fn=lambda *_: {"map": 0.1})
    assert "KeyError" in result.errors["ease"]  # the objective metric is missing


def test_small_spaces_give_their_time_back(data: Interactions) -> None:
    started = time.monotonic()
    result = tune(data, ["popularity"], 30.0, evaluate_fn=lambda *_: _fake_metrics(0.2))
    assert time.monotonic() - started < 15.0  # 16 combinations, then repeats stop the study
    assert result.n_trials["popularity"] <= 16
    keys = {tuple(sorted(r.params.items(), key=str)) for r in result.history}
    assert len(keys) == len(result.history)  # nothing fitted twice


def test_unusable_inputs_are_refused(data: Interactions) -> None:
    with pytest.raises(ValueError, match="no search space"):
        tune(data, ["nope"], 1.0)
    with pytest.raises(ValueError, match="no algorithms"):
        tune(data, [], 1.0)
    # Each user appears once: nobody in the newest window has an earlier history.
    lonely = Interactions.from_events(
        [f"u{i}" for i in range(50)], [f"i{i % 7}" for i in range(50)], np.ones(50), np.arange(50)
    )
    with pytest.raises(TrainingError, match="no user with earlier history"):
        tune(lonely, ["ease"], 1.0)


def test_optuna_speaks_only_through_progress(
    data: Interactions, capfd: pytest.CaptureFixture[str]
) -> None:
    import optuna

    before = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tune(data, ["ease"], 0.5, evaluate_fn=lambda *_: _fake_metrics(0.1), progress=None)
    out, err = capfd.readouterr()
    assert "Trial" not in out + err
    assert optuna.logging.get_verbosity() == before


# --------------------------------------------------------------------------- search spaces
@pytest.mark.parametrize("name", ALL)
def test_search_spaces_use_real_parameter_names_and_hold_the_defaults(name: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    defaults = get_algorithm(name).default_params()
    drawn: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        drawn.append(SEARCH_SPACES[name](trial))
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(defaults)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a default outside its range would warn
        study.optimize(objective, n_trials=25)
    assert drawn[0] == {k: defaults[k] for k in drawn[0]}
    for params in drawn:
        assert set(params) <= set(defaults)
        assert create(name, **params).params == {**defaults, **params}
    assert set(ALL) <= set(algorithm_names())


def test_a_new_target_needs_a_space_and_an_evaluate_fn(
    data: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SEARCH_SPACES, "toy", lambda trial: {})  # undone after the test

    @search_space("toy")
    def toy(trial: Any) -> dict[str, Any]:
        return {"num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True)}

    def score(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        assert algorithm == "toy"
        return _fake_metrics(-abs(params["num_leaves"] - 40) / 40)

    result = tune(data, ["toy"], 1.0, defaults={"toy": {"num_leaves": 8}}, evaluate_fn=score)
    assert result.default_params["toy"] == {"num_leaves": 8}
    assert result.best_value["toy"] >= result.default_value["toy"]  # type: ignore[operator]
    assert SEARCH_SPACES["toy"] is toy


# --------------------------------------------------------------------------- precedence
def test_apply_tuned_precedence() -> None:
    models = {"ease": {"l2": 500.0}, "itemknn": {"k": 20, "shrink": 10.0}, "popularity": {}}
    tuned: dict[str, dict[str, Any]] = {
        "ease": {"l2": 123.0},
        "itemknn": {"k": 300, "shrink": 55.0},
        "als": {"factors": 32},  # not a configured candidate: ignored
    }
    explicit = {"itemknn": {"k": 20}}
    out = apply_tuned(models, tuned, explicit)
    assert out == {
        "ease": {"l2": 123.0},  # tuned beats a default
        "itemknn": {"k": 20, "shrink": 55.0},  # explicit beats tuned, tuned fills the rest
        "popularity": {},
    }
    assert apply_tuned(models, {}) == models
    assert models["ease"] == {"l2": 500.0}  # inputs untouched


def test_explicit_models_tells_settings_from_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert explicit_models(Settings()) == {}
    assert Settings().models == DEFAULT_MODELS
    assert explicit_models(Settings(models={"ease": {"l2": 7.0}})) == {"ease": {"l2": 7.0}}
    monkeypatch.setenv("SMARTREC_MODELS", '{"itemknn": {"k": 5}}')
    settings = Settings()
    tuned: dict[str, dict[str, Any]] = {"itemknn": {"k": 99, "shrink": 1.0}}
    assert apply_tuned(settings.models, tuned, explicit_models(settings)) == {
        "itemknn": {"k": 5, "shrink": 1.0}
    }


def test_param_strings_parse_back() -> None:
    assert [_parse_param(t) for t in ("None", "True", "False", "12", "0.5", "abc")] == [
        None,
        True,
        False,
        12,
        0.5,
        "abc",
    ]
