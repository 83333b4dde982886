"""The reference protocol for the whole pipeline, with an ablation.

Same split as :func:`run_stratified_movielens` (MovieLens-100K, 75/25 per item, seed 42). The
test ratings are never used to choose anything: model hyperparameters come from ``smartrec``'s
own tuning on a validation split carved out of the training ratings (same protocol, another
seed), or from :data:`PROTOCOL_PARAMS` when tuning is off (those were chosen on the test split,
which the result then says). The ranker's labels are a random per-item share of the training
ratings (the protocol's test set is a random per-item split, so its labels mimic it); the
retrievers that produce its features are fitted on the rest.

Ablation rows: the best single model, the pipeline with score fusion, the pipeline with the
learned ranker, and the pipeline with diversity rules on top.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import CatalogItem, Interactions
from smartrec.domain.splits import stratified_split
from smartrec.evaluation.protocol import (
    PROTOCOL_PARAMS,
    REFERENCE_NDCG,
    evaluate,
    evaluate_recommendations,
    evaluation_users,
    protocol_description,
    split_interactions,
)
from smartrec.models import create
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix
from smartrec.pipeline.diversity import category_vectors, mmr
from smartrec.pipeline.spec import PipelineSpec, load_spec

if TYPE_CHECKING:  # both loaded lazily, where they are used
    from smartrec.datasets import MovieLens
    from smartrec.training.trainer import Validation

Progress = Callable[[str], None]
TUNED_ALGORITHMS = ("ease", "als", "itemknn")
#: Share of the tuning budget for the models; the rest tunes the ranking stage.
MODEL_SHARE = 0.6


def stratified_validation(data: Interactions, seed: int = 1) -> Validation:
    """A validation split of training data shaped like the protocol's test split."""
    from smartrec.training.trainer import Validation

    inner = stratified_split(data.event_users, data.event_items, ratio=0.75, seed=seed, by="item")
    train = data.subset_events(inner)
    held = data.subset_events(~inner).binarized()
    rel = sp.csr_matrix(held - held.multiply(train.seen))
    rel.eliminate_zeros()
    users = np.flatnonzero((np.diff(rel.indptr) > 0) & (np.diff(train.matrix.indptr) > 0))
    return Validation(train=train, users=users, relevant=rel[users], cutoff_time=0.0)


