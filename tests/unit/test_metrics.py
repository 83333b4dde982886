"""Ranking metrics against hand-computed values and a plain-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.evaluation import metrics as M

N_ITEMS = 10

# user 0: recs [1, 2, 3], relevant {1, 3}     -> hits at ranks 1 and 3
# user 1: recs [4, -1, -1], relevant {4,5,6,7} -> one hit at rank 1, two empty slots
# user 2: recs [0, 8, 9], relevant {}          -> not counted in the means
RECS = np.array([[1, 2, 3], [4, -1, -1], [0, 8, 9]])
RELEVANT = [np.array([1, 3]), np.array([4, 5, 6, 7]), np.array([], dtype=np.int64)]


def _csr(rows: list[np.ndarray], n_items: int = N_ITEMS) -> sp.csr_matrix:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate(rows).astype(np.int64)
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def _log2(x: float) -> float:
    return math.log2(x)


NDCG_0 = (1 / _log2(2) + 1 / _log2(4)) / (1 / _log2(2) + 1 / _log2(3))
NDCG_1 = (1 / _log2(2)) / (1 / _log2(2) + 1 / _log2(3) + 1 / _log2(4))  # IDCG over min(3, 4)
MAP_0 = (1 / 1 + 2 / 3) / 2
MAP_1 = (1 / 1) / 4


@pytest.mark.parametrize("relevant", [RELEVANT, _csr(RELEVANT)], ids=["list", "csr"])
def test_per_user_values(relevant: object) -> None:
    np.testing.assert_allclose(M.precision_per_user(RECS, relevant)[:2], [2 / 3, 1 / 3])
    np.testing.assert_allclose(M.recall_per_user(RECS, relevant)[:2], [1.0, 1 / 4])
    np.testing.assert_allclose(M.map_per_user(RECS, relevant)[:2], [MAP_0, MAP_1])
    np.testing.assert_allclose(M.ndcg_per_user(RECS, relevant)[:2], [NDCG_0, NDCG_1])
    for f in (M.precision_per_user, M.recall_per_user, M.map_per_user, M.ndcg_per_user):
        assert math.isnan(f(RECS, relevant)[2])


def test_means_skip_users_without_relevant_items() -> None:
    rel = _csr(RELEVANT)
    assert M.precision_at_k(RECS, rel) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert M.recall_at_k(RECS, rel) == pytest.approx((1.0 + 0.25) / 2)
    assert M.mean_average_precision(RECS, rel) == pytest.approx((MAP_0 + MAP_1) / 2)
    assert M.ndcg_at_k(RECS, rel) == pytest.approx((NDCG_0 + NDCG_1) / 2)


def test_coverage_counts_distinct_items_and_ignores_padding() -> None:
    assert M.catalog_coverage(RECS, N_ITEMS) == pytest.approx(7 / 10)  # {0,1,2,3,4,8,9}
    assert M.catalog_coverage(RECS, N_ITEMS, k=1) == pytest.approx(3 / 10)  # {1,4,0}


def test_cutoff_k_truncates_the_lists() -> None:
    rel = _csr(RELEVANT)
    # k=1: user 0 hits item 1, user 1 hits item 4
    assert M.precision_at_k(RECS, rel, k=1) == pytest.approx(1.0)
    assert M.recall_at_k(RECS, rel, k=1) == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert M.ndcg_at_k(RECS, rel, k=1) == pytest.approx(1.0)


def test_map_divides_by_all_relevant_items_not_min_k() -> None:
    recs = np.array([[5, 6]])
    rel = [np.array([5, 6, 7, 8])]
    assert M.mean_average_precision(recs, rel) == pytest.approx((1 + 1) / 4)
    # nDCG's ideal is capped at k: both slots hit -> perfect
    assert M.ndcg_at_k(recs, rel) == pytest.approx(1.0)


def test_ranking_metrics_bundle_matches_single_functions() -> None:
    rel = _csr(RELEVANT)
    out = M.ranking_metrics(RECS, rel, k=3, n_items=N_ITEMS)
    assert out["ndcg@3"] == pytest.approx(M.ndcg_at_k(RECS, rel))
    assert out["map"] == pytest.approx(M.mean_average_precision(RECS, rel))
    assert out["precision@3"] == pytest.approx(M.precision_at_k(RECS, rel))
    assert out["recall@3"] == pytest.approx(M.recall_at_k(RECS, rel))
    assert out["coverage"] == pytest.approx(0.7)


def test_no_relevant_users_gives_zero() -> None:
    out = M.ranking_metrics(np.array([[1, 2]]), [np.array([], dtype=np.int64)], n_items=3)
    assert out["ndcg@2"] == 0.0 and out["map"] == 0.0


def _reference(recs: np.ndarray, relevant: list[set[int]], k: int) -> dict[str, float]:
    """Loop-per-user definitions, written independently of the vectorised code."""
    nd, mp, pr, rc = [], [], [], []
    for row, rel in zip(recs, relevant, strict=True):
        if not rel:
            continue
        top = [int(x) for x in row[:k]]
        dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(top) if x in rel)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
        hits, ap = 0, 0.0
        for i, x in enumerate(top):
            if x in rel:
                hits += 1
                ap += hits / (i + 1)
        nd.append(dcg / idcg)
        mp.append(ap / len(rel))
        pr.append(hits / k)
        rc.append(hits / len(rel))
    return {
        f"ndcg@{k}": float(np.mean(nd)),
        "map": float(np.mean(mp)),
        f"precision@{k}": float(np.mean(pr)),
        f"recall@{k}": float(np.mean(rc)),
    }


def test_vectorised_metrics_match_a_loop_reference_on_random_data() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items, k = 200, 60, 10
    recs = np.array([rng.choice(n_items, k, replace=False) for _ in range(n_users)])
    recs[rng.random(recs.shape) < 0.05] = -1  # some empty slots
    relevant = [set(rng.choice(n_items, rng.integers(0, 15), replace=False).tolist()) for _ in recs]
    got = M.ranking_metrics(recs, [np.array(sorted(r), dtype=np.int64) for r in relevant], k)
    want = _reference(recs, relevant, k)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError):
        M.ndcg_at_k(RECS, _csr(RELEVANT[:2]))
    with pytest.raises(ValueError):
        M.ndcg_at_k(np.array([1, 2, 3]), RELEVANT[:1])
