"""Item-based k-nearest-neighbours with shrunk cosine similarity.

Cheap to fit, easy to explain ("because you liked X") and it scales to catalogues where EASE's
dense item x item inverse does not fit in memory: the similarity matrix is kept sparse, with only
the ``k`` best neighbours of each target item, and it is built a block of columns at a time from
the sparse co-occurrences, so no item x item matrix is ever dense in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.errors import ModelError
from smartrec.models.base import Recommender

#: Target columns per block are BLOCK_ENTRIES // n_items: even a fully dense block of the sparse
#: Gram matrix then stays around 200 MB (12 bytes per stored entry).
BLOCK_ENTRIES = 1 << 24
#: Upper bound on the items per block of the Gram matrix (dense blocks stay far below it).
MAX_ROW_BLOCK = 16384
#: Blocks with more stored co-occurrences than this fraction of their entries are ranked densely.
DENSE_FRACTION = 0.1


class ItemKNN(Recommender):
    """score(u, j) = sum of sim(i, j) over the items i of u that are among j's k neighbours."""

    name = "itemknn"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params["k"]) < 1:
            raise ModelError(f"{self.name}: k must be >= 1, got {self.params['k']!r}")
        if float(self.params["shrink"]) < 0:
            raise ModelError(f"{self.name}: shrink must be >= 0, got {self.params['shrink']!r}")
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        self._neighbours: sp.csr_matrix | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"k": 100, "shrink": 10.0, "binary": True}

    def _fit(self, data: Interactions) -> None:
        x = data.binarized() if self.params["binary"] else data.matrix
        self.similarity = cosine_topk(
            sp.csr_matrix(x, dtype=np.float32), int(self.params["k"]), float(self.params["shrink"])
        )
        self.similarity.sort_indices()  # contributions() searches rows
        self._neighbours = None

    @property
    def neighbours(self) -> sp.csr_matrix:
        """S transposed: row j lists j's k neighbours (cached; CSR row slicing is fast)."""
        if self._neighbours is None:
            self._neighbours = sp.csr_matrix(self.similarity.T)
        return self._neighbours

    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        if self.params["binary"]:
            user_items = user_items.copy()
            user_items.data = (user_items.data > 0).astype(np.float32)
            user_items.eliminate_zeros()
        return np.asarray((user_items @ self.similarity).toarray(), dtype=np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.neighbours[items].toarray(), dtype=np.float32)

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        # score = user_items @ similarity, so source i lifts target j by similarity[i, j].
        self._check()
        # Not similarity[sources][:, targets]: scipy's column indexing walks every column of
        # the catalogue, and its row indexing copies long rows (about 1 ms each at a million
        # items, on the serving path). Search each source row in place, from whichever side
        # is shorter.
        s = self.similarity
        uniq, inverse = np.unique(np.asarray(targets, dtype=np.int64), return_inverse=True)
        src = np.asarray(sources, dtype=np.int64)
        out = np.zeros((len(src), len(uniq)), dtype=np.float32)
        if not len(uniq):
            return out[:, inverse]
        if not s.has_sorted_indices:  # not from fit() or load(): sort a copy, not the model
            s = s.sorted_indices()
        indptr, indices, data = s.indptr, s.indices, s.data
        last = len(uniq) - 1
        for r, i in enumerate(src.tolist()):
            lo, hi = int(indptr[i]), int(indptr[i + 1])
            if lo == hi:
                continue
            row = indices[lo:hi]
            if hi - lo <= len(uniq):
                at = np.minimum(np.searchsorted(uniq, row), last)
                hit = uniq[at] == row
                out[r, at[hit]] = data[lo:hi][hit]
            else:
                at = np.minimum(np.searchsorted(row, uniq), hi - lo - 1)
                hit = row[at] == uniq
                out[r, hit] = data[lo:hi][at[hit]]
        return out[:, inverse]

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity
        return {
            "data": s.data.astype(np.float32),
            "indices": s.indices.astype(np.int64),
            "indptr": s.indptr.astype(np.int64),
            "shape": np.asarray(s.shape, dtype=np.int64),
        }

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        shape = tuple(int(v) for v in arrays["shape"])
        self.similarity = sp.csr_matrix(
            (arrays["data"].astype(np.float32), arrays["indices"], arrays["indptr"]), shape=shape
        )
        self.similarity.sort_indices()  # saved sorted already: a check, then nothing to do
        self._neighbours = None


