"""Tuning the pipeline's fusion weights and ranker on time-ordered folds.

Separate from ``ranker.py`` (the ranker's data and training) and ``pipeline_fit.py`` (fitting the
components), since tuning refits components and trains rankers: it sits above both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from smartrec.domain import CatalogItem, Interactions
from smartrec.domain.metrics import ranking_metrics
from smartrec.pipeline.core import query_from_matrix
from smartrec.pipeline.spec import PipelineSpec
from smartrec.pipeline.tuning import PipelineTuneResult
from smartrec.training.pipeline_fit import Progress, fit_components, ranker_rows
from smartrec.training.ranker import MAX_FOLDS, K, train_ranker

if TYPE_CHECKING:
    import optuna

    from smartrec.training.validation import Validation

log = logging.getLogger(__name__)


def tune_pipeline(
    train: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None,
    budget_s: float,
    split: Callable[[Interactions], Validation],
    *,
    label_split: str = "time",
    seed: int = 0,
    progress: Progress | None = None,
    trials: int | None = None,
) -> PipelineTuneResult:
    """The ranking stage's best choices on ``split(train)`` within ``budget_s`` seconds, and at
    most ``trials`` trials (the spec as given included): with a cap the budget reaches, the
    choice is the same on any machine."""
    import optuna

    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    val = split(train)
    if val.n_users == 0:
        raise ValueError("the validation split has no user to evaluate")
    say(f"pipeline tuning: retrievers on {val.train.n_events} events, {val.n_users} users")
    pipe = fit_components(val.train, spec, catalog, build_ann=False)
    names = pipe.feature_names
    z_cols = [names.index(f"{r.name}.z") for r in spec.retrievers]
    fused_col = names.index("fused")
    lists: list[tuple[np.ndarray, np.ndarray]] = []  # (candidate items, features) per user
    for u in val.users.tolist():
        q = query_from_matrix(val.train, u)
        c = pipe.retrieve(q)
        lists.append((c.items, pipe.features(c, q)))
    folds = MAX_FOLDS if label_split != "time" else 1
    rows_spec = spec.model_copy(update={"ranker": spec.ranker.model_copy(update={"folds": folds})})
    x_train, y_train, g_train, counts, _ = ranker_rows(
        val.train, rows_spec, catalog, pipe.content, label_split, seed, 20_000, say
    )
    fold_rows = _fold_bounds(g_train, counts, folds)
    can_rank = counts["users"] >= spec.ranker.min_users
    x_all = np.vstack([x for _, x in lists]) if lists else np.zeros((0, len(names)))
    bounds = np.cumsum([0] + [len(items) for items, _ in lists])

    def evaluate(scores: np.ndarray) -> float:
        recs = np.full((len(lists), K), -1, dtype=np.int64)
        for j, (items, _) in enumerate(lists):
            s = scores[bounds[j] : bounds[j + 1]]
            top = np.argsort(-s, kind="stable")[:K]
            recs[j, : len(top)] = items[top]
        return float(ranking_metrics(recs, val.relevant, K, n_items=val.train.n_items)["ndcg@10"])

    def with_weights(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[:, fused_col] = x[:, z_cols] @ w
        return x

    history: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        w = np.array(
            [trial.suggest_float(f"w.{r.name}", 0.0, 1.0) for r in spec.retrievers],
            dtype=np.float32,
        )
        kinds = ["fusion", "lightgbm"] if can_rank else ["fusion"]
        kind = trial.suggest_categorical("kind", kinds)
        params: dict[str, Any] = {
            "kind": kind,
            "weights": {r.name: float(v) for r, v in zip(spec.retrievers, w, strict=True)},
        }
        if kind == "fusion":
            value = evaluate(x_all[:, z_cols] @ w)
        else:
            lgbm = {
                "n_estimators": trial.suggest_int("n_estimators", 50, 500, log=True),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
                "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
                "min_child_samples": trial.suggest_int("min_child_samples", 10, 400, log=True),
            }
            objective_name = trial.suggest_categorical(
                "objective", ["lambdarank", "rank_xendcg", "binary"]
            )
            n_folds = trial.suggest_int("folds", 1, folds)
            end = fold_rows[n_folds]
            booster = train_ranker(
                with_weights(x_train[: end[0]], w),
                y_train[: end[0]],
                g_train[: end[1]],
                {**spec.ranker.params, **lgbm},
                seed,
                objective=objective_name,
            )
            value = evaluate(np.asarray(booster.predict(with_weights(x_all, w), num_threads=1)))
            params.update(objective=objective_name, folds=n_folds, lgbm=lgbm)
        history.append({"value": value, **params})
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    default: dict[str, Any] = {f"w.{r.name}": r.weight for r in spec.retrievers}
    default["kind"] = spec.ranker.kind if can_rank else "fusion"
    if default["kind"] == "lightgbm":
        lg = spec.ranker.params
        default.update(
            n_estimators=int(lg.get("n_estimators", 300)),
            learning_rate=float(lg.get("learning_rate", 0.02)),
            num_leaves=int(lg.get("num_leaves", 15)),
            min_child_samples=int(lg.get("min_child_samples", 100)),
            objective=spec.ranker.objective,
            folds=min(spec.ranker.folds, folds),
        )
    study.enqueue_trial(default)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        left = max(1.0, budget_s - (time.perf_counter() - started))
        study.optimize(objective, n_trials=trials, timeout=left, catch=(Exception,))
    finally:
        optuna.logging.set_verbosity(previous)
    done = [h for h in history if np.isfinite(h["value"])]
    if not done:
        raise ValueError("no pipeline tuning trial succeeded")
    best = max(done, key=lambda h: h["value"])
    say(
        f"pipeline tuning: {len(done)} trials, best {best['value']:.4f} ({best['kind']}) "
        f"against {done[0]['value']:.4f} for the spec as given"
    )
    chosen = {k: v for k, v in best.items() if k != "value"}
    fusions = [h for h in done if h["kind"] == "fusion"]
    best_fusion = max(fusions, key=lambda h: h["value"]) if fusions else None
    return PipelineTuneResult(
        params=chosen,
        value=float(best["value"]),
        best_fusion=best_fusion,
        default_value=float(done[0]["value"]),
        n_trials=len(done),
        seconds=round(time.perf_counter() - started, 2),
        history=history,
    )


def _fold_bounds(
    groups: np.ndarray, counts: dict[str, Any], folds: int
) -> dict[int, tuple[int, int]]:
    """(rows, lists) at the end of each fold's block of the stacked training lists."""
    # ranker_rows stacks the folds in order and says how many lists each one has.
    sizes: list[int] = list(counts.get("fold_lists", [len(groups)]))
    out: dict[int, tuple[int, int]] = {0: (0, 0)}
    lists = rows = 0
    for f, size in enumerate(sizes[:folds], start=1):
        rows += int(groups[lists : lists + size].sum())
        lists += size
        out[f] = (rows, lists)
    return out
