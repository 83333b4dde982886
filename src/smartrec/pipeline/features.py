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
    """Standardise over the finite values; missing ones get MISSING_Z."""
    out = np.full(values.shape, MISSING_Z, dtype=np.float32)
    ok = np.isfinite(values)
    if ok.any():
        v = values[ok]
        sd = float(v.std())
        out[ok] = (v - float(v.mean())) / (sd if sd > 1e-9 else 1.0)
    return out


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
    fused = np.zeros(m, dtype=np.float32)
    for j, r in enumerate(retrievers):
        z = standardise(c.scores[:, j])
        fused += r.config.weight * z
        x[:, 3 * j] = c.scores[:, j]
        x[:, 3 * j + 1] = z
        x[:, 3 * j + 2] = np.log1p(c.ranks[:, j])
    col = 3 * n_r
    x[:, col] = fused
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
