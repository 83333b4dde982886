"""Turning behaviour events into confidence values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Default weight of each event type. ``rating`` is special: its weight is the event's value
#: (a 1-5 star rating weighs 1-5). ``dislike`` is negative: it pushes an item down and marks it
#: as seen so that it is never recommended back.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "purchase": 8.0,
    "rating": 1.0,
    "like": 4.0,
    "dislike": -4.0,
}

#: Event types whose weight is multiplied by the event's ``value``.
VALUE_TYPES: frozenset[str] = frozenset({"rating"})


@dataclass(frozen=True)
class EventWeights:
    """Weight per event type; types whose value scales the weight (``rating``) are listed apart."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    value_types: frozenset[str] = VALUE_TYPES

    def known(self, event_type: str) -> bool:
        return event_type in self.weights

    def weight_of(self, event_type: str, value: float | None) -> float:
        """One event's weight (the scalar twin of :meth:`weigh`, for the serving hot path)."""
        weight = self.weights.get(event_type, 0.0)
        if event_type in self.value_types and value is not None and value == value:  # not NaN
            return float(weight * value)
        return float(weight)

    def weigh(
        self, types: Sequence[str] | np.ndarray, values: Sequence[float | None] | np.ndarray
    ) -> np.ndarray:
        """Return one float32 weight per event; an event without a value counts as value 1."""
        types_arr = np.asarray(types, dtype=object)
        vals = np.array([1.0 if v is None else float(v) for v in values], dtype=np.float64)
        vals[np.isnan(vals)] = 1.0
        out = np.zeros(len(types_arr), dtype=np.float32)
        for event_type, weight in self.weights.items():
            mask = types_arr == event_type
            if not mask.any():
                continue
            if event_type in self.value_types:
                out[mask] = (weight * vals[mask]).astype(np.float32)
            else:
                out[mask] = np.float32(weight)
        return out
