"""The serving front: answers recommendation requests from the served model and live events.

The user's history is read from the event log at request time, so item-based models react to
events sent a moment ago without retraining. With a pipeline, a request goes feed or retrieve
-> rank -> rules -> reasons, each a component: ``holder.ModelHolder`` (the served state, the
registry watcher, catalogue sync), ``feed_keeper.FeedKeeper`` (feeds built ahead, dropped on
events), ``ranker.UserRanker`` (one user's ranking: what a feed keeps), ``rules_stage.RulesStage``
(filters, boosts, exploration, diversity, caps, paging) and ``reasons``; ``popularity``,
``similar`` and ``classic`` answer the other paths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from smartrec.config import Settings
from smartrec.domain.clock import now_ms
from smartrec.pipeline.filters import ItemFilter
from smartrec.pipeline.rules import PageState
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.serving.cache import TtlCache
from smartrec.serving.classic import ClassicAnswers
from smartrec.serving.erasures import COMMIT_MARGIN_MS, Erasures
from smartrec.serving.feed_keeper import FeedKeeper
from smartrec.serving.feeds import Feed, Ranked
from smartrec.serving.holder import ModelHolder, freeze_heap
from smartrec.serving.live_stats import LiveStats
from smartrec.serving.popularity import Popularity
from smartrec.serving.ranker import HISTORY_LIMIT, History, UserRanker
from smartrec.serving.reasons import PipelineReasons
from smartrec.serving.requests import (
    PopularRequest,
    RankRequest,
    RecommendRequest,
    SessionRequest,
    SimilarRequest,
)
from smartrec.serving.results import Recommendation, Results
from smartrec.serving.rules_stage import RulesStage
from smartrec.serving.shared_feeds import Generation
from smartrec.serving.similar import SimilarItems
from smartrec.serving.state import ServingState
from smartrec.storage.cache import FeedStore, SharedCache
from smartrec.storage.ports import Store

__all__ = ["COMMIT_MARGIN_MS", "HISTORY_LIMIT", "Recommendation", "RecommendationService"]


class RecommendationService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: ModelRegistry,
        shared_feeds: FeedStore | None = None,
        shared_cache: SharedCache | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._stop = threading.Event()
        self._running = False  # background work (watcher, feed builds) allowed
        self.erasures = Erasures(store)
        self.reasons = PipelineReasons()
        self.popularity = Popularity(
            store, settings.weights, settings.popular_cache_ttl_s, shared_cache
        )
        self.ranker = UserRanker(store, self.erasures, settings.feed_items)
        self.rules = RulesStage(store, self.reasons)
        self.feeds = FeedKeeper(settings, store, self.ranker, self.erasures, shared_feeds)
        self.live = LiveStats(store, settings.weights, settings.live_stats_interval_s, shared_cache)
        self.classic = ClassicAnswers(store, self.popularity, self.erasures)
        self.similar_items = SimilarItems(store, self.popularity)
        self.holder = ModelHolder(
            settings, store, registry, self.erasures, self._installed, self._clear_caches
        )
        self._user_cache: TtlCache[Results] = TtlCache(
            max_entries=settings.user_cache_entries, ttl_s=settings.user_cache_ttl_s
        )
        self._feeds = self.feeds.cache  # the feed cache (tests look into it)

    def _clear_caches(self) -> None:
        self.popularity.cache.clear()
        self._user_cache.clear()
        self.reasons.clear()

    def _installed(self, state: ServingState) -> None:
        self._clear_caches()
        self._feeds.clear()
        freeze_heap()
        if self._running:
            self.feeds.start_build(state, self._wanted)

    def _wanted(self, state: ServingState) -> bool:
        """Is a feed build for ``state`` still worth it (still served, not stopping)?"""
        return self.holder.state is state and not (self._running and self._stop.is_set())

    # ----------------------------------------------------------------- lifecycle
    @property
    def state(self) -> ServingState | None:
        return self.holder.state

    @property
    def model_version(self) -> str | None:
        state = self.holder.state
        return state.version if state else None

    def install(self, bundle: ModelBundle) -> None:
        """Make a bundle the serving model (tests and embedded use)."""
        self.holder.install(bundle)

    def refresh_catalog(self) -> int:
        return self.holder.refresh_catalog()

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        self.holder.catalog_changed(item_ids)

    def reload(self) -> bool:
        return self.holder.reload()

    def start(self) -> None:
        """Background work of a serving process: the registry watcher, the event poll that
        keeps feeds fresh, and feed builds after each install."""
        self._running = True
        self._stop.clear()
        self.holder.start_watcher(self._stop)
        self.feeds.start_poller(self._stop)
        self.live.start(self._stop, lambda: self.holder.state)
        state = self.holder.state
        if state is not None:
            self.feeds.start_build(state, self._wanted)

    def stop(self) -> None:
        self._stop.set()
        self._running = False
        self.holder.join()
        self.feeds.join()
        self.live.join()

    def ready(self) -> bool:
        """A model is loaded; or the registry says there is none to load, and there are events
        for the popularity fallback. A registry that cannot be reached with no model loaded is
        not ready (other replicas may serve the champion); with a model loaded, it is."""
        if self.holder.state is not None:
            return True
        return not self.holder.registry_down and self.store.count_events() > 0

    @property
    def registry_error(self) -> str | None:
        """Why the registry could not be asked for the champion (None: it could)."""
        return self.holder.last_reload_error if self.holder.registry_down else None

    # ----------------------------------------------------------------- feeds and erasures
    def events_arrived(self, user_ids: Iterable[str]) -> None:
        """Events of these users were stored by this process: their feeds are stale now."""
        self.feeds.events_arrived(user_ids)

    def user_erased(self, user_id: str) -> None:
        """The user and their events were erased (by this process): drop what is kept of them
        and stop using the served model's learned vector of the user. Other processes learn of
        it at their next event poll, or when they start."""
        self.erasures.record(user_id)
        if self._feeds.store is not None:
            self._feeds.store.invalidate([user_id])
        self._feeds.invalidate(user_id)
        self._user_cache.clear()

    def refresh_erasures(self) -> int:
        return self.erasures.refresh()

    def refresh_live_stats(self) -> bool:
        """Recount the served pipeline's windows now (the thread does it every interval)."""
        state = self.holder.state
        return state is not None and self.live.refresh(state)

    def live_stats_status(self) -> dict[str, Any]:
        return {
            "interval_s": self.live.interval_s,
            "refreshed": self.live.refreshed,
            "last": dict(self.live.last),
        }

    def poll_events(self) -> int:
        return self.feeds.poll()

    def feed_status(self) -> dict[str, Any]:
        return self.feeds.status()

    def build_feeds(self, limit: int, state: ServingState | None = None) -> int:
        state = state or self.holder.state
        return 0 if state is None else self.feeds.build(limit, state, self._wanted)

    # ----------------------------------------------------------------- personalised
    def recommend(self, request: RecommendRequest) -> Results:
        shown, item_filter = request.page_state(), request.item_filter()
        state = self.holder.state
        user_id = request.user_id
        if self.erasures.at:
            self.feeds.drop_erased(user_id)
        generation = None
        if state is not None and state.pipeline is not None and request.exclude_seen:
            feed = None
            if self.feeds.enabled:
                feed, generation = self._feeds.lookup(user_id, state)
            served = self._serve_feed(state, feed, request, shown, item_filter)
            if served is not None:
                return served
        # Read before the history: an event stored while this request runs cancels the feed
        # it would store (the generation moved), and the poll judges it by this time.
        # (Read from the shared store by the lookup only: other paths never store a feed.)
        read_from = (
            generation or Generation(self._feeds.local.generation(user_id), None),
            now_ms(),
        )
        history = self.store.user_history(user_id, HISTORY_LIMIT)
        if state is None or state.pipeline is None:
            return self.classic.recommend(state, request, history, shown, item_filter)
        key = None
        if not shown.shown and self.settings.user_cache_ttl_s > 0 and not self.feeds.enabled:
            # The history is part of the key: a new event means a new answer.
            key = repr((state.version, request, hash(tuple(history)), len(history)))
            cached = self._user_cache.get(key)
            if cached is not None:
                return cached
        results = self._recommend_pipeline(state, request, history, shown, item_filter, read_from)
        if key is not None and state is self.holder.state:
            self._user_cache.put(key, results)
        return results

    def recommend_fast(self, request: RecommendRequest) -> Results | None:
        """The answer from the user's feed when it can be given without blocking I/O (no
        database read): the API calls it on the event loop and falls back to
        :meth:`recommend` in a thread when it returns None."""
        state = self.holder.state
        if state is None or state.pipeline is None or not request.exclude_seen:
            return None
        if not self.feeds.enabled:
            return None
        shown, item_filter = request.page_state(), request.item_filter()
        if self.erasures.at:
            self.feeds.drop_erased(request.user_id)
        feed = self._feeds.cached(request.user_id, state.version)  # no I/O on the event loop
        return self._serve_feed(state, feed, request, shown, item_filter, read_rows=False)

    async def recommend_shared(self, request: RecommendRequest) -> Results | None:
        """The answer from the user's feed in the shared store (Redis), read without blocking
        the event loop: the API's next try after :meth:`recommend_fast`, before the thread
        pool. None when there is no shared store or no fresh feed in it."""
        state = self.holder.state
        if state is None or state.pipeline is None or not request.exclude_seen:
            return None
        if not self.feeds.enabled or self._feeds.store is None:
            return None
        shown, item_filter = request.page_state(), request.item_filter()
        feed = await self._feeds.lookup_async(request.user_id, state)
        return self._serve_feed(state, feed, request, shown, item_filter, read_rows=False)

    def _serve_feed(
        self,
        state: ServingState,
        feed: Feed | None,
        request: RecommendRequest,
        shown: PageState,
        item_filter: ItemFilter | None,
        read_rows: bool = True,
    ) -> Results | None:
        if feed is None:
            return None
        results = self.rules.apply(
            state, feed.ranked, request, shown, item_filter, from_feed=True, read_rows=read_rows
        )
        if results is not None:
            self.feeds.hits += 1
        return results

    def _recommend_pipeline(
        self,
        state: ServingState,
        request: RecommendRequest,
        history: History,
        shown: PageState,
        item_filter: ItemFilter | None,
        read_from: tuple[Generation, int],
    ) -> Results:
        """Retrieve -> rank -> rules. ``read_from``: the feed generation and the time, read
        before ``history``."""
        user_id, n, exclude_seen = request.user_id, request.n, request.exclude_seen
        self.feeds.misses += exclude_seen
        fresh = self._feeds.cached(user_id, state.version) is not None  # it could not answer
        category = request.category
        feedable = exclude_seen and category is None and not shown.shown
        if self.feeds.enabled and feedable and not fresh:
            # What a request with default retrieval ranks is the user's feed: keep it. A feed
            # is ranked over the whole catalogue and the visibility masks apply at request
            # time, so an item hidden now and shown again later is not lost from it.
            generation, built_ms = read_from
            ranked = self._rank_user(state, user_id, history, n, True, None, shown, False)
            feed = self.ranker.feed(state, ranked, built_ms, with_sources=False)
            self._feeds.put(user_id, feed, generation, state)
            results = self.rules.apply(state, ranked, request, shown, item_filter, from_feed=True)
            if results is not None:
                return results
        ranked = self._rank_user(state, user_id, history, n, exclude_seen, category, shown)
        results = self.rules.apply(state, ranked, request, shown, item_filter, from_feed=False)
        assert results is not None
        return results

    def _rank_user(
        self,
        state: ServingState,
        user_id: str,
        history: History,
        n: int,
        exclude_seen: bool,
        category: str | None,
        shown: PageState,
        masked: bool = True,
    ) -> Ranked:
        """Retrieval and ranking for one user (the expensive half, a feed when kept)."""
        shown_at = self._shown_positions(state, shown) if shown.shown else None
        return self.ranker.rank(
            state, user_id, history, n, exclude_seen, category, shown_at, masked
        )

    @staticmethod
    def _shown_positions(state: ServingState, shown: PageState) -> np.ndarray:
        """Serving-axis positions of items already shown in this session (hashes the whole
        catalogue once per state: never on the event loop)."""
        return state.positions_of(shown.shown)

    # ----------------------------------------------------------------- other paths
    def similar(self, request: SimilarRequest) -> Results:
        return self.similar_items.similar(self.holder.state, request)

    def session(self, request: SessionRequest) -> Results:
        return self.classic.session(self.holder.state, request.item_ids, request.n)

    def rank(self, request: RankRequest) -> Results:
        """The caller's list ordered for this user; items the model does not know go last, and
        items deleted from the catalogue are left out (they are in no answer)."""
        state = self.holder.state
        if state is None:
            return self.classic.rank_without_model(request.item_ids)
        ordered = [i for i in dict.fromkeys(request.item_ids) if i not in state.deleted]
        history = self.store.user_history(request.user_id, HISTORY_LIMIT)
        if state.pipeline is not None:
            return self.ranker.rank_given(state, request.user_id, history, ordered, self.reasons)
        return self.classic.rank(state, request.user_id, history, ordered)

    def popular(self, request: PopularRequest) -> Results:
        state = self.holder.state
        return self.popularity.popular(state, request.n, request.category, request.window)
