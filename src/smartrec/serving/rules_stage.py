"""The rules stage of a pipeline answer: filters, boosts, exploration, diversity, caps, paging.

It runs per request over a ranking (the user's feed, or one ranked for this request), so it
works on numpy arrays over the candidates, reads item rows only when a filter needs them, and
builds Python objects for the answered page only.
"""

from __future__ import annotations

import time

import numpy as np

from smartrec.domain import CatalogItem
from smartrec.pipeline.diversity import cap_per_category, category_vectors, mmr
from smartrec.pipeline.filters import ItemFilter, parse_filter
from smartrec.pipeline.rules import (
    PageState,
    boost_scores,
    exploration_slots,
    interleave,
    item_hash,
)
from smartrec.serving.feeds import Ranked
from smartrec.serving.reasons import PageFacts, PipelineReasons, exploration_order
from smartrec.serving.requests import RecommendRequest
from smartrec.serving.results import Results
from smartrec.serving.state import ServingState
from smartrec.storage.ports import CatalogStore

#: A narrow filter looks past the candidates at this many popular items at most, in chunks.
FILTER_SCAN_LIMIT = 20_000
FILTER_SCAN_CHUNK = 1_000


def categories_of(state: ServingState, items: np.ndarray) -> list[list[str]]:
    """Each item's categories (in the catalogue's category order): one mask look-up per
    category, not per item and category."""
    out: list[list[str]] = [[] for _ in range(len(items))]
    for name, mask in state.categories.items():
        for k in np.flatnonzero(mask[items]).tolist():
            out[k].append(name)
    return out


def fill_scores(scores: np.ndarray, count: int) -> np.ndarray:
    """Scores for ``count`` items appended below every ranked one, in the order given."""
    base = float(scores.min()) - 1.0 if scores.size else 0.0
    return base - np.arange(count, dtype=np.float32) * 1e-3


