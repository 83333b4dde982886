"""Content similarity (title, categories, attributes, text) to the user's recent items.

With ``scope = "cold"`` only items with few events are scored (plus items newer than the
model): that is how a brand-new item reaches users, at a cost that does not grow with the
catalogue. Sparse (TF-IDF) vectors go through an inverted index of the cold items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.pipeline.kernels import (
    Scorer,
    dot_rows,
    gather_rows,
    nan_scorer,
    strongest_sources,
    top_n,
)
from smartrec.pipeline.query import COLD_EVENTS, UserQuery
from smartrec.pipeline.retrievers.base import PipelineParts, Retriever, register

if TYPE_CHECKING:  # the spec validates kinds through the registry: no import back
    from smartrec.pipeline.content import ContentIndex
    from smartrec.pipeline.spec import RetrieverConfig

#: The content query keeps its heaviest terms only: rare (high-idf) words decide similarity,
#: and a category token shared by a twentieth of a million-item catalogue would cost more to
#: walk than it tells.
QUERY_TERMS = 32


@register
class ContentRetriever(Retriever):
    kind = "content"
    uses_content = True
    reaches_new_items = True

    def __init__(self, config: RetrieverConfig, parts: PipelineParts) -> None:
        super().__init__(config, parts)
        #: (content matrix, cold scope, inverted index of the scope or None, scope limit)
        self._cold: (
            tuple[sp.csr_matrix | np.ndarray, np.ndarray, sp.csr_matrix | None, int] | None
        ) = None

    def warm(self) -> None:
        if self.config.scope == "cold" and self.parts.content is not None:
            self._cold_scope(self.parts.content)

    def _cold_scope(self, index: ContentIndex) -> tuple[np.ndarray, sp.csr_matrix | None]:
        """The newest ``scope_limit`` model items with few events, and an inverted index (terms
        x those items) of their content rows when the vectors are sparse; computed once per
        content index."""
        limit = self.config.scope_limit
        cache = self._cold
        if cache is None or cache[0] is not index.matrix or cache[3] != limit:
            stats = self.parts.stats
            scope = np.flatnonzero(stats.counts < COLD_EVENTS)
            scope = scope[scope < index.matrix.shape[0]]
            if len(scope) > limit:
                born = np.where(
                    np.isnan(stats.published[scope]),
                    stats.first_seen[scope],
                    stats.published[scope],
                )
                born = np.nan_to_num(born, nan=-np.inf)
                newest = np.lexsort((scope, born))[-limit:]  # ties: later on the axis = newer
                scope = np.sort(scope[newest])
            postings = None
            if sp.issparse(index.matrix):
                postings = sp.csr_matrix(index.matrix[scope].T)  # row t: items with term t
            cache = (index.matrix, scope, postings, limit)
            self._cold = cache
        return cache[1], cache[2]

    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        index = self.parts.content
        if index is None or not q.recent:
            return np.zeros(0, dtype=np.int64), nan_scorer
        query = content_query(index.matrix, q.recent[: self.config.recent])
        if query is None:
            return np.zeros(0, dtype=np.int64), nan_scorer
        matrix = index.matrix
        total = matrix.shape[0]
        n_model = self.parts.n_items
        if self.config.scope == "cold":
            scope, postings = self._cold_scope(index)
            extra = np.arange(n_model, total)  # items newer than the model: few
            if postings is not None:
                scope, s_scope = _inverted_scores(postings, scope, query)
            else:
                s_scope = dot_rows(matrix, scope, query) if scope.size else np.zeros(0)
            if extra.size:
                scope = np.concatenate([scope, extra])
                s_scope = np.concatenate([s_scope, dot_rows(matrix, extra, query)])
        else:
            scope = np.arange(total)
            s_scope = np.asarray(matrix @ query, dtype=np.float32).ravel()
        ok = s_scope > 0
        if allowed is not None:
            # Items newer than the mask (added while this request ran) count as not allowed.
            inside = scope < len(allowed)
            ok &= inside & allowed[np.where(inside, scope, 0)]
        scope, s_scope = scope[ok], s_scope[ok]
        order = top_n(s_scope, self.config.n + len(blocked), None)
        top = scope[order]
        if blocked.size:
            top = top[~np.isin(top, blocked)]
        top = top[: self.config.n]

        def content_score(idx: np.ndarray) -> np.ndarray:
            out = np.full(len(idx), np.nan, dtype=np.float32)
            ok = idx < total
            out[ok] = dot_rows(matrix, idx[ok], query)
            return out

        return top, content_score

    def sources(self, recent: list[int], page_items: np.ndarray) -> list[int | None]:
        """The recent history item (of the 20 newest) most similar in content to each one."""
        out: list[int | None] = [None] * len(page_items)
        index = self.parts.content
        if index is None or not recent or len(page_items) == 0:
            return out
        total = index.matrix.shape[0]
        src = np.asarray([i for i in recent[:20] if i < total], dtype=np.int64)
        ok = page_items < total
        if src.size == 0 or not ok.any():
            return out
        a, b = index.matrix[src], index.matrix[page_items[ok]]
        sims = a @ b.T
        sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
        return strongest_sources(src, sims, np.flatnonzero(ok), len(page_items))

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        if source is None:
            return None
        return {"kind": "similar_to", "item": source, "via": "content"}


def content_query(matrix: sp.csr_matrix | np.ndarray, recent: list[int]) -> np.ndarray | None:
    """The L2-normalised mean of the recent items' content vectors (newer items weigh more)."""
    total = matrix.shape[0]
    rows = np.asarray([i for i in recent if i < total], dtype=np.int64)
    if rows.size == 0:
        return None
    w = 1.0 / np.sqrt(np.arange(1, len(rows) + 1, dtype=np.float32))
    if sp.issparse(matrix):
        lengths, cols, vals = gather_rows(matrix, rows)
        q = np.bincount(cols, weights=vals * np.repeat(w, lengths), minlength=matrix.shape[1])
    else:
        q = w @ np.asarray(matrix)[rows]
    norm = float(np.linalg.norm(q))
    if norm == 0.0:
        return None
    return np.asarray(q / norm, dtype=np.float32)


def _inverted_scores(
    postings: sp.csr_matrix, scope: np.ndarray, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(items, cosine) for the scope items sharing a term with the query's heaviest terms."""
    terms = np.flatnonzero(query)
    if terms.size > QUERY_TERMS:
        terms = terms[np.argpartition(-query[terms], QUERY_TERMS - 1)[:QUERY_TERMS]]
    if terms.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    counts, indices, data = gather_rows(postings, terms)
    weights = data * np.repeat(query[terms], counts)
    # One C pass over the postings (bincount) beats sorting them (np.unique) by far.
    sums = np.bincount(indices, weights=weights, minlength=len(scope))
    local = np.flatnonzero(sums)
    return scope[local], sums[local].astype(np.float32)
