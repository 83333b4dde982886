"""The time split that every candidate, the champion and the tuner are judged on, and the scoring
on it: its own module so that the trainer and the tuner share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.domain.metrics import ranking_metrics
from smartrec.domain.splits import temporal_holdout
from smartrec.models import Recommender

#: The cut-off of the ranking metrics models are chosen by.
K = 10


@dataclass
class Validation:
    """The time split shared by every candidate and by the champion it must beat."""

    train: Interactions
    users: np.ndarray  # internal indices of users evaluated
    relevant: sp.csr_matrix  # len(users) x n_items
    cutoff_time: float

    @property
    def n_users(self) -> int:
        return len(self.users)


def temporal_split(data: Interactions, fraction: float) -> Validation:
    """Hold out the newest ``fraction`` of events; relevant = new positive items of users seen
    before (only items a user had not touched before the cutoff can be "new" relevant ones)."""
    mask = temporal_holdout(data.event_times, fraction)
    train = data.subset_events(mask)
    held = ~mask
    cutoff = float(data.event_times[held].min()) if held.any() else data.reference_time
    positive = held & (data.event_weights > 0)
    rel = sp.csr_matrix(
        (
            np.ones(int(positive.sum()), dtype=np.float32),
            (data.event_users[positive], data.event_items[positive]),
        ),
        shape=(data.n_users, data.n_items),
    )
    rel.sum_duplicates()
    rel.data[:] = 1.0
    rel = rel - rel.multiply(train.seen)
    rel.eliminate_zeros()
    rel = sp.csr_matrix(rel)
    has_history = np.diff(train.matrix.indptr) > 0
    has_relevant = np.diff(rel.indptr) > 0
    users = np.flatnonzero(has_history & has_relevant)
    return Validation(train=train, users=users, relevant=rel[users], cutoff_time=cutoff)


def evaluate(model: Recommender, val: Validation, batch: int = 1024) -> dict[str, float]:
    """Ranking metrics at :data:`K` of ``model`` (fitted on ``val.train``) on the held-out part."""
    if val.n_users == 0:
        return {}
    recs = []
    for start in range(0, val.n_users, batch):
        users = val.users[start : start + batch]
        ids, _ = model.recommend(
            val.train.matrix[users], K, users=users, exclude=val.train.seen[users]
        )
        recs.append(ids)
    return ranking_metrics(np.vstack(recs), val.relevant, K, n_items=val.train.n_items)
