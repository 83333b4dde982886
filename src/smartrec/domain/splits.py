"""Train/test splits that return a boolean train mask over the event rows.

``stratified_split`` reproduces Microsoft Recommenders' ``python_stratified_split`` row for row
(given the rows in the same order), so results compare with its published benchmarks. There,
each group (an item's or a user's ratings, in input order) is shuffled with
``DataFrame.sample(frac=1, random_state=seed)`` -- i.e. ``RandomState(seed).permutation(n)`` --
and the first ``round(ratio * n)`` shuffled rows go to train. The permutation depends only on the
group size, so it is drawn once per distinct size and applied to every group of that size: the
whole split is a few vectorised passes however many groups there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np


def _group_codes(values: Sequence[object] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    _, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def stratified_split(
    user_ids: Sequence[object] | np.ndarray,
    item_ids: Sequence[object] | np.ndarray,
    ratio: float = 0.75,
    seed: int = 42,
    by: Literal["item", "user"] = "item",
) -> np.ndarray:
    """Train mask: within each item's (or user's) rows, a seeded ``round(ratio * n)`` go to train.

    Matches ``python_stratified_split(df, ratio, filter_by=by, seed=seed)`` with ``min_rating=1``.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError("ratio must be in (0, 1)")
    if by not in ("item", "user"):
        raise ValueError("by must be 'item' or 'user'")
    if len(user_ids) != len(item_ids):
        raise ValueError("user_ids and item_ids must have the same length")
    codes = _group_codes(item_ids if by == "item" else user_ids)
    n = len(codes)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    # Rows grouped, input order kept within a group (pandas groupby does the same).
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sorted_codes = codes[order]
    position = np.arange(n, dtype=np.int64) - starts[sorted_codes]
    group_size = sizes[sorted_codes]
    # One "is this position in train" table per distinct group size, laid end to end.
    distinct = np.unique(sizes[sizes > 0])
    offsets = np.concatenate([[0], np.cumsum(distinct)[:-1]])
    table = np.zeros(int(distinct.sum()), dtype=bool)
    for size, offset in zip(distinct.tolist(), offsets.tolist(), strict=True):
        cut = round(ratio * size)  # Python round, as the reference (half to even)
        perm = np.random.RandomState(seed).permutation(size)
        table[offset + perm[:cut]] = True
    size_slot = np.searchsorted(distinct, group_size)
    mask[order] = table[offsets[size_slot] + position]
    return mask


def temporal_holdout(times: Sequence[float] | np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Train mask that holds out the newest ``round(fraction * n)`` events.

    Ties on time are broken by row order (a stable sort): among equal times, later rows are
    treated as newer, so the split is deterministic.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError("fraction must be in [0, 1)")
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    n_test = round(fraction * n)
    mask = np.ones(n, dtype=bool)
    if n_test:
        order = np.argsort(t, kind="stable")
        mask[order[n - n_test :]] = False
    return mask
