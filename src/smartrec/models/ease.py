"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), fitted in closed form.

Usually the most accurate model here on small and medium catalogues, with one hyper-parameter
and no iterations. The price is a dense item x item matrix and its inverse, so the catalogue size
is capped (``max_items``); larger catalogues should use ``itemknn``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.errors import ModelError
from smartrec.models.base import Recommender

#: Columns mirrored at a time when symmetrising the inverse (bounds the temporary memory).
_SYMMETRIZE_BLOCK = 2048


class EASE(Recommender):
    """B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0; score = user_items @ B."""

    name = "ease"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not float(self.params["l2"]) > 0:
            raise ModelError(f"{self.name}: l2 must be > 0, got {self.params['l2']!r}")
        if int(self.params["max_items"]) < 1:
            raise ModelError(f"{self.name}: max_items must be >= 1")
        self.weights = np.zeros((0, 0), dtype=np.float32)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"l2": 500.0, "binary": True, "max_items": 20000}

    def _fit(self, data: Interactions) -> None:
        n = data.n_items
        max_items = int(self.params["max_items"])
        if n > max_items:
            gib = n * n * 8 / 2**30
            raise ModelError(
                f"ease: {n} items exceed max_items={max_items}; the dense item x item inverse "
                f"needs n_items^2 * 8 bytes = {gib:.1f} GiB (several copies while fitting). "
                'Use "itemknn" for large catalogues, or raise max_items if the memory is there.'
            )
        x = data.binarized() if self.params["binary"] else data.matrix
        x = sp.csr_matrix(x, dtype=np.float64)
        gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
        gram[np.diag_indices(n)] += float(self.params["l2"])
        p = spd_inverse(gram)
        diag = np.diag(p).copy()
        p /= -diag[None, :]  # B_ij = -P_ij / P_jj (column-wise)
        np.fill_diagonal(p, 0.0)
        self.weights = p.astype(np.float32, order="C")

    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        if self.params["binary"]:
            user_items = user_items.copy()
            user_items.data = (user_items.data > 0).astype(np.float32)
        return np.asarray(user_items @ self.weights, dtype=np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        # What a user who touched only ``item`` would be scored.
        return self.weights[items, :]

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        self._check()
        return self.weights[np.ix_(np.asarray(sources), np.asarray(targets))]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"B": self.weights}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = np.asarray(arrays["B"], dtype=np.float32)


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite float64 matrix via LAPACK potrf/potri.

    About twice as fast as an LU inverse, and it works in the memory of ``a`` (which it destroys)
    instead of allocating more n x n matrices: that matters at 20k items (3.2 GB each).
    """
    # LAPACK wants Fortran order; for a symmetric C-ordered matrix the transpose is that, free.
    fa = a.T if a.flags.c_contiguous else np.asfortranarray(a)
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (fa,))
    chol, info = potrf(fa, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise ModelError(f"ease: Gram matrix is not positive definite (LAPACK potrf info={info})")
    inv, info = potri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise ModelError(f"ease: inversion failed (LAPACK potri info={info})")
    # potri fills only the upper triangle; mirror it onto the lower one, a column block at a time
    # so the temporaries stay small.
    n = inv.shape[0]
    for start in range(0, n, _SYMMETRIZE_BLOCK):
        stop = min(start + _SYMMETRIZE_BLOCK, n)
        block = inv[start:stop, start:stop]
        block[...] = np.triu(block) + np.triu(block, 1).T
        inv[stop:, start:stop] = inv[start:stop, stop:].T
    return np.asarray(inv)
