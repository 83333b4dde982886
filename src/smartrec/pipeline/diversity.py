"""Diversity re-ranking of a candidate list that is already ordered by score.

All functions return positions into the candidate list, so callers can reorder whatever arrays
they carry alongside (ids, scores, explanations) without this module knowing about them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["cap_per_category", "category_vectors", "mmr"]

# Sparse vectors are densified below this many cells: a dense mat-vec per step is much cheaper
# than scipy's per-call overhead, and 4M float64 cells is 32 MB at most.
_DENSE_CELLS = 4_000_000


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.intp)


def _unit_rows(vectors: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray | sp.csr_matrix:
    """Rows scaled to unit length so that dot products are cosines; zero rows stay zero."""
    if sp.issparse(vectors):
        matrix = sp.csr_matrix(vectors, dtype=np.float64)
        if matrix.shape[0] * matrix.shape[1] <= _DENSE_CELLS:
            return _unit_rows(matrix.toarray())
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(inverse) @ matrix)
    dense = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(dense, axis=1)
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return dense * inverse[:, None]


def mmr(
    scores: np.ndarray,
    vectors: np.ndarray | sp.spmatrix | sp.sparray,
    n: int,
    lambda_: float,
) -> np.ndarray:
    """Maximal Marginal Relevance (Carbonell & Goldstein, 1998), greedy.

    Each step picks the argmax of ``lambda_ * rel - (1 - lambda_) * max_sim``, with ``rel`` the
    scores min-max scaled to [0, 1] (all equal scores give 0) and ``max_sim`` the largest cosine
    to an already picked row (0 before the first pick; zero vectors are similar to nothing).
    Ties go to the earlier position. ``lambda_=1`` is the plain score order. A running maximum
    keeps it at one similarity row per pick: O(n * m * d).
    """
    rel_raw = np.asarray(scores, dtype=np.float64).ravel()
    m = rel_raw.shape[0]
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not sp.issparse(vectors):
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
    if vectors.shape[0] != m:
        raise ValueError(f"vectors has {vectors.shape[0]} rows for {m} scores")
    if not np.all(np.isfinite(rel_raw)):
        raise ValueError("scores must be finite")
    n = min(n, m)
    if n == 0:
        return _empty()
    if lambda_ == 1.0:
        return np.argsort(-rel_raw, kind="stable")[:n].astype(np.intp)

    low, high = rel_raw.min(), rel_raw.max()
    rel = (rel_raw - low) / (high - low) if high > low else np.zeros(m)
    unit = _unit_rows(vectors)
    relevance = lambda_ * rel
    penalty = 1.0 - lambda_
    max_sim = np.zeros(m)
    taken = np.zeros(m, dtype=bool)
    picked = np.empty(n, dtype=np.intp)
    for step in range(n):
        objective = relevance - penalty * max_sim
        objective[taken] = -np.inf
        best = int(np.argmax(objective))
        picked[step] = best
        taken[best] = True
        if step + 1 == n:
            break
        if isinstance(unit, np.ndarray):
            sim = unit @ unit[best]
        else:
            sim = np.asarray((unit @ unit[best].T).todense()).ravel()
        max_sim = sim if step == 0 else np.maximum(max_sim, sim)
    return picked


def category_vectors(categories: Sequence[Sequence[str]]) -> sp.csr_matrix:
    """One-hot category rows (columns in first-seen order), to use as MMR ``vectors``."""
    columns: dict[str, int] = {}
    indptr = [0]
    indices: list[int] = []
    for cats in categories:
        row = {columns.setdefault(cat, len(columns)) for cat in cats}
        indices.extend(sorted(row))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(len(categories), len(columns)),
    )


def cap_per_category(
    order: np.ndarray,
    categories: Sequence[Sequence[str]],
    cap: int,
    n: int,
    backfill: bool = True,
) -> np.ndarray:
    """Keep at most ``cap`` items per category so one genre cannot fill the page.

    Walks ``order`` (positions into ``categories``) and keeps an item only while none of its
    categories has ``cap`` kept items; items without categories are never capped. With
    ``backfill``, a page that came out short of ``n`` is topped up with the skipped items in
    their original order, so the caps are a preference rather than a reason for a short page.
    ``cap`` must be at least 1 (a cap of 0 would mean "no categorised items", almost surely a
    configuration mistake).
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    positions = np.asarray(order, dtype=np.intp).ravel()
    if positions.size and (positions.min() < 0 or positions.max() >= len(categories)):
        raise ValueError("order holds positions outside the categories list")
    kept: list[int] = []
    skipped: list[int] = []
    counts: dict[str, int] = {}
    for pos in positions.tolist():
        if len(kept) >= n:
            break
        cats = set(categories[pos])
        if any(counts.get(cat, 0) >= cap for cat in cats):
            skipped.append(pos)
            continue
        kept.append(pos)
        for cat in cats:
            counts[cat] = counts.get(cat, 0) + 1
    if backfill and len(kept) < n:
        kept.extend(skipped[: n - len(kept)])
    return np.asarray(kept, dtype=np.intp)
