from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.pipeline.diversity import cap_per_category, category_vectors, mmr

# --- MMR --------------------------------------------------------------------------------------

# scores [4, 3, 2, 0] -> rel [1, .75, .5, 0]; unit vectors 0=[1,0], 1=[.71,.71], 2=[0,1], 3=zero.
HAND_SCORES = np.array([4.0, 3.0, 2.0, 0.0])
HAND_VECTORS = np.array([[2.0, 0.0], [3.0, 3.0], [0.0, 5.0], [0.0, 0.0]])


def test_mmr_hand_computed_example() -> None:
    # lambda .5: pick 0; then 1: .375 - .5 * .7071 = .021, 2: .25 - 0 = .25, 3: 0 -> 2;
    # then 1: .021 (max sim still .7071) beats 3: 0.
    np.testing.assert_array_equal(mmr(HAND_SCORES, HAND_VECTORS, 4, 0.5), [0, 2, 1, 3])
    # lambda .9: after 0, item 1 scores .675 - .1 * .7071 = .604 > item 2's .45.
    np.testing.assert_array_equal(mmr(HAND_SCORES, HAND_VECTORS, 4, 0.9), [0, 1, 2, 3])
    # lambda 0 ignores relevance: ties (first pick, then 2 vs the zero row 3) go to the earlier.
    np.testing.assert_array_equal(mmr(HAND_SCORES, HAND_VECTORS, 4, 0.0), [0, 2, 3, 1])
    np.testing.assert_array_equal(mmr(HAND_SCORES, HAND_VECTORS, 2, 0.5), [0, 2])


def test_mmr_lambda_one_is_the_score_order() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=50)
    scores[10] = scores[3]  # a tie keeps the earlier position first
    vectors = rng.normal(size=(50, 8))
    expected = np.argsort(-scores, kind="stable")[:20]
    np.testing.assert_array_equal(mmr(scores, vectors, 20, 1.0), expected)
    ordered = np.sort(scores)[::-1]
    np.testing.assert_array_equal(mmr(ordered, vectors, 50, 1.0), np.arange(50))


def test_mmr_small_lambda_spreads_categories() -> None:
    cats = [["A"]] * 5 + [["B"]] * 5 + [["C"]] * 5
    scores = np.linspace(1.0, 0.5, 15)
    vectors = category_vectors(cats)
    plain = mmr(scores, vectors, 3, 1.0)
    assert [cats[i][0] for i in plain] == ["A", "A", "A"]
    diverse = mmr(scores, vectors, 3, 0.3)
    np.testing.assert_array_equal(diverse, [0, 5, 10])  # the best of each category


def test_mmr_sparse_and_dense_vectors_agree() -> None:
    rng = np.random.default_rng(1)
    scores = np.sort(rng.random(60))[::-1]
    dense = (rng.random((60, 12)) < 0.2) * rng.random((60, 12))
    dense[5] = 0.0  # a zero row
    expected = mmr(scores, dense, 30, 0.6)
    np.testing.assert_array_equal(mmr(scores, sp.csr_matrix(dense), 30, 0.6), expected)
    np.testing.assert_array_equal(mmr(scores, sp.csr_array(dense), 30, 0.6), expected)
    assert sorted(expected.tolist()) == sorted(set(expected.tolist()))  # no repeats


def test_mmr_large_sparse_input_without_densifying() -> None:
    rng = np.random.default_rng(2)
    m, d = 600, 8000  # 4.8M cells: the sparse path
    matrix = sp.random(m, d, density=0.001, random_state=3, format="csr")
    scores = np.sort(rng.random(m))[::-1]
    picked = mmr(scores, matrix, 40, 0.5)
    np.testing.assert_array_equal(picked, mmr(scores, matrix.toarray(), 40, 0.5))


def test_mmr_edge_cases() -> None:
    vectors = np.eye(3)
    np.testing.assert_array_equal(mmr(np.array([3.0, 2.0, 1.0]), vectors, 10, 0.5), [0, 1, 2])
    assert mmr(np.array([3.0, 2.0, 1.0]), vectors, 0, 0.5).shape == (0,)
    empty = mmr(np.zeros(0), np.zeros((0, 4)), 5, 0.5)
    assert empty.shape == (0,) and empty.dtype == np.intp
    # equal scores: relevance is flat, so only diversity decides (ties to the earlier)
    same = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(mmr(np.ones(3), same, 3, 0.5), [0, 2, 1])
    # all-zero vectors: no similarity at all, the score order
    np.testing.assert_array_equal(
        mmr(np.array([1.0, 3.0, 2.0]), np.zeros((3, 2)), 3, 0.2), [1, 2, 0]
    )
    assert mmr(np.array([1.0]), np.ones((1, 1)), 1, 0.5).tolist() == [0]


