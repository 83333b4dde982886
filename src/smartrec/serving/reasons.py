"""Why an item is recommended: typed reasons, serialised as the plain dicts of the HTTP answer.

The pipeline's reasons name the retrievers that found an item and the history item behind
them; a classic model's name the history item that contributes most. The switches over
retriever kinds live here, in one place, until retrievers explain themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.pipeline.core import Candidates, TrainedPipeline
from smartrec.serving.results import Reason, Recommendation

if TYPE_CHECKING:
    from smartrec.serving.state import ServingState


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What the rules learnt of each candidate, read by the reasons (arrays over ``items``)."""

    items: np.ndarray  # serving-axis positions
    scores: np.ndarray  # final scores (after boosts)
    popular: np.ndarray  # bool: a popular fill, not retrieved
    new: np.ndarray  # bool: within the rules' ``new_days``
    promoted: np.ndarray  # bool
    cands: Candidates
    recent: list[int]  # the user's positive history, newest first
    #: From a feed: (m, 2) history items behind the reasons and (m,) retriever bit masks.
    sources: np.ndarray | None = None
    found: np.ndarray | None = None


class _MaskTable:
    """Bit mask (bit r: the r-th retriever found the item) -> those retrievers' specs, built
    as masks are met: a handful in practice, never 2^R up front."""

    def __init__(self, specs: list[Any]) -> None:
        self.specs = specs
        self._lists: dict[int, list[Any]] = {}

    def __getitem__(self, mask: int) -> list[Any]:
        found = self._lists.get(mask)
        if found is None:
            found = [r for b, r in enumerate(self.specs) if mask >> b & 1]
            self._lists[mask] = found
        return found


