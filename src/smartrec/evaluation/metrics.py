"""Top-k ranking metrics, vectorised over a batch of users.

Inputs are the recommendation matrix ``recs`` (batch x k internal item indices, best first,
-1 for an empty slot, as :meth:`Recommender.recommend` pads) and the relevant items of each row,
either a CSR matrix (batch x n_items, nonzero = relevant) or a list of index arrays. Relevance is
binary. Definitions follow the Microsoft Recommenders ``python_evaluation`` module so that numbers
compare with published benchmarks:

* nDCG@k: DCG of the hits over the IDCG of ``min(k, n_relevant)`` hits, log2 discount.
* precision@k: hits / k (empty slots count as misses).
* recall@k: hits / n_relevant.
* MAP (``map`` there, not ``map_at_k``): sum of precision@rank over the hit ranks within the top k,
  divided by n_relevant.
* coverage: distinct recommended items / n_items.

Per-user functions return NaN for users without a relevant item; the means skip those users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

#: Relevant items per row: sparse (nonzero = relevant) or one index array per row.
Relevant: TypeAlias = sp.spmatrix | sp.sparray | Sequence[np.ndarray] | Sequence[Sequence[int]]


def _as_recs(recs: np.ndarray, k: int | None) -> np.ndarray:
    arr = np.asarray(recs)
    if arr.ndim != 2:
        raise ValueError("recs must be a 2-D array (batch x k)")
    arr = arr.astype(np.int64, copy=False)
    if k is not None:
        if k <= 0:
            raise ValueError("k must be positive")
        arr = arr[:, :k]
    return arr


def relevant_matrix(relevant: Relevant, batch: int, n_items: int | None = None) -> sp.csr_matrix:
    """Binary CSR (batch x n_items) from a sparse matrix or a list of index arrays."""
    if sp.issparse(relevant):
        mat = sp.csr_matrix(relevant)
        mat.eliminate_zeros()
    else:
        rows = [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        cols = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        width = n_items if n_items is not None else (int(cols.max()) + 1 if cols.size else 0)
        if cols.size and cols.min() < 0:
            raise ValueError("relevant item indices must be non-negative")
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        mat = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(rows), width)
        )
    if mat.shape[0] != batch:
        raise ValueError(f"relevant has {mat.shape[0]} rows, recs has {batch}")
    out = mat.astype(np.float32)
    out.data[:] = 1.0
    out.sort_indices()
    return out


def hits(
    recs: np.ndarray, relevant: Relevant, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean hit matrix (batch x k) and the number of relevant items per row.

    One ``searchsorted`` over the (row, item) keys of the relevant set: no Python loop per user.
    """
    r = _as_recs(recs, k)
    batch = r.shape[0]
    rel = relevant_matrix(relevant, batch)
    n_rel = np.diff(rel.indptr).astype(np.int64)
    width = max(rel.shape[1], int(r.max()) + 1 if r.size else 0, 1)
    rel_rows = np.repeat(np.arange(batch, dtype=np.int64), n_rel)
    rel_keys = rel_rows * width + rel.indices.astype(np.int64)  # sorted: rows, then indices
    rec_keys = np.arange(batch, dtype=np.int64)[:, None] * width + r
    pos = np.searchsorted(rel_keys, rec_keys)
    pos = np.minimum(pos, max(len(rel_keys) - 1, 0))
    found = (rel_keys[pos] == rec_keys) if rel_keys.size else np.zeros(r.shape, dtype=bool)
    return found & (r >= 0), n_rel


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _per_user(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    return np.where(n_rel > 0, values, np.nan)


def _mean(per_user: np.ndarray) -> float:
    valid = per_user[~np.isnan(per_user)]
    return float(valid.mean()) if valid.size else 0.0


def _cutoff(recs: np.ndarray, k: int | None) -> int:
    return int(k) if k is not None else _as_recs(recs, None).shape[1]


def ndcg_per_user(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Binary-relevance nDCG@k per row; IDCG over ``min(k, n_relevant)`` ideal hits."""
    kk = _cutoff(recs, k)
    h, n_rel = hits(recs, relevant, kk)
    disc = _discounts(kk)
    dcg = (h * disc[: h.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, kk)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user(dcg / ideal, n_rel)


def precision_per_user(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Hits in the top k over k (a short or padded list is not rewarded)."""
    kk = _cutoff(recs, k)
    h, n_rel = hits(recs, relevant, kk)
    return _per_user(h.sum(axis=1) / kk, n_rel)


def recall_per_user(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Hits in the top k over the number of relevant items."""
    h, n_rel = hits(recs, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user(h.sum(axis=1) / n_rel, n_rel)


def map_per_user(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Average precision as Microsoft Recommenders' ``map``: over n_relevant, not min(k, n_rel)."""
    h, n_rel = hits(recs, relevant, k)
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    prec_at_hit = np.cumsum(h, axis=1) / ranks * h
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user(prec_at_hit.sum(axis=1) / n_rel, n_rel)


def ndcg_at_k(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> float:
    """Mean nDCG@k over rows with at least one relevant item."""
    return _mean(ndcg_per_user(recs, relevant, k))


def precision_at_k(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> float:
    """Mean precision@k over rows with at least one relevant item."""
    return _mean(precision_per_user(recs, relevant, k))


def recall_at_k(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> float:
    """Mean recall@k over rows with at least one relevant item."""
    return _mean(recall_per_user(recs, relevant, k))


def mean_average_precision(recs: np.ndarray, relevant: Relevant, k: int | None = None) -> float:
    """Mean of :func:`map_per_user` over rows with at least one relevant item."""
    return _mean(map_per_user(recs, relevant, k))


def catalog_coverage(recs: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue that appears in at least one list (empty slots ignored)."""
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    r = _as_recs(recs, k)
    distinct = np.unique(r[r >= 0])
    return float(len(distinct) / n_items)


def ranking_metrics(
    recs: np.ndarray, relevant: Relevant, k: int | None = None, n_items: int | None = None
) -> dict[str, float]:
    """All metrics from one hit computation: ``ndcg@k``, ``map``, ``precision@k``, ``recall@k``,
    and ``coverage`` (when ``n_items`` is given)."""
    kk = _cutoff(recs, k)
    h, n_rel = hits(recs, relevant, kk)
    valid = n_rel > 0
    n_valid = int(valid.sum())
    disc = _discounts(kk)
    n_hits = h.sum(axis=1).astype(np.float64)
    dcg = (h * disc[: h.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, kk)]
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    ap = (np.cumsum(h, axis=1) / ranks * h).sum(axis=1)
    out: dict[str, float] = {}
    if n_valid:
        nr = n_rel[valid].astype(np.float64)
        out[f"ndcg@{kk}"] = float((dcg[valid] / ideal[valid]).mean())
        out["map"] = float((ap[valid] / nr).mean())
        out[f"precision@{kk}"] = float((n_hits[valid] / kk).mean())
        out[f"recall@{kk}"] = float((n_hits[valid] / nr).mean())
    else:
        out.update({f"ndcg@{kk}": 0.0, "map": 0.0, f"precision@{kk}": 0.0, f"recall@{kk}": 0.0})
    if n_items is not None:
        out["coverage"] = catalog_coverage(recs, n_items, kk)
    return out
