"""Item-kNN contributions (the serving path's explanation and feature lookup) against scipy's
own indexing, over short and long rows, unsorted targets and repeats."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from smartrec.models.itemknn import ItemKNN


def test_contributions_match_scipy_indexing_for_short_and_long_rows() -> None:
    rng = np.random.default_rng(5)
    n = 400
    dense = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        width = 3 if i % 2 else 300  # short rows and long rows (popular sources)
        cols = rng.choice(n, width, replace=False)
        dense[i, cols] = rng.random(width).astype(np.float32) + 0.1
    model = ItemKNN()
    model.similarity = sp.csr_matrix(dense)
    model.similarity.sort_indices()
    model.fitted = True
    sources = np.array([0, 1, 2, 3, 7, 8, 399, 0])
    targets = np.concatenate([rng.choice(n, 40, replace=False), [5, 5]])
    got = model.contributions(sources, targets)
    want = dense[sources][:, targets]
    np.testing.assert_array_equal(got, want)
    # An unsorted matrix (not built by fit/load) gives the same answer, and is not mutated.
    shuffled = sp.csr_matrix(dense)
    for i in range(n):  # reverse each row's index order
        lo, hi = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.indices[lo:hi] = shuffled.indices[lo:hi][::-1].copy()
        shuffled.data[lo:hi] = shuffled.data[lo:hi][::-1].copy()
    shuffled.has_sorted_indices = False
    model.similarity = shuffled
    np.testing.assert_array_equal(model.contributions(sources, targets), want)
    assert not model.similarity.has_sorted_indices
