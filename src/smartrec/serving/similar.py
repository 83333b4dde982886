"""Items like one item: the model's item-item similarity, or content for new and rare items."""

from __future__ import annotations

import numpy as np

from smartrec.errors import NotFound
from smartrec.pipeline.core import COLD_EVENTS
from smartrec.serving.popularity import Popularity
from smartrec.serving.requests import SimilarRequest
from smartrec.serving.results import Reason, Recommendation, Results
from smartrec.serving.state import ServingState
from smartrec.storage.ports import CatalogStore


class SimilarItems:
    def __init__(self, store: CatalogStore, popularity: Popularity) -> None:
        self.store = store
        self.popularity = popularity

    def similar(self, state: ServingState | None, request: SimilarRequest) -> Results:
        item_id, n, category = request.item_id, request.n, request.category
        if state is not None and item_id in state.deleted:
            raise NotFound(f"item {item_id!r} was deleted")
        if state is not None and state.pipeline is not None:
            pos = state.position(item_id)
            cold = pos >= state.n_model or (
                pos >= 0 and state.pipeline.stats.counts[pos] < COLD_EVENTS
            )
            if cold and state.pipeline.content is not None:
                return self._by_content(state, item_id, pos, n, category)
        if state is None or item_id not in state.items:
            known = self.store.catalog([item_id]).get(item_id)
            if known is None or known.deleted:
                raise NotFound(f"item {item_id!r} does not exist")
            # A catalog item the model has not learned yet: popular items of its categories.
            cat = category or (known.categories[0] if known.categories else None)
            return self.popularity.popular(state, n, cat, None, exclude={item_id})
        idx = state.items.get(item_id)
        allowed = state.allowed(category)[: state.n_model]
        model = state.bundle.model
        if not model.supports_similar:
            cat = category or next((c for c, m in state.categories.items() if m[idx]), None)
            return self.popularity.popular(state, n, cat, None, exclude={item_id})
        ids, scores = model.similar_items(np.array([idx]), n, allowed=allowed)
        keep = ids[0] >= 0
        reason: Reason = {"kind": "similar_to", "item_id": item_id, "title": state.titles[idx]}
        recs = [
            Recommendation(state.item_ids[i], float(s), [reason.copy()])
            for i, s in zip(ids[0][keep].tolist(), scores[0][keep].tolist(), strict=True)
        ]
        return Results(recs, state.version)

    def _by_content(
        self, state: ServingState, item_id: str, pos: int, n: int, category: str | None
    ) -> Results:
        """Items like a new or little-known item, by title, categories, attributes and text."""
        pipeline = state.pipeline
        assert pipeline is not None and pipeline.content is not None
        allowed = state.allowed(category)
        index = pipeline.content
        mask = np.zeros(len(index), dtype=bool)
        m = min(len(index), len(allowed))
        mask[:m] = allowed[:m]
        found = index.similar(item_id, n, allowed=mask)
        title = state.titles[pos] if pos >= 0 else None
        reason: Reason = {
            "kind": "similar_to",
            "item_id": item_id,
            "title": title,
            "via": "content",
        }
        recs = [Recommendation(i, float(s), [reason.copy()]) for i, s in found]
        if len(recs) < n:
            cat = category or next(
                (c for c, mk in state.categories.items() if pos >= 0 and mk[pos]), None
            )
            taken = {r.item_id for r in recs} | {item_id}
            more = self.popularity.popular(state, n - len(recs), cat, None, exclude=taken)
            recs += more.items
        return Results(recs, state.version)
