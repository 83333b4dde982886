"""Small vectorised kernels the retrievers and the features share: top-n, scorers, CSR rows.

Row gathers here read a CSR matrix's arrays directly: on the per-request path scipy's fancy
indexing costs about 0.1-0.3 ms a call in checks and allocations, more than the work itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

#: Scores any candidate indices (NaN where the retriever cannot score one).
Scorer = Callable[[np.ndarray], np.ndarray]


def top_n(scores: np.ndarray, n: int, blocked: np.ndarray | None) -> np.ndarray:
    """Indices of the n best finite scores, best first (``blocked`` indices skipped)."""
    s = np.asarray(scores, dtype=np.float32)
    if blocked is not None and blocked.size:
        s = s.copy()
        s[blocked[blocked < len(s)]] = -np.inf
    n = min(n, len(s))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s))
    part = part[np.isfinite(s[part])]
    return part[np.argsort(-s[part], kind="stable")].astype(np.int64)


def nan_scorer(idx: np.ndarray) -> np.ndarray:
    return np.full(len(idx), np.nan, dtype=np.float32)


def array_scorer(values: np.ndarray) -> Scorer:
    """Scores read from a per-item array (items past its end: NaN)."""
    n = len(values)

    def score(idx: np.ndarray) -> np.ndarray:
        out = np.full(len(idx), np.nan, dtype=np.float32)
        ok = idx < n
        out[ok] = values[idx[ok]]
        return out

    return score


def first_allowed(
    order: np.ndarray, n: int, blocked: np.ndarray, allowed: np.ndarray | None
) -> np.ndarray:
    """The first n items of an order that are allowed and not blocked.

    Looks at a short head of the order first (vectorised), widening it only when too many
    items in it are excluded: the whole order is a million items on a large catalogue.
    """
    head = n + len(blocked) + 64
    while True:
        part = order[:head]
        keep = ~np.isin(part, blocked) if blocked.size else np.ones(len(part), dtype=bool)
        if allowed is not None:
            inside = part < len(allowed)
            keep &= inside & allowed[np.where(inside, part, 0)]
        found = part[keep]
        if len(found) >= n or head >= len(order):
            return found[:n].astype(np.int64)
        head *= 4


def gather_rows(
    matrix: sp.csr_matrix, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row lengths, column indices, values) of ``matrix[rows]``, concatenated in row order."""
    indptr = matrix.indptr
    starts = indptr[rows]
    lengths = (indptr[rows + 1] - starts).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return lengths, np.zeros(0, dtype=matrix.indices.dtype), np.zeros(0, matrix.data.dtype)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    return lengths, matrix.indices[offsets], matrix.data[offsets]


def dot_rows(matrix: sp.csr_matrix | np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix[rows] @ query`` for a dense query, without building the sub-matrix."""
    if not sp.issparse(matrix):
        return np.asarray(np.asarray(matrix)[rows] @ query, dtype=np.float32).ravel()
    csr = matrix if isinstance(matrix, sp.csr_matrix) else sp.csr_matrix(matrix)
    lengths, cols, vals = gather_rows(csr, rows)
    owner = np.repeat(np.arange(len(rows)), lengths)
    return np.bincount(owner, weights=vals * query[cols], minlength=len(rows)).astype(np.float32)


def prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """The ``keep`` largest entries of every row (rows already that short are left whole)."""
    matrix = sp.csr_matrix(matrix)
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or int(lengths.max()) <= keep:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((-matrix.data, rows))  # by row, largest first
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    kept = order[rank < keep]
    kept.sort()  # back to CSR order: by row, then column as stored
    return sp.csr_matrix(
        (matrix.data[kept], matrix.indices[kept], np.r_[0, np.cumsum(np.minimum(lengths, keep))]),
        shape=matrix.shape,
    )


def strongest_sources(
    src: np.ndarray, strength: np.ndarray, columns: np.ndarray | None = None, size: int = 0
) -> list[int | None]:
    """For each column of ``strength`` (sources x targets), the source that weighs most on it,
    or None when none weighs at all: the history item a reason names. ``columns`` places the
    targets among ``size`` outputs (the others stay None)."""
    at = np.arange(strength.shape[1]) if columns is None else columns
    out: list[int | None] = [None] * (size or strength.shape[1])
    if strength.size == 0:
        return out
    best = strength.argmax(axis=0)
    found = strength[best, np.arange(strength.shape[1])] > 0
    for pos, item in zip(at[found].tolist(), src[best[found]].tolist(), strict=True):
        out[pos] = int(item)
    return out
