"""Ranking metrics against hand-computed values and a plain-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.domain import metrics as M

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


# ----------------------------------------------------------------- beyond-accuracy metrics
# items: i0 {A}, i1 {A}, i2 {B}, i3 {A, B}, i4 {} (no category)
CATS = [["A"], ["A"], ["B"], ["A", "B"], []]
BEYOND_RECS = np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]])
ILD_0 = (0 + 1 + 1) / 3  # (i0,i1) identical; i2 orthogonal to both
ILD_1 = 1 - 1 / math.sqrt(2)  # cos({A}, {A, B}) = 1/sqrt(2); row 2 has one item: skipped


def test_category_vectors_are_one_hot_and_none_without_categories() -> None:
    v = M.category_vectors(CATS)
    assert v is not None
    np.testing.assert_array_equal(v.toarray(), [[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]])
    assert M.category_vectors([[], []]) is None


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_intra_list_diversity_by_hand(dense: bool) -> None:
    v = M.category_vectors(CATS)
    assert v is not None
    vectors = v.toarray() if dense else v
    assert M.intra_list_diversity(BEYOND_RECS, vectors) == pytest.approx((ILD_0 + ILD_1) / 2)
    # k=2: [i0, i1] -> 0, [i0, i3] -> ILD_1, [i2, -1] skipped
    assert M.intra_list_diversity(BEYOND_RECS, vectors, k=2) == pytest.approx(ILD_1 / 2)
    # an item without categories is dissimilar to everything; a repeat is identical
    assert M.intra_list_diversity(np.array([[0, 4]]), vectors) == pytest.approx(1.0)
    assert M.intra_list_diversity(np.array([[2, 2]]), vectors) == pytest.approx(0.0)
    assert math.isnan(M.intra_list_diversity(np.array([[1, -1], [-1, -1]]), vectors))


def test_intra_list_diversity_matches_a_pairwise_loop() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(30, 6))
    recs = np.array([rng.choice(30, 8, replace=False) for _ in range(40)])
    recs[rng.random(recs.shape) < 0.2] = -1
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    per_list = []
    for row in recs:
        items = row[row >= 0]
        if len(items) < 2:
            continue
        d = [1 - unit[a] @ unit[b] for n, a in enumerate(items) for b in items[n + 1 :]]
        per_list.append(np.mean(d))
    assert M.intra_list_diversity(recs, vectors) == pytest.approx(np.mean(per_list))


def test_novelty_by_hand() -> None:
    counts = np.array([4, 2, 1, 0])  # -log2(c / 4): 0, 1, 2 and 2 (a zero count counts as 1)
    recs = np.array([[0, 1], [2, -1], [3, 3]])
    assert M.novelty(recs, counts, 4) == pytest.approx((0 + 1 + 2 + 2 + 2) / 5)
    assert M.novelty(recs, counts, 4, k=1) == pytest.approx((0 + 2 + 2) / 3)
    assert math.isnan(M.novelty(np.array([[-1]]), counts, 4))
    with pytest.raises(ValueError):
        M.novelty(recs, counts, 0)


def test_average_recommendation_popularity_by_hand() -> None:
    counts = np.array([4, 2, 1, 0])
    recs = np.array([[0, 1], [2, -1], [3, 3], [-1, -1]])  # list means 3, 1, 0; empty skipped
    assert M.average_recommendation_popularity(recs, counts) == pytest.approx(4 / 3)
    assert M.average_recommendation_popularity(recs, counts, k=1) == pytest.approx((4 + 1 + 0) / 3)


def test_popularity_bias_by_hand() -> None:
    counts = np.array([0, 5, 3, 5, 1, 2])
    # ranked (ties by index): i1, i3 | i2, i5 | i4, i0
    np.testing.assert_array_equal(M.popularity_bins(counts, 3), [2, 0, 1, 0, 2, 1])
    recs = np.array([[1, 2, -1], [3, 0, 4]])
    np.testing.assert_allclose(M.popularity_bias(recs, counts, bins=3), [2 / 5, 1 / 5, 2 / 5])
    np.testing.assert_allclose(M.popularity_bias(recs, counts, bins=3, k=1), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(M.popularity_bias(np.array([[-1]]), counts, bins=3), [0, 0, 0])
    ten = M.popularity_bias(np.arange(20)[None, :], np.arange(20)[::-1], bins=10)
    np.testing.assert_allclose(ten, np.full(10, 0.1))  # every decile once: flat


def test_item_user_counts_counts_distinct_positive_users() -> None:
    m = sp.csr_matrix(np.array([[1.0, 0, 2], [3, 0, 0], [0, 0, 0.5]]))
    np.testing.assert_array_equal(M.item_user_counts(m), [2, 0, 2])


def test_ranking_curves_match_ranking_metrics_at_each_cutoff() -> None:
    rng = np.random.default_rng(7)
    recs = np.array([rng.choice(40, 6, replace=False) for _ in range(50)])
    recs[rng.random(recs.shape) < 0.1] = -1
    relevant = [rng.choice(40, rng.integers(0, 8), replace=False) for _ in recs]
    curves = M.ranking_curves(recs, relevant, [1, 3, 6, 10])  # 10 > width: misses
    for k in (1, 3, 6, 10):
        want = M.ranking_metrics(recs, relevant, k)
        assert curves["ndcg"][k] == pytest.approx(want[f"ndcg@{k}"])
        assert curves["precision"][k] == pytest.approx(want[f"precision@{k}"])
        assert curves["recall"][k] == pytest.approx(want[f"recall@{k}"])
    with pytest.raises(ValueError):
        M.ranking_curves(recs, relevant, [0, 5])