def pipeline_top_k(
    pipeline: TrainedPipeline,
    data: Interactions,
    users: np.ndarray,
    k: int,
    diversity: float = 1.0,
    pool: int = 50,
) -> np.ndarray:
    """Top-k per user from the pipeline; with diversity < 1, MMR over the top ``pool``."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    cats = data.item_categories or [[] for _ in range(data.n_items)]
    for row, u in enumerate(users.tolist()):
        items, scores, _ = pipeline.recommend(
            query_from_matrix(data, u), pool if diversity < 1 else k
        )
        inside = items < data.n_items
        items, scores = items[inside], scores[inside]
        if diversity < 1.0 and len(items) > 1:
            picked = mmr(scores, category_vectors([cats[i] for i in items]), k, diversity)
            items = items[picked]
        out[row, : min(k, len(items))] = items[:k]
    return out


def catalog_from_movielens(ml: MovieLens) -> dict[str, CatalogItem]:
    return {
        it.item_id: CatalogItem(
            it.item_id,
            it.title,
            list(it.genres),
            {"release_year": it.year} if it.year else {},
            True,
            False,
        )
        for it in ml.items
    }


def run_pipeline_protocol(
    k: int = 10,
    seed: int = 42,
    data_path: str | Path | None = None,
    *,
    tune_budget_s: float = 0.0,
    tune_trials: int | None = None,
    spec: PipelineSpec | None = None,
    diversity: float = 0.9,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Single models, the pipeline and its ablation on the stratified ML-100K protocol.

    ``tune_trials`` caps every study (each model's and the ranking stage's): a cap the budget
    reaches makes the whole result the same on any machine; a budget alone does not.
    """
    from smartrec.datasets import load_movielens_100k

    say = progress or (lambda _msg: None)
    if tune_trials is not None and tune_budget_s <= 0:
        raise ValueError("tune_trials caps a tuning run: give it a tuning budget too")
    ml = load_movielens_100k(data_path, progress=progress)
    r = ml.ratings
    mask = stratified_split(r.user_id, r.item_id, ratio=0.75, seed=seed, by="item")
    train, test = split_interactions(
        r.user_id, r.item_id, np.ones(len(r)), r.timestamp, mask, ml.item_genres()
    )
    catalog = catalog_from_movielens(ml)
    params: dict[str, dict[str, Any]] = {n: dict(p) for n, p in PROTOCOL_PARAMS.items()}
    tuning: dict[str, Any] | None = None
    if tune_budget_s > 0:
        from smartrec.training.tune import tune

        model_budget = tune_budget_s * MODEL_SHARE
        say(f"tuning {', '.join(TUNED_ALGORITHMS)} for {model_budget:.0f}s on a split of train")
        result = tune(
            train,
            TUNED_ALGORITHMS,
            model_budget,
            split=lambda d: stratified_validation(d, seed + 1),
            defaults={a: params[a] for a in TUNED_ALGORITHMS},
            seed=seed,
            progress=say,
            trials=tune_trials,
        )
        tuned = result.as_dict()
        for name in TUNED_ALGORITHMS:
            best = tuned.get("best_params", {}).get(name)
            if best:
                params[name] = dict(best)
        tuning = {
            "budget_s": tune_budget_s,
            "trials_cap": tune_trials,
            "model_trials": tuned.get("n_trials"),
            "seconds": tuned.get("seconds"),
            "best_params": {a: params[a] for a in TUNED_ALGORITHMS},
            "validation": f"stratified 75/25 per item of the training ratings, seed {seed + 1}",
        }
    source = "tuned on a split of train" if tuning else "PROTOCOL_PARAMS (chosen on test)"
    say(f"single models ({source})")
    models = {n: create(n, **params[n]) for n in ("popularity", "itemknn", "ease", "als")}
    rows = evaluate(models, train, test, k=k, progress=say)
    users = evaluation_users(test)
    base_spec = (spec or load_spec()).with_models(params)
    fusion_base: PipelineSpec | None = None
    if tuning is not None:
        from smartrec.pipeline.tuning import apply_pipeline_params
        from smartrec.training.pipeline_tune import tune_pipeline

        budget = tune_budget_s * (1 - MODEL_SHARE)
        say(f"tuning the ranking stage for {budget:.0f}s on the same split of train")
        chosen = tune_pipeline(
            train,
            base_spec,
            catalog,
            budget,
            lambda d: stratified_validation(d, seed + 1),
            label_split="random",
            seed=seed,
            progress=say,
            trials=tune_trials,
        )
        untuned_spec = base_spec
        base_spec = apply_pipeline_params(base_spec, chosen.params)
        if chosen.best_fusion is not None:  # the ablation's fusion row: fusion's own best
            fusion_params = {k: v for k, v in chosen.best_fusion.items() if k != "value"}
            fusion_base = apply_pipeline_params(untuned_spec, fusion_params)
        tuning["pipeline"] = {
            "params": chosen.params,
            "validation_ndcg": chosen.value,
            "best_fusion": chosen.best_fusion,
            "default_validation_ndcg": chosen.default_value,
            "trials": chosen.n_trials,
        }

    def fit(s: PipelineSpec) -> tuple[TrainedPipeline, float]:
        from smartrec.training.pipeline_fit import fit_pipeline

        t0 = time.perf_counter()
        pipe = fit_pipeline(train, s, catalog, label_split="random", seed=seed, progress=say)
        return pipe, time.perf_counter() - t0

    def pipeline_row(name: str, pipe: TrainedPipeline, fit_s: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        recs = pipeline_top_k(pipe, train, users, max(k, 20))
        row = evaluate_recommendations(
            name,
            recs,
            train,
            test,
            k=k,
            train_seconds=round(fit_s, 3),
            predict_seconds=round(time.perf_counter() - t0, 3),
            params={"ranker": pipe.info.get("ranker")},
        )
        say(f"{name}: ndcg@{k}={row[f'ndcg@{k}']:.4f}")
        return row

    source_spec = fusion_base if fusion_base is not None else base_spec
    fusion_spec = source_spec.model_copy(
        update={"ranker": source_spec.ranker.model_copy(update={"kind": "fusion"})}
    )
    ranker_spec = base_spec.model_copy(
        update={"ranker": base_spec.ranker.model_copy(update={"kind": "lightgbm"})}
    )
    ranker_pipe, ranker_s = fit(ranker_spec)
    same_retrievers = [r.model_dump(exclude={"weight"}) for r in fusion_spec.retrievers] == [
        r.model_dump(exclude={"weight"}) for r in ranker_spec.retrievers
    ]
    if same_retrievers:
        # Fusion only re-weighs what the same retrievers found: reuse them, fit nothing twice.
        fusion_pipe = dataclasses.replace(
            ranker_pipe, spec=fusion_spec, ranker=None, info={"ranker": "fusion"}
        )
        fusion_s = float("nan")
    else:
        fusion_pipe, fusion_s = fit(fusion_spec)
    fusion_row = pipeline_row("pipeline-fusion", fusion_pipe, fusion_s)
    ranker_row = pipeline_row("pipeline-ranker", ranker_pipe, ranker_s)
    # "pipeline" is the configuration as specified (or as tuning chose it), what would serve.
    chosen_kind = base_spec.ranker.kind
    pipe = ranker_pipe if chosen_kind == "lightgbm" else fusion_pipe
    chosen_row = dict(ranker_row if chosen_kind == "lightgbm" else fusion_row)
    chosen_row["model"] = "pipeline"
    t0 = time.perf_counter()
    div_recs = pipeline_top_k(pipe, train, users, max(k, 20), diversity=diversity)
    div_row = evaluate_recommendations(
        f"pipeline+mmr{diversity}",
        div_recs,
        train,
        test,
        k=k,
        predict_seconds=round(time.perf_counter() - t0, 3),
        params={"diversity": diversity},
    )
    rows += [fusion_row, ranker_row, chosen_row, div_row]
    single = max(
        (r for r in rows if not r["model"].startswith("pipeline")), key=lambda r: r[f"ndcg@{k}"]
    )
    keys = [f"ndcg@{k}", f"recall@{k}", "coverage", f"ild@{k}", f"novelty@{k}"]
    ablation = [
        {"stage": f"best single model ({single['model']})", **{c: single.get(c) for c in keys}},
        {"stage": "+ retrievers, score fusion", **{c: fusion_row.get(c) for c in keys}},
        {
            "stage": f"+ learned ranker ({ranker_pipe.info.get('ranker')})",
            **{c: ranker_row.get(c) for c in keys},
        },
        {"stage": f"chosen: {chosen_kind}", **{c: chosen_row.get(c) for c in keys}},
        {"stage": f"+ diversity (MMR {diversity})", **{c: div_row.get(c) for c in keys}},
    ]
    return {
        "dataset": "MovieLens 100K",
        "source": ml.source,
        "protocol": protocol_description(k, seed, "binary")
        + f" Hyperparameters: {source}. Ranker labels: a random 20% per-item share of train.",
        "k": k,
        "seed": seed,
        "n_train": int(mask.sum()),
        "n_test": int((~mask).sum()),
        "n_users": train.n_users,
        "n_items": train.n_items,
        "rows": rows,
        "ablation": ablation,
        "tuning": tuning,
        "pipeline_info": pipe.info,
        "reference_ndcg": dict(REFERENCE_NDCG),
    }
