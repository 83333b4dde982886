"""The ranker's features for one user's candidates, built over the candidate array at once.

One C-ordered float32 matrix (candidates x features) is filled column by column: per-retriever
score, standardised score and log rank; the fusion score; per-item columns read from a table
built once per pipeline (:class:`ItemColumns`); the user's activity, category affinity and how
strongly their newest items point at each candidate. No per-candidate Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smartrec.pipeline.kernels import gather_rows
from smartrec.pipeline.query import Candidates, UserQuery
from smartrec.pipeline.retrievers.base import Retriever
from smartrec.pipeline.stats import ItemStats

#: Standardised score given to a candidate a retriever cannot score (fusion only).
MISSING_Z = -3.0
#: The ``recent.sim`` feature sums the lift from this many of the newest history items.
RECENT_SIM_ITEMS = 5


def feature_names(retriever_names: Sequence[str], windows: Sequence[str]) -> list[str]:
    names: list[str] = []
    for r in retriever_names:
        names += [f"{r}.score", f"{r}.z", f"{r}.rank"]
    names += ["fused", "pop.all"]
    names += [f"pop.{w}" for w in windows]
    names += ["item.age_days", "user.activity", "user.cat_max", "user.cat_mean", "recent.sim"]
    return names


def standardise(values: np.ndarray) -> np.ndarray:
    """Standardise each column over its finite values; missing ones get MISSING_Z."""
    ok = np.isfinite(values)
    count = np.maximum(ok.sum(axis=0), 1)
    filled = np.where(ok, values, 0.0).astype(np.float64)
    mean = filled.sum(axis=0) / count
    centred = np.where(ok, filled - mean, 0.0)
    sd = np.sqrt((centred * centred).sum(axis=0) / count)
    z = centred / np.where(sd > 1e-9, sd, 1.0)
    return np.where(ok, z, MISSING_Z).astype(np.float32)


@dataclass
class ItemColumns:
    """Per-item feature columns, one row per model item: log1p(count), log1p(count in each
    window), the birth time (publication, else first event). Computed once per statistics."""

    stats: ItemStats
    table: np.ndarray  # (n_items, 2 + windows) float32, as the features hold them

    @classmethod
    def build(cls, stats: ItemStats) -> ItemColumns:
        f32 = np.float32
        cols = [np.log1p(stats.counts.astype(f32))]
        cols += [np.log1p(a.astype(f32)) for a in stats.window_counts.values()]
        published, first = stats.published.astype(f32), stats.first_seen.astype(f32)
        cols.append(np.where(np.isnan(published), first, published))
        return cls(stats, np.ascontiguousarray(np.column_stack(cols), dtype=f32))


def build_features(
    c: Candidates,
    q: UserQuery,
    retrievers: Sequence[Retriever],
    columns: ItemColumns,
    n_items: int,
) -> np.ndarray:
    """(candidates x features) float32, C-ordered, in :func:`feature_names` order."""
    stats = columns.stats
    n_r = len(retrievers)
    n_windows = len(stats.window_counts)
    width = 3 * n_r + 2 + n_windows + 5
    m = len(c)
    if m == 0:
        return np.zeros((0, width), dtype=np.float32)
    x = np.empty((m, width), dtype=np.float32)
    items = c.items
    inside = items < n_items
    idx = np.where(inside, items, 0)
    z = standardise(c.scores)
    weights = np.asarray([r.config.weight for r in retrievers], dtype=np.float32)
    x[:, 0 : 3 * n_r : 3] = c.scores
    x[:, 1 : 3 * n_r : 3] = z
    x[:, 2 : 3 * n_r : 3] = np.log1p(c.ranks)
    col = 3 * n_r
    x[:, col] = (z * weights).sum(axis=1) if n_r else 0.0
    col += 1
    table = columns.table[idx]
    table[~inside] = np.nan
    x[:, col : col + 1 + n_windows] = table[:, : 1 + n_windows]
    col += 1 + n_windows
    now = q.now if q.now is not None else stats.reference_time
    x[:, col] = (now - table[:, -1]) / 86400.0
    n_hist = len(q.recent)
    x[:, col + 1] = np.float32(np.log1p(n_hist))
    x[:, col + 2], x[:, col + 3] = _category_affinity(stats, q.recent, idx, inside)
    x[:, col + 4] = _recent_sim(retrievers, q.recent, idx, inside)
    return x


def _category_affinity(
    stats: ItemStats, recent: list[int], idx: np.ndarray, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(max, mean) over each candidate's categories of the share of the user's history items in
    that category (NaN for candidates without categories or outside the model)."""
    m = len(idx)
    cat_max = np.full(m, np.nan, dtype=np.float32)
    cat_mean = np.full(m, np.nan, dtype=np.float32)
    cats = stats.categories
    n_hist = len(recent)
    if not n_hist or not cats.shape[1]:
        return cat_max, cat_mean
    hist = np.asarray(recent, dtype=np.int64)
    lengths, cols, vals = gather_rows(cats, hist)
    profile = np.bincount(cols, weights=vals, minlength=cats.shape[1]) / n_hist
    lengths, cols, vals = gather_rows(cats, idx)
    weighted = vals * profile[cols]
    owner = np.repeat(np.arange(m), lengths)
    sums = np.bincount(owner, weights=weighted, minlength=m)
    maxes = np.zeros(m)
    np.maximum.at(maxes, owner, weighted)
    has = inside & (lengths > 0)
    cat_max[has] = maxes[has]
    cat_mean[has] = sums[has] / lengths[has]
    return cat_max, cat_mean


def _recent_sim(
    retrievers: Sequence[Retriever], recent: list[int], idx: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """How strongly the newest history items point at each candidate (the first retriever that
    explains history says; NaN without one)."""
    out = np.full(len(idx), np.nan, dtype=np.float32)
    explainer = next((r for r in retrievers if r.explains_history), None)
    if explainer is None or not recent or not inside.any():
        return out
    src = np.asarray(recent[:RECENT_SIM_ITEMS], dtype=np.int64)
    contrib = explainer.contributions(src, idx[inside])
    if contrib is not None:
        out[inside] = np.asarray(contrib).sum(axis=0)
    return out
