"""Retrieval and ranking of one user's candidates: the expensive half of a pipeline answer.

Builds the user's query from the history read once per request (confidences, items never to
show, the model's user row), runs the pipeline, and tops short rankings up with popular items.
What it returns (``Ranked``) is what a feed keeps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from smartrec.pipeline.core import Candidates, UserQuery
from smartrec.serving.erasures import Erasures
from smartrec.serving.feeds import Feed, Ranked
from smartrec.serving.reasons import PageFacts, PipelineReasons, feed_sources
from smartrec.serving.results import Recommendation, Results
from smartrec.serving.rules_stage import fill_scores
from smartrec.serving.state import ServingState, negative_row, positive_first
from smartrec.storage.ports import EventStore

#: Events read per user: scoring looks at the newest ones ("seen" reads all when it must).
HISTORY_LIMIT = 500

History = Sequence[tuple[str, str, float | None]]


class UserRanker:
    def __init__(self, store: EventStore, erasures: Erasures, feed_items: int) -> None:
        self.store = store
        self.erasures = erasures
        self.feed_items = feed_items

    def query(
        self,
        state: ServingState,
        user_id: str,
        history: History,
        exclude_seen: bool,
        category: str | None,
        shown_at: np.ndarray | None = None,
    ) -> tuple[UserQuery, np.ndarray]:
        """The user's pipeline query, and the mask of items the answer may hold.
        ``shown_at``: positions of items shown earlier in the session (never again)."""
        conf, seen_row, hist_idx = state.user_rows(history)
        ever: list[str] | None = None
        if exclude_seen and len(history) >= HISTORY_LIMIT:
            ever = self.store.user_items(user_id)
            seen_row = state.items_row(ever)
        # Items with negative feedback are never shown, whatever exclude_seen says.
        blocked_row = seen_row if exclude_seen else negative_row(conf, seen_row)
        blocked = [blocked_row.indices.astype(np.int64)]
        if state.extra_index:  # items newer than the model: not on its axis, not in the rows
            blocked.append(extra_blocked(state, history, exclude_seen, ever))
        if shown_at is not None:
            blocked.append(shown_at)
        query = UserQuery(
            conf=conf,
            user=self.erasures.model_user(state, user_id),
            recent=positive_first(hist_idx, conf),
            exclude=np.unique(np.concatenate(blocked)),
            now=time.time(),
        )
        return query, state.allowed(category)

    def rank(
        self,
        state: ServingState,
        user_id: str,
        history: History,
        n: int,
        exclude_seen: bool,
        category: str | None,
        shown_at: np.ndarray | None = None,
        masked: bool = True,
    ) -> Ranked:
        """Retrieval and ranking for one user; not ``masked``: over every item, visible now
        or not (what a feed keeps: the masks apply per request)."""
        query, allowed = self.query(state, user_id, history, exclude_seen, category, shown_at)
        pipeline = state.pipeline
        assert pipeline is not None
        cands = pipeline.retrieve(query, allowed if masked else None)
        scores, _ = pipeline.score(cands, query)
        return ranked(state, cands, scores, query, allowed, n)

    def feed(
        self, state: ServingState, ranking: Ranked, built_ms: int, with_sources: bool = True
    ) -> Feed:
        """What a feed keeps: the best items, with what their answers need that no request
        changes (the retrievers that found them, the items' hashes, and ``with_sources`` the
        history items behind their reasons). A feed kept while a request waits skips the
        sources (about a millisecond for 100 items): its pages ask the retrievers about their
        own items, as a request without a feed does."""
        pipeline = state.pipeline
        assert pipeline is not None
        kept = ranking.trim(self.feed_items)
        hashes = state.item_hashes()[kept.items]
        found: np.ndarray | None = None
        n_retrievers = kept.cands.ranks.shape[1] if kept.cands.ranks.ndim == 2 else 0
        if n_retrievers <= 64:  # one bit each (more: worked out per page from the ranks)
            found = np.zeros(len(kept.items), dtype=np.uint64)
            if len(kept.cands):
                bits = np.left_shift(np.uint64(1), np.arange(n_retrievers, dtype=np.uint64))
                found[: len(kept.cands)] = np.bitwise_or.reduce(
                    np.where(np.isnan(kept.cands.ranks), np.uint64(0), bits), axis=1
                )
        names = kept.cands.names
        sources = (
            feed_sources(pipeline, kept.recent, kept.items, names, found) if with_sources else None
        )
        kept = dataclasses.replace(kept, sources=sources, hashes=hashes, found=found)
        return Feed(state.version, kept, built_ms)

    def rank_given(
        self,
        state: ServingState,
        user_id: str,
        history: History,
        ordered: list[str],
        reasons: PipelineReasons,
    ) -> Results:
        """The caller's list scored by the pipeline's ranker, with the same reasons; items not
        on the serving axis go last."""
        pipeline = state.pipeline
        assert pipeline is not None
        conf, _, hist_idx = state.user_rows(history)
        query = UserQuery(
            conf=conf,
            user=self.erasures.model_user(state, user_id),
            recent=positive_first(hist_idx, conf),
            exclude=np.zeros(0, dtype=np.int64),
            now=time.time(),
        )
        positions = [state.position(i) for i in ordered]
        known = np.asarray([p for p in positions if p >= 0], dtype=np.int64)
        unknown = [i for i, p in zip(ordered, positions, strict=True) if p < 0]
        recs: list[Recommendation] = []
        if known.size:
            cands = pipeline.retrieve(query, None, items=known)
            scores, _ = pipeline.score(cands, query)
            order = np.argsort(-scores, kind="stable").tolist()
            is_new = (time.time() - state.born_times(known)) <= (
                pipeline.spec.rules.new_days * 86400.0
            )
            nothing = np.zeros(len(known), dtype=bool)
            facts = PageFacts(known, scores, nothing, is_new, nothing, cands, query.recent)
            recs = reasons.page(state, pipeline, facts, order, set())
        recs += [Recommendation(i, 0.0, [{"kind": "unknown_item"}]) for i in unknown]
        return Results(recs, state.version)


def ranked(
    state: ServingState,
    cands: Candidates,
    scores: np.ndarray,
    query: UserQuery,
    allowed: np.ndarray,
    n: int,
) -> Ranked:
    """The ranking, topped up with popular items when there are too few candidates (a new
    user, a narrow category)."""
    items = cands.items
    popular = np.zeros(len(items), dtype=bool)
    if len(items) < n + 1:
        extra = popular_fill(state, n + 1 - len(items), allowed, query.exclude, items)
        if extra.size:
            items = np.concatenate([items, extra])
            scores = np.concatenate([scores, fill_scores(scores, len(extra))])
            popular = np.concatenate([popular, np.ones(len(extra), dtype=bool)])
    return Ranked(items, scores, popular, cands, list(query.recent), query.exclude)


def popular_fill(
    state: ServingState,
    count: int,
    allowed: np.ndarray,
    exclude: np.ndarray,
    taken: np.ndarray,
) -> np.ndarray:
    """The ``count`` most popular allowed items, none of ``exclude`` nor ``taken``."""
    skip = np.union1d(exclude, taken)
    head = state.popular_order[: 4 * (count + len(skip)) + 100]
    picked = head[allowed[head] & ~np.isin(head, skip)]
    return np.asarray(picked[:count], dtype=np.int64)


def extra_blocked(
    state: ServingState,
    history: History,
    exclude_seen: bool,
    ever: list[str] | None,
) -> np.ndarray:
    """Positions of items newer than the model that the user touched (``exclude_seen``) or
    gave negative feedback to overall: ``user_rows`` sees the model's items only."""
    extra = state.extra_index
    totals: dict[int, float] = {}
    for item_id, event_type, value in history:
        pos = extra.get(item_id)
        if pos is not None:
            totals[pos] = totals.get(pos, 0.0) + state.weights.weight_of(event_type, value)
    out = [p for p, w in totals.items() if exclude_seen or w <= 0]
    out += [p for i in ever or () if (p := extra.get(i)) is not None]
    return np.asarray(out, dtype=np.int64)
