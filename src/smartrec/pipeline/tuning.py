"""What tuning the ranking stage chooses, and how a spec takes it.

The search itself fits retrievers and rankers, so it lives in training
(:func:`smartrec.training.ranker.tune_pipeline`); this module holds the spec side only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smartrec.pipeline.spec import PipelineSpec


@dataclass
class PipelineTuneResult:
    params: dict[str, Any]  # what apply_pipeline_params takes
    value: float
    #: The best trial that ranks by fusion (for an ablation), or None.
    best_fusion: dict[str, Any] | None
    default_value: float
    n_trials: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def apply_pipeline_params(spec: PipelineSpec, params: dict[str, Any]) -> PipelineSpec:
    """The spec with tuned ranking choices: ``kind``, ``weights`` per retriever, ``objective``,
    ``folds`` and LightGBM ``lgbm`` parameters (absent keys keep the spec's values)."""
    weights = params.get("weights", {})
    retrievers = [
        r.model_copy(update={"weight": float(weights[r.name])}) if r.name in weights else r
        for r in spec.retrievers
    ]
    update: dict[str, Any] = {}
    for key in ("kind", "objective", "folds"):
        if key in params:
            update[key] = params[key]
    if "lgbm" in params:
        update["params"] = {**spec.ranker.params, **params["lgbm"]}
    ranker = spec.ranker.model_copy(update=update)
    return spec.model_copy(update={"retrievers": retrievers, "ranker": ranker})
