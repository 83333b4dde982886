"""Most popular items, optionally time-decayed or windowed: the baseline and cold-start fallback.

Time is measured against the newest event in the data (``Interactions.reference_time``), never
the wall clock, so a model trained on a historic dump ranks the way it would have at that time
and refitting the same data always gives the same scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.errors import ModelError
from smartrec.models.base import Recommender

SECONDS_PER_DAY = 86_400.0


class Popularity(Recommender):
    """One global score per item: (decayed) event count or weight sum; the same for every user."""

    name = "popularity"
    supports_similar = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        for key in ("half_life_days", "window_days"):
            value = self.params[key]
            if value is not None and not float(value) > 0:
                raise ModelError(f"{self.name}: {key} must be > 0 or None, got {value!r}")
        self.scores = np.zeros(0, dtype=np.float32)
        self.reference_time = 0.0

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"half_life_days": None, "window_days": None, "use_weights": False}

    def _fit(self, data: Interactions) -> None:
        ref = data.reference_time
        self.reference_time = ref
        if data.n_events == 0:
            # Interactions built straight from a matrix carry no events (and no time): count
            # users per item, or sum confidence, so the model still works without decay.
            source = data.matrix if self.params["use_weights"] else data.binarized()
            counts = np.asarray(source.sum(axis=0), dtype=np.float64).ravel()
            self.scores = counts.astype(np.float32)
            return
        items = np.asarray(data.event_items, dtype=np.int64)
        weights = np.asarray(data.event_weights, dtype=np.float64)
        times = np.asarray(data.event_times, dtype=np.float64)
        keep = weights > 0  # negative events (dislikes, returns) never make an item popular
        window = self.params["window_days"]
        if window is not None:
            keep &= times >= ref - float(window) * SECONDS_PER_DAY
        values = weights if self.params["use_weights"] else np.ones_like(weights)
        half_life = self.params["half_life_days"]
        if half_life is not None:
            age = np.maximum(ref - times, 0.0)
            values = values * np.power(0.5, age / (float(half_life) * SECONDS_PER_DAY))
        scores = np.bincount(items[keep], weights=values[keep], minlength=data.n_items)
        self.scores = scores.astype(np.float32)

    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        # A writable copy per row (not a broadcast view) so callers may mask scores in place.
        return np.tile(self.scores, (user_items.shape[0], 1))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "scores": self.scores,
            "reference_time": np.asarray(self.reference_time, dtype=np.float64),
        }

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores = np.asarray(arrays["scores"], dtype=np.float32)
        self.reference_time = float(arrays["reference_time"])
