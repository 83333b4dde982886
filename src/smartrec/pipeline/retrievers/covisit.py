"""Co-visitation: items that users touch together within a session, counts decayed in time.

The session-based retriever of production recommenders (e-commerce "also viewed together"):
two positive events of one user at most ``session_gap_hours`` apart belong to one session; each
event pairs with the next ``pair_window`` events of its session (both directions), each pair
weighing ``0.5 ** (age / half_life_days)`` where age is the time from the pair's newer event to
the training reference. Every item keeps its ``neighbours`` strongest co-visited items.

A user's candidates are the co-visited items of their ``recent`` newest items, each history
item weighing ``1 / sqrt(its position)`` (newest first). It needs no model and reaches an item
from its first shared sessions, before a factor model has a vector for it worth the name.

Saved as ``covisit.npz`` (the CSR arrays) and ``covisit.json`` (parameters) under the
retriever's folder: no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from smartrec.domain import Interactions
from smartrec.pipeline.kernels import (
    Scorer,
    gather_rows,
    nan_scorer,
    prune_rows,
    strongest_sources,
    top_n,
)
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.retrievers.base import Retriever, register

if TYPE_CHECKING:  # the spec validates kinds through the registry: no import back
    from smartrec.pipeline.spec import RetrieverConfig

FORMAT = 1


class CovisitParams(BaseModel):
    """``params`` of a covisit retriever block."""

    model_config = ConfigDict(extra="forbid")

    session_gap_hours: float = Field(default=24.0, gt=0)
    pair_window: int = Field(default=10, ge=1, le=200)
    half_life_days: float = Field(default=30.0, gt=0)
    neighbours: int = Field(default=100, ge=1, le=5000)


def covisit_matrix(
    data: Interactions,
    p: CovisitParams,
    after: float | None = None,
    reference: float | None = None,
) -> sp.csr_matrix:
    """Items x items decayed co-visitation weights, each row cut to its strongest entries;
    with ``after``, only the pairs whose newer event is later than it (epoch seconds), and no
    cut (what live events add to a trained matrix). Ages are counted back from ``reference``
    (``data``'s newest event by default); a pair newer than it weighs 1."""
    n = data.n_items
    keep = data.event_weights > 0
    users = data.event_users[keep]
    items = data.event_items[keep].astype(np.int64)
    times = data.event_times[keep].astype(np.float64)
    order = np.lexsort((times, users))
    users, items, times = users[order], items[order], times[order]
    new_session = np.r_[
        True, (users[1:] != users[:-1]) | (np.diff(times) > p.session_gap_hours * 3600)
    ]
    session = np.cumsum(new_session)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    ln2_per_s = np.log(2.0) / (p.half_life_days * 86400.0)
    ref = data.reference_time if reference is None else reference
    for lag in range(1, p.pair_window + 1):
        a, b = np.arange(len(items) - lag), np.arange(lag, len(items))
        same = (session[a] == session[b]) & (items[a] != items[b])
        a, b = a[same], b[same]
        if a.size == 0:
            break
        if after is not None:
            late = np.maximum(times[a], times[b]) > after
            a, b = a[late], b[late]
        age = np.maximum(ref - np.maximum(times[a], times[b]), 0.0)
        w = np.exp(-ln2_per_s * age).astype(np.float32)
        rows += [items[a], items[b]]
        cols += [items[b], items[a]]
        vals += [w, w]
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    if after is not None:
        return matrix
    pruned = prune_rows(matrix, p.neighbours)
    pruned.sort_indices()
    return pruned


@register
class CovisitRetriever(Retriever):
    kind = "covisit"

    @classmethod
    def check(cls, config: RetrieverConfig) -> None:
        if config.model is not None:
            raise ValueError(f"retriever {config.name!r} (covisit) takes no model")
        CovisitParams.model_validate(config.params)

    @property
    def params(self) -> CovisitParams:
        return CovisitParams.model_validate(self.config.params)

    @property
    def live_key(self) -> str:
        """Where the trained matrix plus the live events' pairs is kept (the trained one stays
        under the retriever's name: it is what a bundle saves, and each update starts from
        it)."""
        return f"{self.name}+live"

    @property
    def matrix(self) -> sp.csr_matrix | None:
        held: sp.csr_matrix | None = self.parts.extras.get(self.live_key)
        if held is None:
            held = self.parts.extras.get(self.name)
        return held

    def fit(self, data: Interactions, *, build_index: bool = True) -> None:
        self.parts.extras[self.name] = covisit_matrix(data, self.params)
        self.parts.extras.pop(self.live_key, None)

    def live_lookback_s(self) -> float | None:
        # A pair may join events ``pair_window`` apart, each gap up to the session gap.
        return self.params.session_gap_hours * 3600.0 * self.params.pair_window

    def live_update(self, data: Interactions, after: float) -> bool:
        """Sessions that went on after training pair their items as training would have (the
        events before ``after`` are there for the pairs that span it); the pairs are added to
        the trained matrix, and each row is cut to its strongest again."""
        trained: sp.csr_matrix | None = self.parts.extras.get(self.name)
        if trained is None:
            return False
        delta = covisit_matrix(data, self.params, after=after, reference=after)
        delta = delta[: trained.shape[0], : trained.shape[1]]
        if delta.nnz == 0 and self.live_key not in self.parts.extras:
            return False
        merged = prune_rows((trained + delta).tocsr(), self.params.neighbours)
        merged.sort_indices()
        held = self.parts.extras.get(self.live_key)
        if held is not None and _same(held, merged):
            return False
        self.parts.extras[self.live_key] = merged
        return True

    def _sums(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(co-visited items, sorted; their weighted sums over the recent history items)."""
        matrix = self.matrix
        rows = np.asarray([i for i in recent if i < self.parts.n_items], dtype=np.int64)
        if matrix is None or rows.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        weights = 1.0 / np.sqrt(np.arange(1, len(rows) + 1, dtype=np.float32))
        lengths, cols, vals = gather_rows(matrix, rows)
        items, inverse = np.unique(cols, return_inverse=True)
        sums = np.bincount(
            inverse, weights=vals * np.repeat(weights, lengths), minlength=len(items)
        )
        return items.astype(np.int64), sums.astype(np.float32)

    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        items, sums = self._sums(q.recent[: self.config.recent])
        if items.size == 0:
            return np.zeros(0, dtype=np.int64), nan_scorer
        ok = sums > 0
        if blocked.size:
            ok &= ~np.isin(items, blocked)
        if allowed is not None:
            inside = items < len(allowed)
            ok &= inside & allowed[np.where(inside, items, 0)]
        top = items[ok][top_n(sums[ok], self.config.n, None)]

        def score(idx: np.ndarray) -> np.ndarray:
            """Co-visitation sum of any item (0 when never co-visited, NaN past the model)."""
            out = np.where(idx < self.parts.n_items, 0.0, np.nan).astype(np.float32)
            pos = np.minimum(np.searchsorted(items, idx), len(items) - 1)
            hit = items[pos] == idx
            out[hit] = sums[pos[hit]]
            return out

        return top, score

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        matrix = self.matrix
        if matrix is None:
            return None
        src = np.asarray(sources, dtype=np.int64)
        tgt = np.asarray(targets, dtype=np.int64)
        out = np.zeros((len(src), len(tgt)), dtype=np.float32)
        inside = tgt < matrix.shape[1]
        for r, i in enumerate(src.tolist()):
            if i >= matrix.shape[0]:
                continue
            lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
            cols, vals = matrix.indices[lo:hi], matrix.data[lo:hi]
            if cols.size == 0:
                continue
            pos = np.minimum(np.searchsorted(cols, tgt), cols.size - 1)
            hit = inside & (cols[pos] == tgt)
            out[r, hit] = vals[pos[hit]]
        return out

    def sources(self, recent: list[int], page_items: np.ndarray) -> list[int | None]:
        """The recent history item (of the ``recent`` newest) co-visited most with each one."""
        src = np.asarray(recent[: self.config.recent], dtype=np.int64)
        out: list[int | None] = [None] * len(page_items)
        if src.size == 0 or len(page_items) == 0:
            return out
        contrib = self.contributions(src, np.asarray(page_items, dtype=np.int64))
        if contrib is None:
            return out
        return strongest_sources(src, contrib)

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        if source is None:
            return None
        return {"kind": "similar_to", "item": source, "via": "covisit"}

    def save(self, directory: Path) -> None:
        matrix: sp.csr_matrix | None = self.parts.extras.get(self.name)  # as trained
        if matrix is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            directory / "covisit.npz",
            data=matrix.data,
            indices=matrix.indices,
            indptr=matrix.indptr,
            shape=np.asarray(matrix.shape, dtype=np.int64),
        )
        meta = {"format": FORMAT, "params": self.params.model_dump()}
        (directory / "covisit.json").write_text(json.dumps(meta, indent=2))

    def load(self, directory: Path) -> None:
        path = directory / "covisit.npz"
        if not path.exists():
            return
        with np.load(path, allow_pickle=False) as a:
            shape = (int(a["shape"][0]), int(a["shape"][1]))
            matrix = sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=shape)
        self.parts.extras[self.name] = matrix


def _same(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (
        a.shape == b.shape
        and a.nnz == b.nnz
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.data, b.data)
    )
