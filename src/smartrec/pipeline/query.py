"""One user's request and its candidates, on the model's item axis."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions

#: Items with fewer events than this are "cold": the content retriever's scope.
COLD_EVENTS = 5


@dataclass
class UserQuery:
    """One user's request, on the model's item axis."""

    conf: sp.csr_matrix  # 1 x n_items confidence (positive events)
    user: int  # model user index, -1 when unknown
    recent: list[int]  # known history items, newest first
    exclude: np.ndarray  # item indices never to return (seen, negative feedback)
    now: float | None = None  # epoch seconds for item age (None: the training reference)


@dataclass
class Candidates:
    items: np.ndarray  # (m,) item indices (may exceed n_items for items newer than the model)
    scores: np.ndarray  # (m, R) raw retriever scores, NaN when a retriever cannot score it
    ranks: np.ndarray  # (m, R) 1-based rank in the retriever's own list, NaN when absent
    names: list[str]  # retriever names, the R columns

    def __len__(self) -> int:
        return len(self.items)

    def found_by(self, j: int) -> list[int]:
        """Columns of the retrievers that found candidate ``j`` (NaN rank: not found)."""
        return [b for b, r in enumerate(self.ranks[j].tolist()) if r == r]


@dataclass
class RecentItems:
    """Every user's positive items, newest first, read from an interaction set once."""

    by_user: dict[int, list[int]]

    @classmethod
    def build(cls, data: Interactions) -> RecentItems:
        order = np.lexsort((-data.event_times, data.event_users))
        users = data.event_users[order]
        items = data.event_items[order]
        weights = data.event_weights[order]
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        ends = np.r_[starts[1:], len(order)]
        out: dict[int, list[int]] = {}
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            pos = items[s:e][weights[s:e] > 0]
            out[int(users[s])] = list(dict.fromkeys(pos.tolist()))
        return cls(out)

    def of(self, u: int) -> list[int]:
        return self.by_user.get(u, [])


# One RecentItems per live Interactions object (training and evaluation ask for many users of
# the same data); entries go when the data does. Keyed by id: Interactions is not hashable.
_RECENT: dict[int, tuple[weakref.ref[Interactions], RecentItems]] = {}


def recent_items(data: Interactions) -> RecentItems:
    key = id(data)
    held = _RECENT.get(key)
    if held is None or held[0]() is not data:

        def forget(_ref: weakref.ref[Interactions], key: int = key) -> None:
            _RECENT.pop(key, None)

        held = (weakref.ref(data, forget), RecentItems.build(data))
        _RECENT[key] = held
    return held[1]


def query_from_matrix(data: Interactions, u: int, exclude_seen: bool = True) -> UserQuery:
    """The query of a known user from an interaction matrix (offline evaluation, training)."""
    conf = data.matrix[u]
    lo, hi = data.seen.indptr[u], data.seen.indptr[u + 1]
    seen = data.seen.indices[lo:hi].astype(np.int64)
    return UserQuery(
        conf=sp.csr_matrix(conf),
        user=u,
        recent=recent_items(data).of(u),
        exclude=seen if exclude_seen else np.zeros(0, dtype=np.int64),
    )