class RulesStage:
    """Business rules over a ranking; reads item rows from the catalogue when a filter (or a
    promoted-items filter) needs them."""

    def __init__(self, store: CatalogStore, reasons: PipelineReasons) -> None:
        self.store = store
        self.reasons = reasons

    def apply(
        self,
        state: ServingState,
        ranked: Ranked,
        request: RecommendRequest,
        shown: PageState,
        item_filter: ItemFilter | None,
        from_feed: bool,
        read_rows: bool = True,
    ) -> Results | None:
        """The answer page. From a feed (``from_feed``), the category and the items already
        shown are masked here, and None means "the feed cannot answer this" (too few items
        left, or catalogue rows needed while ``read_rows`` is off)."""
        pipeline = state.pipeline
        assert pipeline is not None
        rules = pipeline.spec.rules
        n, category = request.n, request.category
        items, scores = ranked.items, ranked.scores
        popular_fill = ranked.popular
        keep = np.ones(len(items), dtype=bool)
        allowed = state.allowed(category)
        if from_feed:
            # The catalogue may have changed since the feed was built (hidden, unavailable):
            # the live masks decide, as they do for the online path's retrieval.
            keep &= allowed[items]
            if shown.shown:  # the feed's own items, not the catalogue's: this is the event loop
                hashes = ranked.hashes
                if hashes is None:
                    hashes = np.array([item_hash(state.item_ids[i]) for i in items.tolist()])
                wanted = np.fromiter(shown.shown, dtype=np.uint32, count=len(shown.shown))
                keep &= ~np.isin(hashes, wanted)
            if int(keep.sum()) < n + 1:
                return None  # the online path looks further (or fills with popular items)
        # Rules that read item rows fetch them for the candidates only.
        needs_rows = item_filter is not None or rules.promoted_filter is not None
        if needs_rows and not read_rows:
            return None
        ids = [state.item_ids[i] for i in items.tolist()] if needs_rows else []
        rows = self.store.catalog(ids) if needs_rows else {}
        if item_filter is not None:
            keep &= item_filter.mask([rows.get(i) for i in ids])
            if int(keep.sum()) < n + 1:  # a narrow filter: look past the candidates
                if from_feed:
                    return None
                more = self._filter_fill(
                    state, item_filter, n + 1 - int(keep.sum()), allowed, ranked.exclude, items
                )
                if more:
                    items = np.concatenate([items, np.array([p for p, _ in more])])
                    scores = np.concatenate([scores, fill_scores(scores, len(more))])
                    popular_fill = np.concatenate([popular_fill, np.ones(len(more), dtype=bool)])
                    keep = np.concatenate([keep, np.ones(len(more), dtype=bool)])
                    ids += [row.item_id for _, row in more]
                    rows.update({row.item_id: row for _, row in more})
        # Boosts: new and promoted items.
        is_new = (time.time() - state.born_times(items)) <= rules.new_days * 86400.0
        promoted = np.zeros(len(items), dtype=bool)
        if rules.promoted:
            at = [p for i in rules.promoted if (p := state.position(i)) >= 0]
            promoted = np.isin(items, np.asarray(at, dtype=np.int64))
        if rules.promoted_filter is not None:
            promoted |= parse_filter(rules.promoted_filter).mask([rows.get(i) for i in ids])
        final = scores
        if rules.boost_new != 1.0 or rules.boost_promoted != 1.0:
            multipliers = np.ones(len(items), dtype=np.float32)
            multipliers[is_new] *= rules.boost_new
            multipliers[promoted] *= rules.boost_promoted
            final = boost_scores(scores, multipliers)
        by_score = np.argsort(-final, kind="stable")
        order = by_score[keep[by_score]]
        # Exploration: a share of the page for new items the ranking would not have shown.
        share = rules.exploration if request.exploration is None else request.exploration
        slots = exploration_slots(n, share)
        explore: list[int] = []
        if slots:
            tail = order[n - len(slots) :]
            pool = tail[is_new[tail]].tolist()
            explore = exploration_order(pipeline, ranked.cands, pool)[: len(slots)]
            if explore:
                order = order[~np.isin(order, np.asarray(explore, dtype=np.int64))]
        # Diversity over the head of the list.
        lam = rules.diversity if request.diversity is None else request.diversity
        cap = rules.max_per_category
        if request.max_per_category is not None:
            cap = request.max_per_category
        head_n = min(len(order), max(5 * n, 50))
        if (lam < 1.0 or cap) and head_n > 1:
            head = order[:head_n]
            cats = categories_of(state, items[head])
            picked = np.arange(len(head))
            if lam < 1.0:
                picked = mmr(final[head], category_vectors(cats), len(head), lam)
            if cap:
                picked = cap_per_category(picked, cats, cap, len(head))
            order = np.concatenate([head[picked], order[head_n:]])
        positions = interleave(order[:n].tolist(), explore, slots, n)
        page = [j if j >= 0 else explore[-1 - j] for j in positions] if explore else positions
        remaining = len(order) + len(explore) - len(page)
        facts = PageFacts(
            items=items,
            scores=final,
            popular=popular_fill,
            new=is_new,
            promoted=promoted,
            cands=ranked.cands,
            recent=ranked.recent,
            sources=ranked.sources if from_feed else None,
            found=ranked.found if from_feed else None,
        )
        recs = self.reasons.page(state, pipeline, facts, page, set(explore), category)
        if from_feed and ranked.hashes is not None:
            new_shown = shown.after_hashes(ranked.hashes[np.asarray(page, dtype=np.int64)].tolist())
        else:
            new_shown = shown.after(r.item_id for r in recs)
        more_left = remaining > 0 or ranked.truncated
        token = new_shown.encode() if more_left and recs else None
        return Results(recs, state.version, token)

    def _filter_fill(
        self,
        state: ServingState,
        item_filter: ItemFilter,
        count: int,
        allowed: np.ndarray,
        exclude: np.ndarray,
        taken: np.ndarray,
    ) -> list[tuple[int, CatalogItem]]:
        """Items passing a filter that retrieval did not find, most popular first; reads item
        rows a chunk at a time and gives up after FILTER_SCAN_LIMIT items."""
        skip = np.union1d(exclude, taken)
        out: list[tuple[int, CatalogItem]] = []
        order = state.popular_order
        for start in range(0, min(len(order), FILTER_SCAN_LIMIT), FILTER_SCAN_CHUNK):
            part = order[start : start + FILTER_SCAN_CHUNK]
            chunk = part[allowed[part] & ~np.isin(part, skip)].tolist()
            rows = self.store.catalog([state.item_ids[i] for i in chunk])
            for i in chunk:
                row = rows.get(state.item_ids[i])
                if row is not None and item_filter.matches(row):
                    out.append((i, row))
                    if len(out) >= count:
                        return out
        return out