class PipelineReasons:
    """Reasons of pipeline answers; keeps the mask tables of the pipeline being served."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, tuple[str, ...]], tuple[TrainedPipeline, _MaskTable]] = {}

    def clear(self) -> None:
        """Drop the tables (a model or catalogue change)."""
        self._tables.clear()

    def _by_mask(self, pipeline: TrainedPipeline, names: tuple[str, ...]) -> _MaskTable:
        key = (id(pipeline), names)
        held = self._tables.get(key)
        if held is None or held[0] is not pipeline:
            specs = [next(r for r in pipeline.spec.retrievers if r.name == n) for n in names]
            if len(self._tables) >= 4:  # a model swap clears it; this bounds the rest
                self._tables.clear()
            held = (pipeline, _MaskTable(specs))  # held so that its id is not reused
            self._tables[key] = held
        return held[1]

    def page(
        self,
        state: ServingState,
        pipeline: TrainedPipeline,
        facts: PageFacts,
        page: list[int],
        explored: set[int],
        category: str | None = None,
    ) -> list[Recommendation]:
        """Readable and parseable reasons of the page (positions into ``facts.items``): which
        retriever found each item and why."""
        cands = facts.cands
        by_mask = self._by_mask(pipeline, tuple(cands.names))
        at = np.asarray(page, dtype=np.int64)
        page_items = facts.items[at]
        similar_src: list[int | None]
        content_src: list[int | None]
        if facts.sources is not None:
            picked = facts.sources[at].tolist()
            similar_src = [a if a >= 0 else None for a, _ in picked]
            content_src = [b if b >= 0 else None for _, b in picked]
        else:
            similar_src = similar_sources(pipeline, facts.recent, page_items)
            content_src = content_sources(pipeline, facts.recent, page_items)
        if facts.found is not None:
            by = [by_mask[m] for m in facts.found[at].tolist()]
        else:
            bits = [sum(1 << b for b in cands.found_by(j)) if j < len(cands) else 0 for j in page]
            by = [by_mask[m] for m in bits]
        fill = facts.popular[at].tolist()
        new = facts.new[at].tolist()
        promo = facts.promoted[at].tolist()
        scores = facts.scores[at].tolist()
        item_ids = state.item_ids
        out: list[Recommendation] = []
        for pos, (j, idx) in enumerate(zip(page, page_items.tolist(), strict=True)):
            reasons: list[Reason] = []
            if j in explored:
                reasons.append({"kind": "new", "exploration": True})
            reasons += found_reasons(state, by[pos], similar_src[pos], content_src[pos], category)
            if fill[pos]:
                reasons.append({"kind": "popular"})
            if new[pos] and j not in explored:
                reasons.append({"kind": "new"})
            if promo[pos]:
                reasons.append({"kind": "promoted"})
            if not reasons:
                reasons.append({"kind": "personalized", "algorithm": "pipeline"})
            out.append(Recommendation(item_ids[idx], scores[pos], reasons))
        return out


def found_reasons(
    state: ServingState,
    by: list[Any],
    similar: int | None,
    content: int | None,
    category: str | None,
) -> list[Reason]:
    """Why the retrievers ``by`` found an item, once per cause (two retrievers with the
    same cause read once)."""
    reasons: dict[tuple[Any, ...], Reason] = {}
    for r in by:
        if r.kind == "neighbours" and similar is not None:
            reasons[("similar_to", similar)] = {
                "kind": "similar_to",
                "item_id": state.item_ids[similar],
                "title": state.titles[similar],
            }
        elif r.kind == "content" and content is not None:
            reasons[("content", content)] = {
                "kind": "similar_to",
                "item_id": state.item_ids[content],
                "title": state.titles[content],
                "via": "content",
            }
        elif r.kind == "embedding":
            reasons[("personalized", r.model)] = {"kind": "personalized", "algorithm": r.model}
        elif r.kind == "popular":
            # Popular over the whole catalogue in the window (a category is named only
            # when the request asked for one: then the list is popular within it).
            reason: Reason = {"kind": "popular_in", "window": r.windows[0]}
            if category is not None:
                reason["category"] = category
            reasons[("popular_in", r.windows[0])] = reason
    return list(reasons.values())


def similar_sources(
    pipeline: TrainedPipeline, recent: list[int], page_items: np.ndarray
) -> list[int | None]:
    """The recent history item that lifts each page item most (neighbours model)."""
    out: list[int | None] = [None] * len(page_items)
    r = next((r for r in pipeline.spec.retrievers if r.kind == "neighbours"), None)
    inside = page_items < pipeline.n_items
    if r is None or not recent or not inside.any():
        return out
    src = np.asarray(recent[:50], dtype=np.int64)
    contrib = np.asarray(pipeline.models[r.name].contributions(src, page_items[inside]))
    best = contrib.argmax(axis=0)
    for k, pos in enumerate(np.flatnonzero(inside).tolist()):
        if contrib[best[k], k] > 0:
            out[pos] = int(src[best[k]])
    return out


def content_sources(
    pipeline: TrainedPipeline, recent: list[int], page_items: np.ndarray
) -> list[int | None]:
    """The recent history item most similar in content to each page item."""
    out: list[int | None] = [None] * len(page_items)
    index = pipeline.content
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
    best = sims.argmax(axis=0)
    for k, pos in enumerate(np.flatnonzero(ok).tolist()):
        if sims[best[k], k] > 0:
            out[pos] = int(src[best[k]])
    return out


def exploration_order(pipeline: TrainedPipeline, cands: Candidates, pool: list[int]) -> list[int]:
    """Exploration candidates, the most similar in content to the user's history first.

    New items have no model scores, so the ranker gives them (nearly) equal scores and
    their order would be the catalogue's; ties keep the ranking's order."""
    col = next((k for k, r in enumerate(pipeline.spec.retrievers) if r.kind == "content"), None)
    if col is None or not pool:
        return pool

    def key(j: int) -> float:
        value = float(cands.scores[j, col]) if j < len(cands) else float("nan")
        return -value if value == value else float("inf")

    return sorted(pool, key=key)


def feed_sources(pipeline: TrainedPipeline, recent: list[int], items: np.ndarray) -> np.ndarray:
    """(m, 2) history items behind each item's reasons (similar by neighbours, by content),
    -1 for none: what a feed keeps so that its pages do not work them out again."""
    similar = similar_sources(pipeline, recent, items)
    content = content_sources(pipeline, recent, items)
    pairs = zip(similar, content, strict=True)
    return np.array(
        [[-1 if a is None else a, -1 if b is None else b] for a, b in pairs], dtype=np.int64
    ).reshape(-1, 2)


def model_reasons(
    state: ServingState,
    hist_idx: Sequence[int],
    conf: sp.csr_matrix,
    rec_idx: np.ndarray,
    kind: str = "personalized",
) -> list[list[Reason]]:
    """A classic model's reasons: the model, and the history item that contributes most to
    each recommendation."""
    model = state.bundle.model
    base: Reason = {"kind": kind, "algorithm": model.name}
    if not hist_idx or not model.supports_similar or rec_idx.size == 0:
        return [[base.copy()] for _ in rec_idx]
    hist = np.asarray(hist_idx[:50], dtype=np.int64)  # the 50 most recent items
    row = dict(zip(conf.indices.tolist(), conf.data.tolist(), strict=True))
    weights = np.array([row.get(h, 0.0) for h in hist.tolist()], dtype=np.float32)
    contrib = model.contributions(hist, rec_idx) * np.maximum(weights, 0)[:, None]
    best = contrib.argmax(axis=0)
    out: list[list[Reason]] = []
    for j in range(len(rec_idx)):
        if contrib[best[j], j] > 0:
            src = int(hist[best[j]])
            similar: Reason = {
                "kind": "similar_to",
                "item_id": state.item_ids[src],
                "title": state.titles[src],
            }
            out.append([base.copy(), similar])
        else:
            out.append([base.copy()])
    return out
