"""Popular and trending items: the most events in the first window (ties: all time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from smartrec.pipeline.kernels import Scorer, array_scorer, first_allowed
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.retrievers.base import PipelineParts, Retriever, register
from smartrec.pipeline.stats import ItemStats

if TYPE_CHECKING:  # the spec validates kinds through the registry: no import back
    from smartrec.pipeline.spec import RetrieverConfig


@register
class PopularRetriever(Retriever):
    kind = "popular"

    def __init__(self, config: RetrieverConfig, parts: PipelineParts) -> None:
        super().__init__(config, parts)
        #: (the statistics it was computed from, item order, log counts of the first window)
        self._cache: tuple[ItemStats, np.ndarray, np.ndarray] | None = None

    @classmethod
    def stat_windows(cls, config: RetrieverConfig) -> list[str]:
        return list(config.windows)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(item order, log counts) of the first window, computed once per statistics."""
        stats = self.parts.stats
        held = self._cache
        if held is None or held[0] is not stats:
            window = self.config.windows[0]
            counts = stats.window_counts.get(window, stats.counts)
            # Ties (e.g. zero events in the window) broken by all-time popularity.
            order = np.lexsort((-stats.counts, -counts))
            held = (stats, order, np.log1p(counts))
            self._cache = held
        return held[1], held[2]

    def warm(self) -> None:
        self._arrays()

    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        order, log_counts = self._arrays()
        return first_allowed(order, self.config.n, blocked, allowed), array_scorer(log_counts)

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        # Popular over the whole catalogue in the window (a category is named only when the
        # request asked for one: then the list is popular within it).
        out: dict[str, Any] = {"kind": "popular_in", "window": self.config.windows[0]}
        if category is not None:
            out["category"] = category
        return out
