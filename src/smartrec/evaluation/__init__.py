"""Offline evaluation: ranking metrics, reproducible splits and the benchmark protocol."""

from smartrec.evaluation.metrics import (
    catalog_coverage,
    hits,
    map_per_user,
    mean_average_precision,
    ndcg_at_k,
    ndcg_per_user,
    precision_at_k,
    precision_per_user,
    ranking_metrics,
    recall_at_k,
    recall_per_user,
)
from smartrec.evaluation.protocol import (
    PROTOCOL_PARAMS,
    evaluate,
    format_table,
    run_stratified_movielens,
)
from smartrec.evaluation.splits import stratified_split, temporal_holdout

__all__ = [
    "PROTOCOL_PARAMS",
    "catalog_coverage",
    "evaluate",
    "format_table",
    "hits",
    "map_per_user",
    "mean_average_precision",
    "ndcg_at_k",
    "ndcg_per_user",
    "precision_at_k",
    "precision_per_user",
    "ranking_metrics",
    "recall_at_k",
    "recall_per_user",
    "run_stratified_movielens",
    "stratified_split",
    "temporal_holdout",
]
