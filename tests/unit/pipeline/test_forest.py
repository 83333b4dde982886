"""The numpy forest evaluator gives LightGBM's scores, and falls back where it cannot."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from smartrec.pipeline.forest import (
    PREDICTOR_ENV,
    ForestPredictor,
    HybridPredictor,
    LightGBMPredictor,
    UnsupportedModel,
    predictor_for,
    ranker_predictor,
)

N_FEATURES = 6


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaN, exact zeros and a binary column; a target that depends on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 5] = rng.integers(0, 2, n)
    x[rng.random(n) < 0.2, 1] = 0.0
    y = x[:, 0] + np.sin(3 * x[:, 2]) + 0.5 * x[:, 5] + 0.3 * rng.normal(size=n)
    y += np.where(x[:, 1] == 0.0, 1.0, 0.0)
    x[rng.random(n) < 0.15, 0] = np.nan  # NaN seen in training: NaN-missing splits
    y += np.where(np.isnan(x[:, 0]), -1.5, 0.0)
    return x.astype(np.float32), y


def _probe_rows(seed: int = 7) -> np.ndarray:
    """Random rows with NaN everywhere, zeros, values inside LightGBM's zero band, and the
    model's own thresholds (ties decide left)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, N_FEATURES)) * 1.5
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.02] = 1e-36
    x[rng.random(x.shape) < 0.02] = -1e-36
    return x


def _with_thresholds(booster: Any, x: np.ndarray) -> np.ndarray:
    out = x.copy()
    rows = iter(range(len(out)))
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                out[next(rows) % len(out), node["split_feature"]] = node["threshold"]
                stack += [node["left_child"], node["right_child"]]
    return out


def _missing_types(booster: Any) -> set[str]:
    found: set[str] = set()
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                found.add(node["missing_type"])
                stack += [node["left_child"], node["right_child"]]
    return found


def _train(objective: str, **params: Any) -> Any:
    x, y = _data(3000, seed=1)
    options: dict[str, Any] = {
        "objective": objective,
        "num_leaves": 15,
        "min_data_in_leaf": 10,
        "learning_rate": 0.1,
        "verbose": -1,
        "num_threads": 1,
        "seed": 0,
        **params,
    }
    if objective == "lambdarank":
        y = np.clip(np.round(y - y.min()), 0, 4).astype(int)
        ds = lgb.Dataset(x, y, group=[30] * 100)
    elif objective in {"binary", "multiclass"}:
        y = (y > np.median(y)).astype(int) if objective == "binary" else np.digitize(y, [0, 1])
        ds = lgb.Dataset(x, y)
    elif "categorical_feature" in options:
        ds = lgb.Dataset(x, y, categorical_feature=options.pop("categorical_feature"))
    else:
        ds = lgb.Dataset(x, y - y.min() if objective == "poisson" else y)
    return lgb.train(options, ds, num_boost_round=40)


@pytest.mark.parametrize(
    ("objective", "params", "missing"),
    [
        ("regression", {}, {"NaN", "None"}),
        ("lambdarank", {}, {"NaN"}),
        ("binary", {}, {"NaN"}),
        ("regression", {"zero_as_missing": True}, {"Zero"}),
        ("regression", {"use_missing": False}, {"None"}),
    ],
)
def test_numpy_evaluator_gives_lightgbms_scores(
    objective: str, params: dict[str, Any], missing: set[str]
) -> None:
    booster = _train(objective, **params)
    assert missing <= _missing_types(booster)  # the rules under test are in the model
    forest = ForestPredictor.from_booster(booster)
    x = _with_thresholds(booster, _probe_rows())
    expected = booster.predict(x, num_threads=1)
    assert np.max(np.abs(forest.predict(x) - expected)) <= 1e-9
    real, _ = _data(500, seed=3)
    assert np.max(np.abs(forest.predict(real) - booster.predict(real))) <= 1e-9
    if objective == "binary":  # the sigmoid is applied, as LightGBM's default output
        raw = booster.predict(x, raw_score=True)
        assert np.max(np.abs(forest.predict_raw(x) - raw)) <= 1e-9


def test_the_predictor_uses_best_iteration_like_predict() -> None:
    booster = _train("regression")
    booster.best_iteration = 10
    x = _probe_rows()
    forest = ForestPredictor.from_booster(booster)
    assert np.max(np.abs(forest.predict(x) - booster.predict(x))) <= 1e-9
    assert not np.allclose(forest.predict(x), booster.predict(x, num_iteration=-1))


def test_a_single_leaf_tree_and_float32_rows() -> None:
    x, y = _data(200, seed=2)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "min_data_in_leaf": 500},
        lgb.Dataset(x, y),
        num_boost_round=3,
    )
    forest = ForestPredictor.from_booster(booster)
    assert np.allclose(forest.predict(x), booster.predict(x), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    ("objective", "params", "why"),
    [
        ("regression", {"linear_tree": True}, "linear trees"),
        ("multiclass", {"num_class": 3}, "several classes"),
        ("regression", {"categorical_feature": [5]}, "categorical splits"),
        ("poisson", {}, "objective"),
    ],
)
def test_unsupported_models_fall_back_to_lightgbm(
    objective: str, params: dict[str, Any], why: str
) -> None:
    booster = _train(objective, **params)
    with pytest.raises(UnsupportedModel, match=why):
        ForestPredictor.from_booster(booster)
    with pytest.raises(UnsupportedModel):
        ranker_predictor(booster, "numpy")
    fallback = ranker_predictor(booster)
    assert isinstance(fallback, LightGBMPredictor)
    x, _ = _data(50, seed=4)
    assert np.array_equal(fallback.predict(x), booster.predict(x, num_threads=1))


def test_setting_picks_lightgbm_and_small_inputs_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _train("lambdarank")
    monkeypatch.setenv(PREDICTOR_ENV, "lightgbm")
    assert isinstance(ranker_predictor(booster), LightGBMPredictor)
    monkeypatch.setenv(PREDICTOR_ENV, "fastest")
    with pytest.raises(ValueError, match=PREDICTOR_ENV):
        ranker_predictor(booster)
    monkeypatch.delenv(PREDICTOR_ENV)
    hybrid = ranker_predictor(booster)
    assert isinstance(hybrid, HybridPredictor)
    x = _probe_rows()
    for rows in (1, hybrid.min_rows - 1, hybrid.min_rows, 1000):
        assert np.max(np.abs(hybrid.predict(x[:rows]) - booster.predict(x[:rows]))) <= 1e-9


def test_predictor_for_builds_once_per_booster() -> None:
    booster = _train("regression")
    assert predictor_for(booster) is predictor_for(booster)
    assert predictor_for(_train("regression", seed=1)) is not predictor_for(booster)