@pytest.mark.parametrize(
    ("scores", "vectors", "n", "lambda_", "message"),
    [
        (np.ones(3), np.eye(3), 2, 1.5, "lambda_"),
        (np.ones(3), np.eye(3), 2, -0.1, "lambda_"),
        (np.ones(3), np.eye(2), 2, 0.5, "rows"),
        (np.ones(3), np.ones(3), 2, 0.5, "2-D"),
        (np.array([1.0, np.nan, 0.0]), np.eye(3), 2, 0.5, "finite"),
        (np.array([1.0, -np.inf, 0.0]), np.eye(3), 2, 0.5, "finite"),
        (np.ones(3), np.eye(3), -1, 0.5, "n must"),
    ],
)
def test_mmr_rejects_bad_arguments(
    scores: np.ndarray, vectors: np.ndarray, n: int, lambda_: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mmr(scores, vectors, n, lambda_)


def test_mmr_is_fast_enough_for_serving() -> None:
    rng = np.random.default_rng(4)
    scores = np.sort(rng.random(500))[::-1]
    dense = rng.normal(size=(500, 64))
    cats = category_vectors([[f"c{rng.integers(30)}"] for _ in range(500)])
    start = time.perf_counter()
    for vectors in (dense, cats):
        assert len(set(mmr(scores, vectors, 100, 0.7).tolist())) == 100
    assert time.perf_counter() - start < 1.0  # ~5 ms in practice


def test_category_vectors_one_hot() -> None:
    matrix = category_vectors([["A", "B"], [], ["B", "B"], ["C"]])
    assert sp.issparse(matrix) and matrix.format == "csr"
    np.testing.assert_array_equal(matrix.toarray(), [[1, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert category_vectors([]).shape == (0, 0)
    assert category_vectors([[], []]).shape == (2, 0)
    np.testing.assert_array_equal(
        mmr(np.array([2.0, 1.0]), category_vectors([[], []]), 2, 0.1), [0, 1]
    )


# --- cap_per_category ------------------------------------------------------------------------

CATS = [["A"], ["A"], ["A", "B"], ["B"], [], ["A"], ["C"]]


def test_cap_per_category_walks_the_order() -> None:
    order = np.arange(7)
    # cap 1: 0 (A), 1 skip, 2 skip (A full), 3 (B), 4 (uncapped), 5 skip, 6 (C)
    np.testing.assert_array_equal(cap_per_category(order, CATS, 1, 4), [0, 3, 4, 6])
    np.testing.assert_array_equal(cap_per_category(order, CATS, 2, 5), [0, 1, 3, 4, 6])
    np.testing.assert_array_equal(cap_per_category(order, CATS, 1, 2), [0, 3])
    # a different order is walked as given
    np.testing.assert_array_equal(
        cap_per_category(np.array([6, 5, 3, 2, 1]), CATS, 1, 5, backfill=False), [6, 5, 3]
    )


def test_cap_per_category_backfill() -> None:
    cats = [["A"]] * 5 + [["B"]]
    order = np.arange(6)
    np.testing.assert_array_equal(cap_per_category(order, cats, 2, 4, backfill=False), [0, 1, 5])
    # the page is topped up with the skipped items, in their original order, after the kept ones
    np.testing.assert_array_equal(cap_per_category(order, cats, 2, 4), [0, 1, 5, 2])
    np.testing.assert_array_equal(cap_per_category(order, cats, 2, 10), [0, 1, 5, 2, 3, 4])
    np.testing.assert_array_equal(cap_per_category(order, cats, 1, 6), [0, 5, 1, 2, 3, 4])


def test_cap_per_category_edge_cases() -> None:
    order = np.arange(7)
    assert cap_per_category(order, CATS, 1, 0).shape == (0,)
    empty = cap_per_category(np.zeros(0, dtype=int), [], 2, 5)
    assert empty.shape == (0,) and empty.dtype == np.intp
    np.testing.assert_array_equal(cap_per_category(order, CATS, 100, 50), order)  # n > m
    np.testing.assert_array_equal(cap_per_category(np.arange(3), [[], [], []], 1, 3), [0, 1, 2])
    # a category repeated within one item counts once
    np.testing.assert_array_equal(
        cap_per_category(np.arange(3), [["A", "A"], ["A"], ["A"]], 2, 3, backfill=False), [0, 1]
    )
    with pytest.raises(ValueError, match="cap"):
        cap_per_category(order, CATS, 0, 3)
    with pytest.raises(ValueError, match="n must"):
        cap_per_category(order, CATS, 1, -1)
    with pytest.raises(ValueError, match="outside"):
        cap_per_category(np.array([0, 7]), CATS, 1, 3)


def test_cap_composes_with_mmr() -> None:
    cats = [["A"]] * 4 + [["B"]] * 4
    scores = np.linspace(1.0, 0.2, 8)
    order = mmr(scores, category_vectors(cats), 8, 0.9)
    page = cap_per_category(order, cats, 2, 4)
    assert sorted(cats[i][0] for i in page) == ["A", "A", "B", "B"]
