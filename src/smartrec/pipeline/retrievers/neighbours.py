"""Item-item neighbours of the user's recent history (EASE's dense weights, item-kNN's sparse
similarity), and the per-item explanation "similar to an item you touched"."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.models import Recommender
from smartrec.pipeline.kernels import (
    Scorer,
    array_scorer,
    gather_rows,
    nan_scorer,
    prune_rows,
    strongest_sources,
    top_n,
)
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.retrievers.base import PipelineParts, Retriever, register

if TYPE_CHECKING:  # the spec validates kinds through the registry: no import back
    from smartrec.pipeline.spec import RetrieverConfig

#: Retrieval reads at most this many of each history item's strongest neighbours. A popular
#: item is among the top-k of thousands of others, so its row of the item-kNN matrix is long;
#: the candidates' exact scores come from the full matrix all the same (``_exact_scorer``).
PRUNED_ROW = 200


@register
class NeighboursRetriever(Retriever):
    kind = "neighbours"
    model_names = ("ease", "itemknn")
    explains_history = True

    def __init__(self, config: RetrieverConfig, parts: PipelineParts) -> None:
        super().__init__(config, parts)
        #: (the similarity it was built from, its rows pruned, its transpose): built once.
        self._views: tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix] | None = None

    @property
    def _model(self) -> Recommender:
        return self.parts.models[self.name]

    def _knn_views(self, similarity: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(rows pruned for retrieval, the transpose for exact scores), built once per model."""
        views = self._views
        if views is None or views[0] is not similarity:
            views = (similarity, prune_rows(similarity, PRUNED_ROW), sp.csr_matrix(similarity.T))
            self._views = views
        return views[1], views[2]

    def warm(self) -> None:
        similarity = getattr(self._model, "similarity", None)
        if sp.issparse(similarity):
            self._knn_views(similarity)

    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        recent = q.recent[: self.config.recent]
        if not recent:
            return np.zeros(0, dtype=np.int64), nan_scorer
        hist, values = _history(q.conf, recent)
        if hist.size == 0:
            return np.zeros(0, dtype=np.int64), nan_scorer
        model = self._model
        n = self.config.n
        weights = values
        if model.params.get("binary", True):
            weights = (values > 0).astype(np.float32)
        similarity = getattr(model, "similarity", None)
        if sp.issparse(similarity):
            pruned, transposed = self._knn_views(similarity)
            return _sparse_neighbours(pruned, transposed, hist, weights, n, blocked, allowed)
        dense = getattr(model, "weights", None)
        if isinstance(dense, np.ndarray):
            # EASE: the user's row times B is the weighted sum of B's history rows. Summed by
            # numpy, not BLAS: a threaded gemv on a few hundred rows waits on its pool.
            rows = dense[hist[weights != 0]]
            if not np.all(weights[weights != 0] == 1.0):
                rows *= weights[weights != 0][:, None]
            full = rows.sum(axis=0, dtype=np.float32)
        else:
            row = sp.csr_matrix(
                (values, hist, np.array([0, len(hist)])), shape=(1, self.parts.n_items)
            )
            full = model.score(row, np.array([-1]))[0]
        masked = full if allowed is None else np.where(allowed[: self.parts.n_items], full, -np.inf)
        top = top_n(np.where(masked > 0, masked, -np.inf), n, blocked)
        return top, array_scorer(full)

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        return np.asarray(self._model.contributions(sources, targets))

    def sources(self, recent: list[int], page_items: np.ndarray) -> list[int | None]:
        """The recent history item that lifts each page item most (of the 50 newest)."""
        out: list[int | None] = [None] * len(page_items)
        inside = page_items < self.parts.n_items
        if not recent or not inside.any():
            return out
        src = np.asarray(recent[:50], dtype=np.int64)
        contrib = np.asarray(self._model.contributions(src, page_items[inside]))
        return strongest_sources(src, contrib, np.flatnonzero(inside), len(page_items))

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        if source is None:
            return None
        return {"kind": "similar_to", "item": source}


def _history(conf: sp.csr_matrix, items: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, sorted; their confidences) of the confidence row limited to ``items``.

    Plain arrays: building a one-row CSR matrix costs more than the whole lookup."""
    keep = np.isin(conf.indices, np.asarray(items, dtype=conf.indices.dtype))
    return conf.indices[keep].astype(np.int64), conf.data[keep].astype(np.float32)


def _sparse_neighbours(
    pruned: sp.csr_matrix,
    transposed: sp.csr_matrix,
    hist: np.ndarray,
    weights: np.ndarray,
    n: int,
    blocked: np.ndarray,
    allowed: np.ndarray | None,
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Item-kNN without catalogue-sized work: candidates from the history items' strongest
    neighbours (``pruned`` rows of S), exact scores from S's columns (rows of ``transposed``).
    ``hist`` is sorted (CSR order) and ``weights`` are its items' weights."""
    counts, cols_all, data = gather_rows(pruned, hist)
    cols, inverse = np.unique(cols_all, return_inverse=True)
    vals = np.zeros(len(cols), dtype=np.float32)
    np.add.at(vals, inverse, (data * np.repeat(weights, counts)).astype(np.float32))
    ok = vals > 0
    if blocked.size:
        ok &= ~np.isin(cols, blocked)
    if allowed is not None:
        ok &= allowed[cols]
    c, v = cols[ok], vals[ok]
    # Re-rank the pruned sums' best by their exact scores.
    pool = c[top_n(v, max(2 * n, n + 50), None)].astype(np.int64)
    score = _exact_scorer(transposed, hist, weights)
    exact = score(pool)
    order = np.argsort(-exact, kind="stable")[:n]
    return pool[order][exact[order] > 0], score


def _exact_scorer(
    transposed: sp.csr_matrix, hist: np.ndarray, weights: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """score(j) = sum over history items i of weight_i * S[i, j], read from column j of S."""

    def score(idx: np.ndarray) -> np.ndarray:
        out = np.zeros(len(idx), dtype=np.float32)
        inside = idx < transposed.shape[0]
        if not inside.any() or hist.size == 0:
            return out
        block = transposed[idx[inside]]
        pos = np.minimum(np.searchsorted(hist, block.indices), len(hist) - 1)
        hit = hist[pos] == block.indices
        contrib = np.where(hit, block.data * weights[pos], 0.0)
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        out[inside] = np.bincount(rows, weights=contrib, minlength=block.shape[0])
        return out

    return score