def cosine_topk(x: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """Shrunk cosine ``x_i.x_j / (|x_i| |x_j| + shrink)`` keeping each column's k largest (i != j).

    ``x`` is users x items. Returns an items x items float32 CSR matrix S where column j holds the
    neighbours of target item j. The Gram matrix is symmetric, so a block of its columns is the
    transpose of the same block of rows, ``x.T[rows] @ x``, which touches only those items'
    co-occurrences (a block of *columns* computed as ``x.T @ x[:, cols]`` scans all of ``x.T``
    each time: 50 minutes at 1M items against seconds). Blocks grow while their Gram part stays
    under ``BLOCK_ENTRIES`` nonzeros and shrink when it does not, so memory stays bounded; sparse
    blocks (the usual case on large catalogues) are ranked from their nonzeros alone, dense ones
    with a dense partition.
    """
    n_items = x.shape[1]
    k = min(k, n_items - 1)
    if k < 1:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    xr = sp.csr_matrix(x, dtype=np.float32)
    xt = sp.csr_matrix(xr.T)  # items x users: rows of the Gram matrix
    norms = np.sqrt(np.asarray(xr.multiply(xr).sum(axis=0), dtype=np.float64).ravel())
    block = max(1, min(n_items, BLOCK_ENTRIES // n_items))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start = 0
    while start < n_items:
        stop = min(start + block, n_items)
        gram = sp.csc_matrix((xt[start:stop] @ xr).T)  # = Gram[:, start:stop]
        if gram.nnz > DENSE_FRACTION * n_items * (stop - start):
            parts.append(_topk_dense(gram, start, norms, k, shrink))
        else:
            parts.append(_topk_sparse(gram, start, norms, k, shrink))
        start = stop
        if gram.nnz < BLOCK_ENTRIES // 4:
            block = min(block * 2, MAX_ROW_BLOCK)
        elif gram.nnz > BLOCK_ENTRIES:
            block = max(1, block // 2)
    s = sp.csr_matrix(
        (
            np.concatenate([p[2] for p in parts]),
            (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])),
        ),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    s.sort_indices()
    return s


def _topk_sparse(
    gram: sp.csc_matrix, start: int, norms: np.ndarray, k: int, shrink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, sims) of each column's k best, sorting only the stored co-occurrences."""
    coo = gram.tocoo()
    r = coo.row.astype(np.int64)
    c = coo.col.astype(np.int64) + start
    denom = norms[r] * norms[c] + shrink
    sim = np.divide(coo.data, denom, out=np.zeros(len(r)), where=denom > 0)
    keep = (r != c) & (sim > 0)  # an item is not its own neighbour
    r, c, sim = r[keep], c[keep], sim[keep]
    order = np.lexsort((-sim, c))  # by column, best first
    r, c, sim = r[order], c[order], sim[order]
    counts = np.bincount(c - start, minlength=gram.shape[1])
    first = np.cumsum(counts) - counts
    top = np.arange(len(c)) - np.repeat(first, counts) < k
    return r[top], c[top], sim[top].astype(np.float32)


def _topk_dense(
    gram: sp.csc_matrix, start: int, norms: np.ndarray, k: int, shrink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, sims) of each column's k best via a dense partition (for dense blocks)."""
    n_items, width = gram.shape
    targets = np.arange(start, start + width)
    # Rows of ``sim`` are target columns, so the partition runs along contiguous memory.
    dots = np.asarray(gram.T.toarray(), dtype=np.float32)
    denom = (norms[targets, None] * norms[None, :] + shrink).astype(np.float32)
    sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    sim[np.arange(width), targets] = 0.0  # an item is not its own neighbour
    top = np.argpartition(sim, n_items - k, axis=1)[:, n_items - k :]
    top_vals = np.take_along_axis(sim, top, axis=1)
    keep = top_vals > 0
    cols = np.broadcast_to(targets[:, None], top.shape)
    return top[keep].astype(np.int64), cols[keep].astype(np.int64), top_vals[keep]
