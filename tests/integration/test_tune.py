"""Tuning results through a real MLflow store: logged once, read back as the next defaults."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from smartrec.config import Settings
from smartrec.datasets import generate
from smartrec.registry import ModelRegistry
from smartrec.training.tune import (
    KIND_TAG,
    TUNED_ARTIFACT,
    TrialRecord,
    TuneResult,
    apply_tuned,
    explicit_models,
    load_tuned_params,
    log_tuning,
    tune,
)
from smartrec.training.validation import Validation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """One SQLite MLflow store for the module (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{path / 'mlflow.db'}", str(path / "artifacts")


@pytest.fixture()
def registry(store: tuple[str, str]) -> ModelRegistry:
    url, artifacts = store
    return ModelRegistry(url, artifacts, experiment=f"exp_{uuid.uuid4().hex[:8]}")


def _result(l2: float, half_life: float | None = None) -> TuneResult:
    return TuneResult(
        objective_metric="ndcg@10",
        best_params={
            "ease": {"l2": l2},
            "popularity": {"half_life_days": half_life, "use_weights": True},
            "itemknn": {"k": 40, "shrink": 12.5, "binary": False},
        },
        best_value={"ease": 0.4, "popularity": 0.2, "itemknn": 0.35},
        default_params={"ease": {"l2": 500.0}, "popularity": {}, "itemknn": {}},
        default_value={"ease": 0.38, "popularity": 0.19, "itemknn": 0.35},
        n_trials={"ease": 12, "popularity": 9, "itemknn": 30},
        algorithm_seconds={"ease": 1.0, "popularity": 0.1, "itemknn": 2.0},
        seconds=3.2,
        budget_s=5.0,
        seed=0,
        validation_users=40,
        validation_cutoff=1.0e9,
        history=[TrialRecord("ease", 0, {"l2": 500.0}, 0.38, {"ndcg@10": 0.38}, 0.1, True)],
    )


def test_nothing_logged_reads_as_no_tuned_params(registry: ModelRegistry) -> None:
    assert load_tuned_params(registry) == {}
    assert registry.client.get_experiment_by_name(registry.experiment) is None  # not created


def test_log_and_load_round_trip(registry: ModelRegistry, tmp_path: Path) -> None:
    first = log_tuning(_result(120.0), registry)
    run = registry.client.get_run(first)
    assert run.info.status == "FINISHED"
    assert run.data.tags[KIND_TAG] == "tuning"
    assert run.data.params["ease.l2"] == "120.0"
    assert run.data.params["popularity.half_life_days"] == "None"
    assert run.data.metrics["ease.best"] == pytest.approx(0.4)
    assert run.data.metrics["ease.default"] == pytest.approx(0.38)
    local = registry.client.download_artifacts(first, TUNED_ARTIFACT, str(tmp_path))
    assert json.loads(Path(local).read_text())["history"][0]["is_default"] is True

    loaded = load_tuned_params(registry)
    assert loaded == _result(120.0).best_params  # types survive: None, bools, ints, floats
    assert loaded["popularity"]["half_life_days"] is None
    assert isinstance(loaded["itemknn"]["k"], int)

    log_tuning(_result(80.0, half_life=7.0), registry)  # newer wins
    assert load_tuned_params(registry)["ease"] == {"l2": 80.0}
    assert load_tuned_params(registry)["popularity"]["half_life_days"] == 7.0


def test_only_finished_tuning_runs_count(registry: ModelRegistry) -> None:
    log_tuning(_result(120.0), registry)
    client = registry.client
    exp_id = registry._experiment_id()
    failed = client.create_run(exp_id, tags={KIND_TAG: "tuning"})
    client.set_terminated(failed.info.run_id, "FAILED")
    running = client.create_run(exp_id, tags={KIND_TAG: "tuning"})  # still in progress
    other = client.create_run(exp_id, tags={"smartrec.algorithm": "ease"})  # a training run
    client.set_terminated(other.info.run_id, "FINISHED")
    assert load_tuned_params(registry)["ease"] == {"l2": 120.0}
    client.set_terminated(running.info.run_id, "KILLED")


def test_a_plain_client_names_its_experiment(registry: ModelRegistry) -> None:
    client = registry.client
    with pytest.raises(ValueError, match="name the experiment"):
        log_tuning(_result(1.0), client)
    log_tuning(_result(33.0), client, "elsewhere_" + registry.experiment)
    assert load_tuned_params(registry) == {}  # not the registry's experiment
    assert load_tuned_params(client, "elsewhere_" + registry.experiment)["ease"] == {"l2": 33.0}
    assert load_tuned_params(registry, "elsewhere_" + registry.experiment)["ease"] == {"l2": 33.0}


def test_tuned_values_become_the_next_training_defaults(registry: ModelRegistry) -> None:
    data = generate(150, 60, 4000, seed=2).to_interactions()

    def score(algorithm: str, params: dict[str, Any], val: Validation) -> dict[str, float]:
        return {"ndcg@10": -abs(params["l2"] - 50.0) if algorithm == "ease" else 0.1}

    result = tune(data, ["ease", "itemknn"], 1.0, evaluate_fn=score)
    log_tuning(result, registry)
    tuned = load_tuned_params(registry)
    assert tuned == result.best_params
    assert tuned["ease"]["l2"] != 500.0

    defaults = Settings()  # models not set: tuned values replace the package defaults
    models = apply_tuned(defaults.models, tuned, explicit_models(defaults))
    assert models["ease"]["l2"] == tuned["ease"]["l2"]
    pinned = Settings(models={"ease": {"l2": 500.0}})  # set by the user: stays
    models = apply_tuned(pinned.models, tuned, explicit_models(pinned))
    assert models == {"ease": {**tuned["ease"], "l2": 500.0}}
