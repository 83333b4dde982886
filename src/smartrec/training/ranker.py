"""The ranking stage's training: leakage-free training lists, LightGBM, and its tuning.

Training lists: the retrievers and every feature come from the *past* events only and the labels
are the items each user touched in the *later* window. :func:`ranker_dataset` takes the two
parts as separate objects, so the features cannot see the labels' window; a test swaps the later
window for random events and checks that the features do not move.

Tuning (:func:`tune_pipeline`): the retrievers are fitted once on the validation split's
training part, and every validation user's candidates and features are computed once; a trial
only re-weighs the standardised retriever scores (fusion) or trains a ranker on cached training
lists, so hundreds of trials fit in a few minutes. Nothing here reads the data the final model is
judged on: the validation split is carved out of the training data by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix

if TYPE_CHECKING:
    from lightgbm import Booster

log = logging.getLogger(__name__)
K = 10
MAX_FOLDS = 4
Progress = Callable[[str], None]


def ranker_dataset(
    past_pipeline: TrainedPipeline,
    past: Interactions,
    later: Interactions,
    max_users: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(features, labels, group sizes, counts) for LambdaRank.

    Features come from ``past_pipeline`` and ``past`` only; ``later`` supplies nothing but the
    labels (the items each user touched afterwards that were new to them).
    """
    later_pos = later.binarized()
    fresh = sp.csr_matrix(later_pos - later_pos.multiply(past.seen))
    fresh.eliminate_zeros()
    has_past = np.diff(past.matrix.indptr) > 0
    users = np.flatnonzero((np.diff(fresh.indptr) > 0) & has_past)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    groups: list[int] = []
    kept_users: list[int] = []
    positives = 0
    for u in users.tolist():
        q = query_from_matrix(past, u)
        c = past_pipeline.retrieve(q)
        if len(c) == 0:
            continue
        x = past_pipeline.features(c, q)
        lo, hi = fresh.indptr[u], fresh.indptr[u + 1]
        y = np.isin(c.items, fresh.indices[lo:hi]).astype(np.int32)
        if y.sum() == 0:
            continue  # LambdaRank learns nothing from a list without a relevant item
        xs.append(x)
        ys.append(y)
        groups.append(len(c))
        kept_users.append(u)
        positives += int(y.sum())
    if not xs:
        width = len(past_pipeline.feature_names)
        return np.zeros((0, width)), np.zeros(0), np.zeros(0, dtype=np.int64), {"users": 0}
    counts: dict[str, Any] = {
        "users": len(groups),
        "rows": int(sum(groups)),
        "positives": positives,
        "user_list": kept_users,
    }
    return np.vstack(xs), np.concatenate(ys), np.asarray(groups), counts


def train_ranker(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    params: dict[str, Any],
    seed: int = 0,
    objective: str = "lambdarank",
) -> Booster:
    import lightgbm as lgb

    # One thread unless told otherwise: on a busy 2-core server LightGBM's thread pool is
    # slower than one thread at these sizes (measured 17 s against 0.13 s).
    options = {"n_jobs": 1, **params}
    if objective == "binary":
        model: lgb.LGBMClassifier | lgb.LGBMRanker = lgb.LGBMClassifier(
            random_state=seed, verbose=-1, **options
        )
        model.fit(x, y)
    else:
        model = lgb.LGBMRanker(objective=objective, random_state=seed, verbose=-1, **options)
        model.fit(x, y, group=groups)
    return model.booster_
