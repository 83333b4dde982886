"""Why an item is recommended: typed reasons, serialised as the plain dicts of the HTTP answer.

The pipeline's reasons come from the retrievers that found an item: each one names the history
item behind it (:meth:`Retriever.sources`) and says why (:meth:`Retriever.reason`), so a new
retriever kind explains itself with no change here. A classic model's reasons name the history
item that contributes most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from smartrec.pipeline.core import Candidates, TrainedPipeline
from smartrec.pipeline.retrievers import Retriever
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
    #: From a feed: (m, R) history items behind the reasons (column r: ``cands.names[r]``,
    #: -1 for none) and (m,) retriever bit masks.
    sources: np.ndarray | None = None
    found: np.ndarray | None = None


class _MaskTable:
    """Bit mask (bit r: the r-th retriever found the item) -> those retrievers, built as masks
    are met: a handful in practice, never 2^R up front."""

    def __init__(self, retrievers: list[Retriever]) -> None:
        self.retrievers = retrievers
        self._lists: dict[int, list[Retriever]] = {}

    def __getitem__(self, mask: int) -> list[Retriever]:
        found = self._lists.get(mask)
        if found is None:
            found = [r for b, r in enumerate(self.retrievers) if mask >> b & 1]
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
            retrievers = [pipeline.retriever(n) for n in names]
            if len(self._tables) >= 4:  # a model swap clears it; this bounds the rest
                self._tables.clear()
            held = (pipeline, _MaskTable(retrievers))  # held so that its id is not reused
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
        if facts.found is not None:
            by = [by_mask[m] for m in facts.found[at].tolist()]
        else:
            bits = [sum(1 << b for b in cands.found_by(j)) if j < len(cands) else 0 for j in page]
            by = [by_mask[m] for m in bits]
        if facts.sources is not None:
            sources = _feed_columns(facts.sources[at], cands.names, by)
        else:
            sources = page_sources(facts.recent, page_items, by)
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
            found = by[pos]
            if found:
                explained = [sources[r.name][pos] if r.name in sources else None for r in found]
                reasons += found_reasons(state, found, explained, category)
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
    by: Sequence[Retriever],
    sources: Sequence[int | None],
    category: str | None,
) -> list[Reason]:
    """Why the retrievers ``by`` found an item (``sources[k]``: the history item behind
    ``by[k]``, from its :meth:`Retriever.sources`), once per cause: two retrievers with the
    same cause read once. A reason's ``"item"`` becomes the item's id and title, in place."""
    reasons: dict[tuple[tuple[str, Any], ...], Reason] = {}
    for r, source in zip(by, sources, strict=True):
        said = r.reason(source, category)
        if said is None:
            continue
        if "item" in said:
            said = _named(state, said)
        reasons.setdefault(tuple(sorted(said.items())), cast(Reason, said))
    return list(reasons.values())


def _named(state: ServingState, said: dict[str, Any]) -> dict[str, Any]:
    """``said`` with its ``"item"`` (an index) replaced by ``item_id`` and ``title`` where it
    stood: the answer's key order is the reason's."""
    out: dict[str, Any] = {}
    for key, value in said.items():
        if key == "item":
            out["item_id"] = state.item_ids[value]
            out["title"] = state.titles[value]
        else:
            out[key] = value
    return out


def page_sources(
    recent: list[int], page_items: np.ndarray, by: list[list[Retriever]]
) -> dict[str, list[int | None]]:
    """Retriever name -> the history item behind each page item's reason (None: none), asked
    of each retriever for the items it found only (the others' entries stay None): per
    request, that is all the explaining work there is."""
    found: dict[str, tuple[Retriever, list[int]]] = {}
    for pos, rs in enumerate(by):
        for r in rs:
            found.setdefault(r.name, (r, []))[1].append(pos)
    out: dict[str, list[int | None]] = {}
    for name, (r, at) in found.items():
        column: list[int | None] = [None] * len(page_items)
        if recent:
            got = r.sources(recent, page_items[np.asarray(at, dtype=np.int64)])
            for pos, source in zip(at, got, strict=True):
                column[pos] = source
        out[name] = column
    return out


def _feed_columns(
    picked: np.ndarray, names: Sequence[str], by: list[list[Retriever]]
) -> dict[str, list[int | None]]:
    """The page's rows of a feed's sources (-1: none), as :func:`page_sources` gives them,
    for the retrievers that found a page item."""
    wanted = {r.name for rs in by for r in rs}
    return {
        name: [v if v >= 0 else None for v in picked[:, col].tolist()]
        for col, name in enumerate(names)
        if name in wanted and col < picked.shape[1]
    }


def exploration_order(pipeline: TrainedPipeline, cands: Candidates, pool: list[int]) -> list[int]:
    """Exploration candidates, the best scored by a retriever that reaches new items first.

    New items have no model scores, so the ranker gives them (nearly) equal scores and
    their order would be the catalogue's; ties keep the ranking's order."""
    col = next((k for k, r in enumerate(pipeline.retrievers) if r.reaches_new_items), None)
    if col is None or not pool:
        return pool

    def key(j: int) -> float:
        value = float(cands.scores[j, col]) if j < len(cands) else float("nan")
        return -value if value == value else float("inf")

    return sorted(pool, key=key)


def feed_sources(
    pipeline: TrainedPipeline,
    recent: list[int],
    items: np.ndarray,
    names: Sequence[str],
    found: np.ndarray | None,
) -> np.ndarray:
    """(m, len(names)) history items behind each item's reasons, one column per retriever of
    ``names`` (the candidates' columns), -1 for none: what a feed keeps so that its pages do
    not ask the retrievers again. With ``found`` (bit r: ``names[r]`` found the item) each
    retriever is asked about the items it found only, as a page would."""
    out = np.full((len(items), len(names)), -1, dtype=np.int32)
    if not recent or len(items) == 0:
        return out
    for col, name in enumerate(names):
        at = (
            np.arange(len(items))
            if found is None
            else np.flatnonzero((found >> np.uint64(col)) & np.uint64(1))
        )
        if at.size == 0:
            continue
        got = pipeline.retriever(name).sources(recent, items[at])
        if any(s is not None for s in got):
            out[at, col] = [-1 if s is None else s for s in got]
    return out


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
