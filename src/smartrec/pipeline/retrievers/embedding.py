"""Embedding retrieval: the user's vector against every item vector (through the ANN index on
large catalogues), from a factor model (ALS, BPR)."""

from __future__ import annotations

from typing import Any

import numpy as np

from smartrec.domain import Interactions
from smartrec.pipeline.kernels import Scorer, nan_scorer, top_n
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.retrievers.base import Retriever, register


@register
class EmbeddingRetriever(Retriever):
    kind = "embedding"
    model_names = ("als", "bpr")
    model_role = "factor model"

    def fit(self, data: Interactions, *, build_index: bool = True) -> None:
        spec = self.parts.spec
        if build_index and data.n_items >= spec.ann.exact_below:
            from smartrec.pipeline.ann import VectorIndex

            factors = np.asarray(self._model.item_factors, dtype=np.float32)
            self.parts.ann[self.name] = VectorIndex.build(factors, spec.ann)

    @property
    def _model(self) -> Any:  # a factor model: user_vectors, item_factors
        return self.parts.models[self.name]

    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        n_model = self.parts.n_items
        if q.user < 0 and q.conf.nnz == 0:
            return np.zeros(0, dtype=np.int64), nan_scorer
        model = self._model
        vec = model.user_vectors(q.conf, np.array([q.user]))[0]
        factors = model.item_factors
        index = self.parts.ann.get(self.name)
        mask = None if allowed is None else allowed[:n_model]
        n = self.config.n
        if index is not None:
            ids, _ = index.search(vec, n, exclude=blocked[blocked < n_model], allowed=mask)
            top = ids[ids >= 0].astype(np.int64)
        else:
            s = factors @ vec
            if mask is not None:
                s = np.where(mask, s, -np.inf)
            top = top_n(s, n, blocked)

        def score(idx: np.ndarray) -> np.ndarray:
            out = np.full(len(idx), np.nan, dtype=np.float32)
            ok = idx < n_model
            out[ok] = factors[idx[ok]] @ vec
            return out

        return top, score

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        return {"kind": "personalized", "algorithm": self.config.model}
