"""Interaction data as the models see it: a frozen id map on each axis and a sparse matrix.

The external ids of the application are strings; models work on dense internal indices. The
maps are frozen at construction (RecTools' identifiers idea) and travel with a saved model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


class IdMap:
    """A frozen, two-way map between external string ids and internal indices 0..n-1."""

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        arr = np.asarray([str(i) for i in ids], dtype=object)
        index = {v: i for i, v in enumerate(arr)}
        if len(index) != len(arr):
            raise ValueError("IdMap ids must be unique")
        self._ids = arr
        self._index = index

    @classmethod
    def from_values(cls, values: Iterable[str]) -> IdMap:
        """Unique values in first-seen order (stable for a given input order)."""
        return cls(dict.fromkeys(str(v) for v in values))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and bool(np.array_equal(self._ids, other._ids))

    def __hash__(self) -> int:  # pragma: no cover - maps are not used as dict keys
        return hash(tuple(self._ids))

    def get(self, external_id: str, default: int = -1) -> int:
        return self._index.get(external_id, default)

    def index(self, external_ids: Iterable[str]) -> np.ndarray:
        """Internal indices; -1 for ids not in the map."""
        get = self._index.get
        return np.fromiter((get(str(e), -1) for e in external_ids), dtype=np.int64)

    def external(self, indices: Iterable[int] | np.ndarray) -> list[str]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise IndexError("internal index out of range")
        return [str(x) for x in self._ids[idx]]

    @property
    def lookup(self) -> dict[str, int]:
        """The external -> internal dict itself, for hot loops (do not modify)."""
        return self._index

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def to_list(self) -> list[str]:
        return [str(x) for x in self._ids]


@dataclass
class Interactions:
    """Users x items confidence matrix plus the raw (weighted, timed) events behind it.

    ``matrix`` holds the summed positive confidence per (user, item); ``seen`` holds every pair
    that had any event, negative ones included, so that disliked items are never recommended.
    The event arrays (``event_users``, ``event_items``, ``event_weights``, ``event_times``) keep
    time for models that need it (decayed popularity) and for time-based splits.
    """

    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    seen: sp.csr_matrix
    event_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    event_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    event_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    event_times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    item_categories: list[list[str]] | None = None

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_events(self) -> int:
        return len(self.event_users)

    @property
    def reference_time(self) -> float:
        """The newest event time: the 'now' for decay and windows, so that historic data works."""
        return float(self.event_times.max()) if self.event_times.size else 0.0

    @classmethod
    def from_events(
        cls,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        weights: Sequence[float] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None = None,
        *,
        users: IdMap | None = None,
        items: IdMap | None = None,
        item_categories: dict[str, list[str]] | None = None,
    ) -> Interactions:
        """Build from parallel event arrays (timestamps in epoch seconds).

        Given ``users``/``items`` maps fix the axes (events on ids outside them are dropped, as
        when scoring a validation window against a trained model); otherwise the maps are built
        from the events in first-seen order.
        """
        u_ext = np.asarray(user_ids, dtype=object)
        i_ext = np.asarray(item_ids, dtype=object)
        w = np.asarray(weights, dtype=np.float32)
        t = (
            np.zeros(len(u_ext), dtype=np.float64)
            if timestamps is None
            else np.asarray(timestamps, dtype=np.float64)
        )
        if not (len(u_ext) == len(i_ext) == len(w) == len(t)):
            raise ValueError("event arrays must have the same length")
        umap = users if users is not None else IdMap.from_values(u_ext)
        imap = items if items is not None else IdMap.from_values(i_ext)
        u = umap.index(u_ext)
        i = imap.index(i_ext)
        keep = (u >= 0) & (i >= 0)
        cats = None
        if item_categories is not None:
            cats = [list(item_categories.get(str(x), [])) for x in imap.ids]
        return cls.from_codes(umap, imap, u[keep], i[keep], w[keep], t[keep], cats)

    @classmethod
    def from_codes(
        cls,
        users: IdMap,
        items: IdMap,
        event_users: np.ndarray,
        event_items: np.ndarray,
        weights: np.ndarray,
        times: np.ndarray,
        item_categories: list[list[str]] | None = None,
    ) -> Interactions:
        """Build from events already given as internal indices (no string look-ups: the fast
        path for generated data with tens of millions of events)."""
        u = np.asarray(event_users, dtype=np.int64)
        i = np.asarray(event_items, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float32)
        t = np.asarray(times, dtype=np.float64)
        shape = (len(users), len(items))
        summed = sp.csr_matrix((w.astype(np.float64), (u, i)), shape=shape)
        summed.sum_duplicates()
        seen = summed.copy()
        seen.data = np.ones_like(seen.data)
        matrix = summed.copy()
        matrix.data = np.maximum(matrix.data, 0.0)
        matrix.eliminate_zeros()
        return cls(
            users=users,
            items=items,
            matrix=matrix.astype(np.float32).tocsr(),
            seen=seen.astype(np.float32).tocsr(),
            event_users=u,
            event_items=i,
            event_weights=w,
            event_times=t,
            item_categories=item_categories,
        )

    def binarized(self) -> sp.csr_matrix:
        """1.0 wherever the summed confidence is positive."""
        out = self.matrix.copy()
        out.data = np.ones_like(out.data)
        return out

    def subset_events(self, mask: np.ndarray) -> Interactions:
        """Same axes, only the events where ``mask`` is true (for time-based splits)."""
        mask = np.asarray(mask, dtype=bool)
        return Interactions.from_events(
            self.users.ids[self.event_users[mask]],
            self.items.ids[self.event_items[mask]],
            self.event_weights[mask],
            self.event_times[mask],
            users=self.users,
            items=self.items,
            item_categories=(
                None
                if self.item_categories is None
                else {str(k): v for k, v in zip(self.items.ids, self.item_categories, strict=True)}
            ),
        )
