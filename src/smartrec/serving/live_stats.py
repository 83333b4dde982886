"""Trending that moves: the served pipeline's windowed item counts kept current.

A pipeline counts each item's positive events in its windows (``windows = ["7d", "30d"]`` of
the popular retriever): the first window orders the popular retriever's candidates, and every
window is a ranker feature (``pop.7d``). Trained once, those counts would stay as they were at
training; here they are counted again from the event log every ``SMARTREC_LIVE_STATS_INTERVAL_S``
seconds, over the window ending at the newest event (as at training, so a replayed data set
keeps its windows), and swapped into the served pipeline. So items that take off now reach
users' candidates and move up in the ranking before the next training. Retrievers that say
so (:meth:`Retriever.live_update`: the co-visitation retriever) fold the events since training
into what they serve at the same time: sessions that went on since pair their items.

With a shared cache (Redis) one process of the deployment runs the aggregate per period and the
others read its result. A recount that takes long (a large log) spaces the next ones out
(:data:`THROTTLE`): trending then moves less often, and requests do not slow down. Feeds built
before a refresh keep their candidates until they are rebuilt (an event of the user, or
``SMARTREC_FEED_MAX_AGE_S``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from smartrec.domain import EventWeights, Interactions
from smartrec.pipeline.windows import window_seconds
from smartrec.serving.cache import shared_or_compute
from smartrec.serving.popularity import item_activity
from smartrec.serving.state import ServingState
from smartrec.storage.cache import SharedCache
from smartrec.storage.ports import EventStore

log = logging.getLogger(__name__)

#: The thread waits at least this many times its last recount's duration: on a large log
#: (about 2 s a window at a million active items) it takes at most a twentieth of a core,
#: and trending moves less often, instead of slowing requests.
THROTTLE = 20


class LiveStats:
    def __init__(
        self,
        store: EventStore,
        weights: EventWeights,
        interval_s: float,
        shared: SharedCache | None = None,
    ) -> None:
        self.store = store
        self.weights = weights
        self.interval_s = interval_s
        self.shared = shared
        self.refreshed = 0
        self.last: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        #: (model version, events read, newest time) of the last retrievers' update.
        self._log_signature: tuple[str, int, float | None] | None = None

    def counts(self, window_s: float) -> list[tuple[str, float]]:
        """Each item's positive events in the window ending at the newest event."""
        return shared_or_compute(
            self.shared,
            f"counts:{window_s}",
            self.interval_s,
            lambda: item_activity(self.store, self.weights, window_s, False, ordered=False),
        )

    def refresh(self, state: ServingState) -> bool:
        """Count the windows again (and update the retrievers that follow live events); serve
        what changed. True when anything did."""
        pipeline = state.pipeline
        if pipeline is None:
            return False
        started = time.perf_counter()
        stats = pipeline.stats
        lookup = state.items.lookup
        live: dict[str, np.ndarray] = {}
        for window, trained in stats.window_counts.items():
            ranking = self.counts(window_seconds(window))
            at = np.fromiter((lookup.get(i, -1) for i, _ in ranking), np.int64, len(ranking))
            values = np.fromiter((c for _, c in ranking), np.float64, len(ranking))
            inside = (at >= 0) & (at < len(trained))
            counts = np.zeros_like(trained)
            counts[at[inside]] = values[inside]
            live[window] = counts
        changed = any(not np.array_equal(live[w], stats.window_counts[w]) for w in live)
        if changed:
            pipeline.use_stats(dataclasses.replace(stats, window_counts=live))
        changed |= self._retrievers(state, stats.reference_time)
        if changed:
            self.refreshed += 1
        self.last = {
            "version": state.version,
            "changed": changed,
            "seconds": round(time.perf_counter() - started, 4),
            "at_ms": int(time.time() * 1000),
        }
        return changed

    def _retrievers(self, state: ServingState, after: float) -> bool:
        """Retrievers updated between trainings (co-visitation: sessions that went on since)
        get the events since the training's newest, with what they need before it."""
        pipeline = state.pipeline
        assert pipeline is not None
        live = [(r, r.live_lookback_s()) for r in pipeline.retrievers]
        lookbacks = [s for _, s in live if s is not None]
        if not lookbacks or after <= 0:
            return False
        since_ms = int((after - max(lookbacks)) * 1000)
        snap = self.store.snapshot(since_ms=since_ms)
        # The same events as at the last recount (count and newest time): nothing to redo.
        signature = (state.version, len(snap), snap.timestamps[-1] if len(snap) else None)
        if signature == self._log_signature:
            return False
        self._log_signature = signature
        data = Interactions.from_events(
            snap.user_ids,
            snap.item_ids,
            self.weights.weigh(snap.types, snap.values),
            snap.timestamps,
            items=state.items,
        )
        changed = False
        for retriever, lookback in live:
            if lookback is not None:
                changed |= retriever.live_update(data, after)
        return changed

    def start(self, stop: threading.Event, current: Callable[[], ServingState | None]) -> None:
        """Refresh the state ``current()`` serves every ``interval_s`` until ``stop`` is set."""
        if self.interval_s <= 0 or self._thread is not None:
            return

        def run() -> None:
            while not stop.wait(self.next_wait()):
                state = current()
                if state is None:
                    continue
                try:
                    self.refresh(state)
                except Exception as exc:  # serving goes on with the counts it has
                    log.warning("live statistics refresh failed: %s: %s", type(exc).__name__, exc)

        self._thread = threading.Thread(target=run, name="smartrec-live-stats", daemon=True)
        self._thread.start()

    def next_wait(self) -> float:
        """The interval, or longer after a slow recount (see :data:`THROTTLE`)."""
        return max(self.interval_s, THROTTLE * float(self.last.get("seconds", 0.0)))

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
