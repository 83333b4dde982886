"""Train/test splits: they live in :mod:`smartrec.domain.splits` (below the pipeline, which
splits its training data for the ranker); this module keeps the evaluation package's names."""

from smartrec.domain.splits import (
    stratified_split,
    temporal_holdout,
)

__all__ = [
    "stratified_split",
    "temporal_holdout",
]
