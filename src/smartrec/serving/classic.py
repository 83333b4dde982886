"""Answers of a classic model (a bundle without a pipeline), and of no model at all.

Without a model, users get the event log's popular items; with a classic model, its scores and
the history item that contributes most to each item, topped up with popular items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from smartrec.pipeline.filters import ItemFilter
from smartrec.pipeline.rules import PageState
from smartrec.serving.erasures import Erasures
from smartrec.serving.popularity import Popularity
from smartrec.serving.ranker import HISTORY_LIMIT, History
from smartrec.serving.reasons import model_reasons
from smartrec.serving.requests import RecommendRequest
from smartrec.serving.results import Reason, Recommendation, Results
from smartrec.serving.state import ServingState, negative_row
from smartrec.storage.ports import Store


class ClassicAnswers:
    def __init__(self, store: Store, popularity: Popularity, erasures: Erasures) -> None:
        self.store = store
        self.popularity = popularity
        self.erasures = erasures

    def recommend(
        self,
        state: ServingState | None,
        request: RecommendRequest,
        history: History,
        shown: PageState,
        item_filter: ItemFilter | None,
    ) -> Results:
        n, user_id, exclude_seen = request.n, request.user_id, request.exclude_seen
        want = n + len(shown.shown) + 1  # one more than the page: is there a next page?
        if item_filter is not None:
            want = max(want * 4, 200)  # the filter runs after ranking: rank more
        if state is None:
            seen: set[str] = set()
            if exclude_seen:
                seen = {h[0] for h in history}
                if len(history) >= HISTORY_LIMIT:
                    seen = set(self.store.user_items(user_id))
            ranked = self.popularity.from_log(None, None, request.category, want + len(seen))
            items = [
                Recommendation(i, s, [{"kind": "popular"}]) for i, s in ranked if i not in seen
            ]
            return self.page(items, shown, n, None, item_filter)
        conf, seen_row, hist_idx = state.user_rows(history)
        if exclude_seen and len(history) >= HISTORY_LIMIT:
            # Scoring looks at the newest events only, but "seen" means ever seen.
            seen_row = state.items_row(self.store.user_items(user_id))
        uidx = self.erasures.model_user(state, user_id)
        allowed = state.allowed(request.category)[: state.n_model]
        exclude = seen_row if exclude_seen else negative_row(conf, seen_row)
        recs: list[Recommendation] = []
        if conf.nnz > 0 or uidx >= 0:
            model = state.bundle.model
            ids, scores = model.recommend(
                conf, want, users=np.array([uidx]), exclude=exclude, allowed=allowed
            )
            keep = (ids[0] >= 0) & (scores[0] > 0)
            ids_k, scores_k = ids[0][keep], scores[0][keep]
            reasons = model_reasons(state, hist_idx, conf, ids_k)
            recs = [
                Recommendation(state.item_ids[i], float(s), r)
                for i, s, r in zip(ids_k.tolist(), scores_k.tolist(), reasons, strict=True)
            ]
        if len(recs) < want:
            recs += self.popularity.fill(
                state, want - len(recs), allowed, exclude, recs, request.category
            )
        return self.page(recs, shown, n, state.version, item_filter)

    def session(self, state: ServingState | None, item_ids: Sequence[str], n: int) -> Results:
        """Recommendations for an anonymous visitor from the items they just touched."""
        given = set(item_ids)
        if state is None:
            return self.popularity.popular(None, n, None, None, exclude=given)
        idx = state.items.index(item_ids)
        idx = np.array(list(dict.fromkeys(idx[idx >= 0].tolist())), dtype=np.int64)
        allowed = state.available[: state.n_model].copy()
        if idx.size == 0:
            return self.popularity.popular(state, n, None, None, exclude=given)
        allowed[idx] = False
        row = sp.csr_matrix(
            (np.ones(len(idx), dtype=np.float32), (np.zeros(len(idx), dtype=np.int64), idx)),
            shape=(1, len(state.items)),
        )
        ids, scores = state.bundle.model.recommend(row, n, users=np.array([-1]), allowed=allowed)
        keep = (ids[0] >= 0) & (scores[0] > 0)
        ids_k = ids[0][keep]
        reasons = model_reasons(state, idx.tolist(), row, ids_k, kind="session")
        recs = [
            Recommendation(state.item_ids[i], float(s), r)
            for i, s, r in zip(ids_k.tolist(), scores[0][keep].tolist(), reasons, strict=True)
        ]
        if len(recs) < n:
            recs += self.popularity.fill(state, n - len(recs), allowed, None, recs, None)
        return Results(recs, state.version)

    def rank(
        self, state: ServingState, user_id: str, history: History, ordered: list[str]
    ) -> Results:
        """The caller's list ordered by the classic model (popularity for an unknown user)."""
        conf, _, _ = state.user_rows(history)
        uidx = self.erasures.model_user(state, user_id)
        idx = state.items.index(ordered)
        reason: Reason
        if conf.nnz > 0 or uidx >= 0:
            scores = state.bundle.model.score(conf, np.array([uidx]))[0]
            reason = {"kind": "personalized", "algorithm": state.bundle.algorithm}
        else:
            scores = state.popular_scores
            reason = {"kind": "popular"}
        known = [
            (i, float(scores[j])) for i, j in zip(ordered, idx.tolist(), strict=True) if j >= 0
        ]
        unknown = [i for i, j in zip(ordered, idx.tolist(), strict=True) if j < 0]
        known.sort(key=lambda t: -t[1])
        recs = [Recommendation(i, s, [reason.copy()]) for i, s in known]
        recs += [Recommendation(i, 0.0, [{"kind": "unknown_item"}]) for i in unknown]
        return Results(recs, state.version)

    def rank_without_model(self, item_ids: Sequence[str]) -> Results:
        """The caller's list by the event log's popularity (deleted items left out)."""
        rows = self.store.catalog(item_ids)
        gone = {i for i, row in rows.items() if row.deleted}
        ordered = [i for i in dict.fromkeys(item_ids) if i not in gone]
        pop = dict(self.popularity.from_log(None, None, None, None))
        ranked = sorted(ordered, key=lambda i: -pop.get(i, 0.0))
        return Results(
            [Recommendation(i, pop.get(i, 0.0), [{"kind": "popular"}]) for i in ranked], None
        )

    def page(
        self,
        items: list[Recommendation],
        shown: PageState,
        n: int,
        version: str | None,
        item_filter: ItemFilter | None = None,
    ) -> Results:
        """The next n items not shown before in this session (and passing the filter)."""
        fresh = [r for r in items if not shown.seen(r.item_id)] if shown.shown else items
        if item_filter is not None and fresh:
            rows = self.store.catalog([r.item_id for r in fresh])
            fresh = [r for r in fresh if (row := rows.get(r.item_id)) and item_filter.matches(row)]
        page = fresh[:n]
        token = shown.after(r.item_id for r in page).encode() if len(fresh) > n else None
        return Results(page, version, token)
