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

Beyond-accuracy metrics need no relevance, only the lists and train statistics; they say whether
a model that scores well does so by recommending the same blockbusters to everyone:

* intra-list diversity (ILD): mean over lists of the mean pairwise ``1 - cos(v_i, v_j)`` of the
  item vectors in the list (Ziegler et al., "Improving recommendation lists through topic
  diversification", WWW 2005; Recommenders' ``diversity`` with ``item_feature_vector``).
* novelty: mean self-information ``-log2(count_i / n)`` of the recommended items (Castells,
  Vargas and Wang, "Novelty and diversity metrics for recommender systems", ECIR 2011; Zhou et
  al., PNAS 2010).
* average recommendation popularity (ARP): mean over lists of the mean train popularity of the
  items (Abdollahpouri, Burke and Mobasher, "Managing popularity bias in recommender systems
  with personalized re-ranking", FLAIRS 2019).
* popularity bias profile: share of the recommendations per item-popularity decile.
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


def ranking_curves(
    recs: np.ndarray, relevant: Relevant, ks: Sequence[int]
) -> dict[str, dict[int, float]]:
    """``{"ndcg"|"precision"|"recall": {k: mean}}`` for every cutoff from one hit matrix.

    Cumulative sums over the top ``max(ks)`` make each extra cutoff free; the values equal
    :func:`ranking_metrics` at that k.
    """
    cutoffs = sorted({int(k) for k in ks})
    if not cutoffs or cutoffs[0] <= 0:
        raise ValueError("ks must be positive cutoffs")
    top = cutoffs[-1]
    h, n_rel = hits(recs, relevant, top)
    if h.shape[1] < top:  # a short matrix: the missing slots are misses, as -1 padding
        h = np.pad(h, ((0, 0), (0, top - h.shape[1])))
    valid = n_rel > 0
    h, nr = h[valid], n_rel[valid]
    disc = _discounts(top)
    cum_hits = np.cumsum(h, axis=1, dtype=np.float64)
    cum_dcg = np.cumsum(h * disc, axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    out: dict[str, dict[int, float]] = {"ndcg": {}, "precision": {}, "recall": {}}
    for k in cutoffs:
        if not valid.any():
            out["ndcg"][k] = out["precision"][k] = out["recall"][k] = 0.0
            continue
        out["ndcg"][k] = float((cum_dcg[:, k - 1] / ideal[np.minimum(nr, k)]).mean())
        out["precision"][k] = float((cum_hits[:, k - 1] / k).mean())
        out["recall"][k] = float((cum_hits[:, k - 1] / nr).mean())
    return out


def item_user_counts(matrix: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Distinct users with a positive entry per item: the popularity the metrics below use."""
    m = sp.csc_matrix(matrix)
    m.eliminate_zeros()
    return np.diff(m.indptr).astype(np.int64)


def category_vectors(item_categories: Sequence[Sequence[str]]) -> sp.csr_matrix | None:
    """One-hot (items x categories) from per-item category lists; None when no item has one."""
    vocab = sorted({c for cats in item_categories for c in cats})
    if not vocab:
        return None
    col = {c: j for j, c in enumerate(vocab)}
    rows = [np.array(sorted({col[c] for c in cats}), dtype=np.int64) for cats in item_categories]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(item_categories), len(vocab)))


def _slots(recs: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The rec matrix cut at k and the mask of filled (non -1) slots."""
    r = _as_recs(recs, k)
    return r, r >= 0


def intra_list_diversity(
    recs: np.ndarray,
    item_vectors: sp.spmatrix | sp.sparray | np.ndarray,
    k: int | None = None,
) -> float:
    """Mean over lists of the mean pairwise cosine distance ``1 - cos`` between their items.

    Vectorised with ``sum_{i<j} cos(v_i, v_j) = (|sum v|^2 - sum |v|^2) / 2`` over L2-normalised
    vectors, so no pair is ever materialised. Empty (-1) slots are ignored and lists with fewer
    than two items are skipped (NaN when none is left). An all-zero vector (an item without
    categories) has cosine 0 with everything, i.e. counts as fully dissimilar.
    """
    r, filled = _slots(recs, k)
    n_items = item_vectors.shape[0]
    if r.size and int(r.max()) >= n_items:
        raise ValueError("recs contain an item index beyond item_vectors")
    if sp.issparse(item_vectors):
        v = sp.csr_matrix(item_vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1), dtype=np.float64).ravel())
    else:
        v = np.asarray(item_vectors, dtype=np.float64)
        norms = np.linalg.norm(v, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit = sp.diags(inv) @ v if sp.issparse(v) else v * inv[:, None]
    batch = r.shape[0]
    rows = np.broadcast_to(np.arange(batch)[:, None], r.shape)[filled]
    cols = r[filled]
    pick = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(batch, n_items))
    summed = pick @ unit  # duplicates are summed by the constructor: a repeat has cosine 1
    if sp.issparse(summed):
        sq = np.asarray(sp.csr_matrix(summed).multiply(summed).sum(axis=1)).ravel()
    else:
        sq = (np.asarray(summed) ** 2).sum(axis=1)
    self_sq = np.bincount(rows, weights=(norms[cols] > 0).astype(np.float64), minlength=batch)
    n = filled.sum(axis=1).astype(np.float64)
    keep = n >= 2
    if not keep.any():
        return float("nan")
    pairs = n[keep] * (n[keep] - 1) / 2
    mean_sim = (sq[keep] - self_sq[keep]) / 2 / pairs
    return float((1.0 - mean_sim).mean())


def novelty(
    recs: np.ndarray, item_popularity_counts: np.ndarray, n_users: int, k: int | None = None
) -> float:
    """Mean self-information ``-log2(count_i / n_users)`` over all filled recommendation slots.

    ``count_i`` is how many of the ``n_users`` train users interacted with item i (a count of 0
    is raised to 1 so the value stays finite). Bits of surprise: recommending an item everyone
    has seen scores 0. Recommenders' ``novelty`` uses the same slot-weighted mean but divides
    by the number of train interactions (its "choice" model); pass that as ``n_users`` to
    reproduce its numbers (it adds a constant ``log2(interactions / users)``).
    """
    if n_users <= 0:
        raise ValueError("n_users must be positive")
    r, filled = _slots(recs, k)
    counts = np.maximum(np.asarray(item_popularity_counts, dtype=np.float64), 1.0)
    items = r[filled]
    if not items.size:
        return float("nan")
    return float((-np.log2(counts[items] / n_users)).mean())


def average_recommendation_popularity(
    recs: np.ndarray, item_counts: np.ndarray, k: int | None = None
) -> float:
    """ARP: mean over lists of the mean train popularity (user count) of their items.

    Lower means a model leans less on the head of the catalogue; empty lists are skipped.
    """
    r, filled = _slots(recs, k)
    counts = np.asarray(item_counts, dtype=np.float64)
    pop = np.where(filled, counts[np.where(filled, r, 0)], 0.0)
    n = filled.sum(axis=1)
    keep = n > 0
    if not keep.any():
        return float("nan")
    return float((pop[keep].sum(axis=1) / n[keep]).mean())


def popularity_bins(item_counts: np.ndarray, bins: int = 10) -> np.ndarray:
    """Popularity bin per item (0 = most popular), items split into ``bins`` equal-size groups.

    Items are ranked by count, descending, ties by index (a stable sort), so that the bins are
    reproducible even where many tail items share a count.
    """
    if bins <= 0:
        raise ValueError("bins must be positive")
    counts = np.asarray(item_counts)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(len(counts), dtype=np.int64)
    rank[order] = np.arange(len(counts))
    return rank * bins // max(len(counts), 1)


def popularity_bias(
    recs: np.ndarray, item_counts: np.ndarray, bins: int = 10, k: int | None = None
) -> np.ndarray:
    """Share of all filled recommendation slots per item-popularity bin (index 0 = top decile).

    An unbiased recommender would put ``1 / bins`` in each; a popularity model puts nearly all
    in the first. Sums to 1 (all zeros when nothing was recommended).
    """
    r, filled = _slots(recs, k)
    which = popularity_bins(item_counts, bins)[r[filled]]
    total = np.bincount(which, minlength=bins).astype(np.float64)
    return total / total.sum() if total.sum() else total
