"""Fitting a pipeline: every retriever on all events, the ranker on their later window.

Training the ranker without leakage: the retrievers and every feature are computed from the
*past* events only, and the labels are the items each user touched in the *later* window (the
newest ``label_fraction`` of events); see :mod:`smartrec.training.ranker`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from smartrec.domain import CatalogItem, Interactions
from smartrec.domain.splits import stratified_split, temporal_holdout
from smartrec.models import Recommender, create
from smartrec.pipeline.core import TrainedPipeline
from smartrec.pipeline.retrievers import retriever_class
from smartrec.pipeline.spec import PipelineSpec
from smartrec.pipeline.stats import ItemStats
from smartrec.pipeline.windows import window_seconds
from smartrec.training.ranker import ranker_dataset, train_ranker

if TYPE_CHECKING:  # loaded only when a retriever reads content
    from smartrec.pipeline.content import ContentIndex

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def catalog_rows(items: Sequence[str], catalog: dict[str, CatalogItem]) -> list[CatalogItem]:
    """Catalog rows in item-axis order; items without a row get an empty one."""
    return [catalog.get(i) or CatalogItem(i, None, [], {}, True, True) for i in items]


def published_seconds(items: Sequence[str], catalog: dict[str, CatalogItem]) -> np.ndarray:
    out = np.full(len(items), np.nan)
    for j, i in enumerate(items):
        row = catalog.get(i)
        if row is not None and row.published_at is not None:
            out[j] = row.published_at / 1000.0
    return out


def needs_content(spec: PipelineSpec) -> bool:
    return any(retriever_class(r.kind).uses_content for r in spec.retrievers)


def fit_content(
    data: Interactions, spec: PipelineSpec, catalog: dict[str, CatalogItem]
) -> ContentIndex | None:
    """The content index over the item axis, or None when no retriever reads content."""
    if not needs_content(spec):
        return None
    from smartrec.pipeline.content import ContentIndex

    return ContentIndex.fit(catalog_rows(data.items.to_list(), catalog), spec.content)


def fit_components(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None = None,
    *,
    build_ann: bool = True,
    content_index: ContentIndex | None = None,
) -> TrainedPipeline:
    """Fit every retriever on ``data`` (no ranker): the serving pipeline, or the 'past' one."""
    catalog = catalog or {}
    models: dict[str, Recommender] = {}
    fitted: dict[tuple[str, str], Recommender] = {}
    for r in spec.retrievers:
        if r.model is None:
            continue
        key = (r.model, json.dumps(r.params, sort_keys=True, default=str))
        if key not in fitted:
            fitted[key] = create(r.model, **r.params).fit(data)
        models[r.name] = fitted[key]
    windows = sorted(
        {w for r in spec.retrievers for w in retriever_class(r.kind).stat_windows(r)},
        key=window_seconds,
    )
    stats = ItemStats.build(data, windows, published_seconds(data.items.to_list(), catalog))
    content = content_index if content_index is not None else fit_content(data, spec, catalog)
    pipeline = TrainedPipeline(spec, models, stats, data.n_items, content)
    for retriever in pipeline.retrievers:
        retriever.fit(data, build_index=build_ann)
    return pipeline


def split_for_ranker(
    data: Interactions, fraction: float, how: str = "time", seed: int = 0
) -> np.ndarray:
    """Mask of the 'past' events: all but the newest ``fraction`` (or, for offline protocols
    whose test set is a random split, a random per-item share)."""
    if how == "time":
        return temporal_holdout(data.event_times, fraction)
    return stratified_split(
        data.event_users, data.event_items, ratio=1.0 - fraction, seed=seed, by="item"
    )


def ranker_rows(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None,
    content: ContentIndex | None,
    label_split: str,
    seed: int,
    max_users: int | None,
    say: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Training lists of every fold, stacked (one fold for a time split)."""
    folds = spec.ranker.folds if label_split != "time" else 1
    xs, ys, gs = [], [], []
    totals: dict[str, Any] = {"users": 0, "rows": 0, "positives": 0, "folds": folds}
    fold_lists: list[int] = []
    names: list[str] = []
    for fold in range(folds):
        past_mask = split_for_ranker(data, spec.ranker.label_fraction, label_split, seed + fold)
        past, later = data.subset_events(past_mask), data.subset_events(~past_mask)
        say(
            f"ranker fold {fold + 1}/{folds}: retrievers fitted on {int(past_mask.sum())} "
            f"earlier events, labels from the {int((~past_mask).sum())} later ones"
        )
        past_pipeline = fit_components(past, spec, catalog, build_ann=False, content_index=content)
        names = past_pipeline.feature_names
        x, y, groups, counts = ranker_dataset(past_pipeline, past, later, max_users, seed)
        xs.append(x)
        ys.append(y)
        gs.append(groups)
        fold_lists.append(len(groups))
        for key in ("users", "rows", "positives"):
            totals[key] += int(counts.get(key, 0))
    totals["fold_lists"] = fold_lists
    return np.vstack(xs), np.concatenate(ys), np.concatenate(gs), totals, names


def fit_pipeline(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None = None,
    *,
    label_split: str = "time",
    seed: int = 0,
    max_ranker_users: int | None = 20_000,
    progress: Progress | None = None,
) -> TrainedPipeline:
    """Fit the retrievers on all of ``data`` and the ranker on its later window (see module)."""

    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    content = fit_content(data, spec, catalog or {})
    info: dict[str, Any] = {"ranker": "fusion", "label_split": label_split}
    booster = None
    if spec.ranker.kind == "lightgbm":
        x, y, groups, counts, names = ranker_rows(
            data, spec, catalog, content, label_split, seed, max_ranker_users, say
        )
        info.update({k: v for k, v in counts.items() if k != "fold_lists"})
        if counts["users"] < spec.ranker.min_users or counts.get("positives", 0) < min(
            spec.ranker.min_positives, spec.ranker.min_users
        ):
            info["fallback"] = (
                f"too little data for the learned ranker: {counts['users']} users with a "
                f"relevant candidate in the later window (needs {spec.ranker.min_users}); "
                "ranking by score fusion"
            )
            say(info["fallback"])
        else:
            say(
                f"ranker: {spec.ranker.objective} on {counts['rows']} rows, {counts['users']} lists"
            )
            booster = train_ranker(
                x, y, groups, spec.ranker.params, seed, objective=spec.ranker.objective
            )
            info["ranker"] = "lightgbm"
            info["objective"] = spec.ranker.objective
            importance = booster.feature_importance(importance_type="gain")
            order = np.argsort(-importance)[:8]
            info["top_features"] = {names[i]: round(float(importance[i]), 1) for i in order}
    say("fitting the retrievers on all events")
    pipeline = fit_components(data, spec, catalog, content_index=content)
    pipeline.ranker = booster
    info["seconds"] = round(time.perf_counter() - started, 2)
    pipeline.info = info
    return pipeline
