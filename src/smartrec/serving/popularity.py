"""Popular items: from the served model's popularity, or counted from the event log.

The event log path (no model yet, or a window) weighs the events of each item; its rankings
and their catalogue-filtered cuts are cached for ``popular_cache_ttl_s`` and dropped when the
catalogue changes. With a shared cache (Redis) a ranking is computed by one process per period
and read by the others: the aggregate over the event log runs once for the deployment.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from smartrec.domain import EventWeights
from smartrec.serving.cache import TtlCache, shared_or_compute
from smartrec.serving.results import Reason, Recommendation, Results
from smartrec.serving.state import DEFAULT_HIDDEN_ATTRIBUTE, ServingState, parse_window, visible
from smartrec.storage.cache import SharedCache
from smartrec.storage.ports import EventStore, Store

#: Item rows read per catalogue query when the log's ranking is filtered.
CATALOG_CHUNK = 500


class Popularity:
    def __init__(
        self,
        store: Store,
        weights: EventWeights,
        ttl_s: float,
        shared: SharedCache | None = None,
    ) -> None:
        self.store = store
        self.weights = weights
        self.ttl_s = ttl_s
        self.shared = shared
        self.cache: TtlCache[list[tuple[str, float]]] = TtlCache(max_entries=256, ttl_s=ttl_s)

    def popular(
        self,
        state: ServingState | None,
        n: int,
        category: str | None,
        window: str | None,
        exclude: set[str] | None = None,
    ) -> Results:
        exclude = exclude or set()
        reason: Reason = {"kind": "popular"}
        if category is not None:
            reason = {"kind": "popular_in", "category": category}
        if window is not None:
            reason = {**reason, "kind": "popular_in", "window": window}
        if window is None and state is not None:
            allowed = state.allowed(category)
            out: list[Recommendation] = []
            for idx in state.popular_order:
                if len(out) >= n:
                    break
                if not allowed[idx]:
                    continue
                item_id = state.item_ids[idx]
                if item_id not in exclude:
                    score = float(state.popular_scores[idx])
                    out.append(Recommendation(item_id, score, [reason.copy()]))
            return Results(out, state.version)
        seconds = parse_window(window) if window is not None else None
        ranked = self.from_log(state, seconds, category, n + len(exclude))
        items = [Recommendation(i, s, [reason.copy()]) for i, s in ranked if i not in exclude]
        return Results(items[:n], state.version if state else None)

    def fill(
        self,
        state: ServingState,
        count: int,
        allowed: np.ndarray,
        exclude: sp.csr_matrix | None,
        already: list[Recommendation],
        category: str | None,
    ) -> list[Recommendation]:
        """Popular items to complete a classic model's short answer."""
        taken = {r.item_id for r in already}
        excluded = set(exclude.indices.tolist()) if exclude is not None else set()
        reason: Reason = (
            {"kind": "popular"}
            if category is None
            else {"kind": "popular_in", "category": category}
        )
        out: list[Recommendation] = []
        for idx in state.popular_order:
            if len(out) >= count:
                break
            if not allowed[idx] or idx in excluded:
                continue
            if state.popular_scores[idx] <= 0:
                break  # the rest never had an event: not "popular" by any measure
            item_id = state.item_ids[idx]
            if item_id in taken:
                continue
            score = float(state.popular_scores[idx])
            out.append(Recommendation(item_id, score, [reason.copy()]))
        return out

    def from_log(
        self,
        state: ServingState | None,
        window_s: float | None,
        category: str | None,
        limit: int | None,
    ) -> list[tuple[str, float]]:
        """Weighted event counts from the log, in a window ending at the newest event."""
        key = f"{window_s}"
        ranking = self.cache.get(key)
        if ranking is None:
            ranking = self._shared_ranking(window_s)
            self.cache.put(key, ranking)
        # The catalog filter reads item rows: cache its answer too, for the same time (all of it
        # is dropped when the catalog changes).
        filtered_key = f"{window_s}|{category}|{limit}"
        filtered = self.cache.get(filtered_key)
        if filtered is None:
            hidden = state.hidden_attribute if state is not None else DEFAULT_HIDDEN_ATTRIBUTE
            filtered = self._filter_catalog(ranking, category, limit, hidden)
            filtered = filtered if limit is None else filtered[:limit]
            self.cache.put(filtered_key, filtered)
        return filtered

    def _shared_ranking(self, window_s: float | None) -> list[tuple[str, float]]:
        """The window's ranking, from the shared cache when another process computed it (one
        aggregate over the event log per freshness period for the whole deployment)."""
        return shared_or_compute(
            self.shared,
            f"popular:{window_s}",
            self.ttl_s,
            lambda: item_activity(self.store, self.weights, window_s, weighted=True),
        )

    def _filter_catalog(
        self,
        ranking: list[tuple[str, float]],
        category: str | None,
        limit: int | None,
        hidden: str,
    ) -> list[tuple[str, float]]:
        """Keep available items (of the category); reads the catalog in chunks, stops early."""
        out: list[tuple[str, float]] = []
        for start in range(0, len(ranking), CATALOG_CHUNK):
            part = ranking[start : start + CATALOG_CHUNK]
            catalog = self.store.catalog([i for i, _ in part])
            for item_id, score in part:
                item = catalog.get(item_id)
                if item is None or not visible(item, hidden):
                    continue
                if category is not None and category not in item.categories:
                    continue
                out.append((item_id, score))
            if limit is not None and len(out) >= limit:
                break
        return out


def item_activity(
    store: EventStore,
    weights: EventWeights,
    window_s: float | None,
    weighted: bool,
    ordered: bool = True,
) -> list[tuple[str, float]]:
    """Every item's positive events in the window ending at the newest event (all of the log
    without a window): their weights summed when ``weighted``, else counted (as the pipeline's
    windowed statistics count them); best first when ``ordered`` (the sort is most of the
    cost at a million items: callers that index by item skip it)."""
    since = None
    if window_s is not None:
        newest = store.newest_event_ms()
        since = None if newest is None else newest - int(window_s * 1000)
    rows = store.item_activity(since)
    totals: dict[str, float] = {}
    if rows:
        w = weights.weigh([r[1] for r in rows], [r[2] for r in rows])
        for (item_id, _t, _v, count), weight in zip(rows, w.tolist(), strict=True):
            if weight > 0:
                totals[item_id] = totals.get(item_id, 0.0) + (weight * count if weighted else count)
    if not ordered:
        return list(totals.items())
    return sorted(totals.items(), key=lambda t: (-t[1], t[0]))
