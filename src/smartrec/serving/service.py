"""Answering recommendation requests from the champion bundle and the live event log.

The user's history is read from the event log at request time, so item-based models react to
events sent a moment ago without retraining. The serving state (``state.py``) is one object
swapped by reference: a request holds the state it started with, so a hot swap never breaks it.
With a pipeline, requests go retrieve -> rank -> rules -> reasons (``_recommend_pipeline``).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from smartrec.config import Settings
from smartrec.domain import CatalogItem
from smartrec.domain.clock import erasure_key, now_ms
from smartrec.errors import NotFound
from smartrec.pipeline.core import COLD_EVENTS, Candidates, TrainedPipeline, UserQuery
from smartrec.pipeline.diversity import cap_per_category, category_vectors, mmr
from smartrec.pipeline.filters import ItemFilter, parse_filter
from smartrec.pipeline.rules import (
    PageState,
    boost_scores,
    decode_page_token,
    exploration_slots,
    interleave,
    item_hash,
)
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.registry.mlflow_registry import CHAMPION
from smartrec.serving.feeds import Feed, FeedCache, Ranked
from smartrec.serving.state import (
    DEFAULT_HIDDEN_ATTRIBUTE,
    Recommendation,
    Results,
    ServingState,
    TtlCache,
    negative_row,
    parse_window,
    positive_first,
    visible,
)
from smartrec.storage.sql import SqlStore

log = logging.getLogger(__name__)

HISTORY_LIMIT = 500
#: Users ranked per ranker call when feeds are built ahead of requests.
FEED_BATCH = 64
#: A feed holds at least this many items (popular ones fill a user with fewer candidates).
FEED_MIN_ITEMS = 10
#: Events are stamped ``received_at`` before their batch commits; the event poll looks back
#: this far so that a late commit is not missed.
COMMIT_MARGIN_MS = 5_000


def _freeze_heap() -> None:
    """Move what is alive now (the loaded model: millions of objects at a million items) out
    of the cyclic collector's sight. Otherwise every full collection walks all of it, a pause
    of tens of milliseconds that lands in some request's latency. Unfrozen first, so that
    cyclic garbage of the model this one replaces is still collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


#: A narrow filter looks past the candidates at this many popular items at most, in chunks.
FILTER_SCAN_LIMIT = 20_000
FILTER_SCAN_CHUNK = 1_000


class RecommendationService:
    def __init__(self, settings: Settings, store: SqlStore, registry: ModelRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.weights = settings.weights
        self._state: ServingState | None = None
        self._mask_tables: dict[tuple[int, tuple[str, ...]], tuple[Any, _MaskTable]] = {}
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._popular_cache: TtlCache[list[tuple[str, float]]] = TtlCache(
            max_entries=256, ttl_s=settings.popular_cache_ttl_s
        )
        self._user_cache: TtlCache[Results] = TtlCache(
            max_entries=settings.user_cache_entries, ttl_s=settings.user_cache_ttl_s
        )
        self._catalog_mark: int | None = None  # newest items.updated_at applied
        self._applied_at_mark: set[str] = set()
        self.last_reload_error: str | None = None
        self._feeds = FeedCache(settings.feed_entries, settings.feed_max_age_s)
        self._feeds_on = settings.feeds_enabled
        #: Erased users (``erasure_key``) -> when (epoch ms): a model whose training read the
        #: event log before then must not use what it learnt of them. Every erasure, by any
        #: process (loaded at each install, polled with the events).
        self._erased: dict[str, int] = {}
        self._erasure_mark = 0  # newest erased_at seen
        self._feed_hits = 0
        self._feed_misses = 0
        self._event_mark: int | None = None  # newest events.received_at polled
        self._feed_build: dict[str, Any] = {}
        self._running = False  # background work (watcher, feed builds) allowed
        self._feed_poller: threading.Thread | None = None
        self._builder: threading.Thread | None = None

    def _clear_caches(self) -> None:
        self._popular_cache.clear()
        self._user_cache.clear()
        self._mask_tables.clear()

    # ----------------------------------------------------------------- model lifecycle
    @property
    def state(self) -> ServingState | None:
        return self._state

    @property
    def model_version(self) -> str | None:
        state = self._state
        return state.version if state else None

    def install(self, bundle: ModelBundle) -> None:
        """Make a bundle the serving model (tests and embedded use)."""
        mark = self.store.catalog_mark()
        self._erased = self.store.erasures()
        self._erasure_mark = max(self._erased.values(), default=0)
        state = ServingState(bundle, self.store.catalog(bundle.items.to_list()), self.weights)
        if state.pipeline is not None and state.pipeline.content is not None:
            # Items added after the training read the catalogue (while it ran, or before this
            # process started) are in no model: content retrieval reaches them once they are on
            # the serving axis, as items added from now on are.
            known = bundle.items.lookup
            later = {i: row for i, row in self.store.catalog().items() if i not in known}
            if later:
                self._apply_rows(state, list(later))
        self._state = state  # one reference assignment: in-flight requests keep the old one
        self._catalog_mark, self._applied_at_mark = mark, set()
        self.refresh_catalog()  # changes committed while the catalog was being read
        self._clear_caches()
        self._feeds.clear()
        _freeze_heap()
        if self._running:
            self._start_feed_build(state)

    def refresh_catalog(self) -> int:
        """Apply item rows changed since the last look (by any process); returns how many.

        Availability, titles and categories set through another replica reach this one within
        one watcher interval.
        """
        state = self._state
        if state is None or self._catalog_mark is None:
            self._catalog_mark = self.store.catalog_mark()
            return 0
        mark = self._catalog_mark
        # ">= mark" also catches a write committed late within the last millisecond seen;
        # rows already applied at exactly that millisecond are skipped.
        rows = self.store.catalog_changes(mark)
        fresh = [i for i, ts in rows if ts > mark or i not in self._applied_at_mark]
        if fresh:
            self._apply_rows(state, fresh)
            self._clear_caches()
        if rows:
            newest = max(ts for _, ts in rows)
            at_newest = {i for i, ts in rows if ts == newest}
            self._applied_at_mark = (
                at_newest if newest > mark else self._applied_at_mark | at_newest
            )
            self._catalog_mark = newest
        return len(fresh)

    def reload(self) -> bool:
        """Load the champion if it moved; True when a new version is now served."""
        with self._swap_lock:
            version = self.registry.alias_version(CHAMPION)
            if version is None or version == self.model_version:
                return False
            started = time.perf_counter()
            bundle = self.registry.load(version)
            self.install(bundle)
            self.last_reload_error = None
            log.info(
                "serving model version %s (%s), loaded in %.2fs",
                version,
                bundle.algorithm,
                time.perf_counter() - started,
            )
            return True

    def start_watcher(self) -> None:
        interval = self.settings.reload_interval_s
        if interval <= 0 or self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload()
                    self.refresh_catalog()
                    self.refresh_erasures()
                except Exception as exc:  # keep serving the current model
                    self.last_reload_error = f"{type(exc).__name__}: {exc}"
                    log.warning("champion reload failed: %s", self.last_reload_error)

        self._watcher = threading.Thread(target=loop, name="smartrec-reload", daemon=True)
        self._watcher.start()

    def start(self) -> None:
        """Background work of a serving process: the registry watcher, the event poll that
        keeps feeds fresh, and feed builds after each install."""
        self._running = True
        self._stop.clear()
        self.start_watcher()
        poll = self.settings.feed_poll_interval_s
        if self._feeds_on and poll > 0 and self._feed_poller is None:
            self._event_mark = self.store.event_mark()

            def polling() -> None:
                while not self._stop.wait(poll):
                    try:
                        self.poll_events()
                    except Exception as exc:
                        log.warning("event poll failed: %s: %s", type(exc).__name__, exc)

            self._feed_poller = threading.Thread(target=polling, name="smartrec-feeds", daemon=True)
            self._feed_poller.start()
        state = self._state
        if state is not None:
            self._start_feed_build(state)

    # ----------------------------------------------------------------- feeds
    def events_arrived(self, user_ids: Iterable[str]) -> None:
        """Events of these users were stored by this process: their feeds are stale now."""
        for user_id in set(user_ids):
            self._feeds.invalidate(user_id)

    def user_erased(self, user_id: str) -> None:
        """The user and their events were erased (by this process): drop what it keeps of them,
        and stop using the served model's learned vector of the user (the next training has
        none). Other processes learn of it at their next event poll, or when they start."""
        self._erased[erasure_key(user_id)] = now_ms()
        self._feeds.invalidate(user_id)
        self._user_cache.clear()

    def refresh_erasures(self) -> int:
        """Learn of erasures made by other processes (the event poll and the registry watcher
        call it); returns how many were new."""
        found = self.store.erasures(self._erasure_mark - COMMIT_MARGIN_MS)
        fresh = {k: at for k, at in found.items() if self._erased.get(k) != at}
        if fresh:
            self._erased.update(fresh)
            self._erasure_mark = max(self._erasure_mark, min(max(fresh.values()), now_ms()))
        return len(fresh)

    def _erased_at(self, user_id: str) -> int | None:
        return self._erased.get(erasure_key(user_id)) if self._erased else None

    def _model_user(self, state: ServingState, user_id: str) -> int:
        """The user's row in the served model (-1: none, or erased after its training read
        the event log)."""
        erased = self._erased_at(user_id)
        if erased is not None and erased >= state.snapshot_ms:
            return -1
        return state.users.get(user_id)

    def _drop_erased_feed(self, user_id: str) -> None:
        """A feed built before the user's erasure (by another process) is dropped."""
        erased = self._erased_at(user_id)
        if erased is not None:
            self._feeds.invalidate(user_id, erased, COMMIT_MARGIN_MS)

    def poll_events(self) -> int:
        """Drop the feeds of users with events stored since the last poll, by any process.

        Polls from a little before the newest ``received_at`` seen: an event is stamped before
        its batch commits, so a late commit is still found. Returns how many feeds it dropped.
        """
        if self._event_mark is None:
            self._event_mark = self.store.event_mark()
            return 0
        mark = self._event_mark
        self.refresh_erasures()
        rows = self.store.users_with_events_since(mark - COMMIT_MARGIN_MS)
        dropped = 0
        for user_id, received in rows:
            dropped += self._feeds.invalidate(user_id, received, COMMIT_MARGIN_MS)
        if rows:
            # Capped at this clock: a writer whose clock runs ahead must not push the mark past
            # events that writers with a correct clock are still committing.
            newest = max(r for _, r in rows)
            self._event_mark = max(mark, min(newest, int(time.time() * 1000)))
        return dropped

    def feed_status(self) -> dict[str, Any]:
        return {
            "enabled": self._feeds_on,
            "cached": len(self._feeds),
            "hits": self._feed_hits,
            "misses": self._feed_misses,
            "build": dict(self._feed_build),
        }

    def _start_feed_build(self, state: ServingState) -> None:
        limit = self.settings.feed_precompute_users
        if not self._feeds_on or limit <= 0 or state.pipeline is None:
            return

        def run() -> None:
            try:
                self.build_feeds(limit, state)
            except Exception as exc:  # serving goes on: feeds are then built on demand
                self._feed_build["error"] = f"{type(exc).__name__}: {exc}"
                log.warning("feed build failed: %s", self._feed_build["error"])

        self._builder = threading.Thread(target=run, name="smartrec-feed-build", daemon=True)
        self._builder.start()

    def build_feeds(self, limit: int, state: ServingState | None = None) -> int:
        """Build feeds for the ``limit`` most recently active users, most recent first, in
        batches that share one ranker call; returns how many were stored. Stops early when
        another model is installed or the service stops."""
        state = state or self._state
        if state is None or state.pipeline is None or not self._feeds_on:
            return 0
        pipeline = state.pipeline
        started = time.perf_counter()
        status: dict[str, Any] = {"version": state.version, "target": 0, "built": 0}
        self._feed_build = status
        users = self.store.active_users(limit)
        status["target"] = len(users)
        for start in range(0, len(users), FEED_BATCH):
            if self._state is not state or (self._running and self._stop.is_set()):
                status["stopped"] = True
                break
            batch: list[tuple[str, int, int, UserQuery, np.ndarray, Candidates]] = []
            for user_id in users[start : start + FEED_BATCH]:
                if user_id in self._feeds:
                    continue  # a request built it meanwhile
                generation = self._feeds.generation(user_id)
                built_ms = int(time.time() * 1000)
                history = self.store.user_history(user_id, HISTORY_LIMIT)
                query, allowed = self._user_query(
                    state, user_id, history, True, None, PageState.empty()
                )
                cands = pipeline.retrieve(query, None)  # unmasked, as in _recommend_pipeline
                batch.append((user_id, generation, built_ms, query, allowed, cands))
            all_scores = pipeline.score_many([(b[5], b[3]) for b in batch])
            for (user_id, generation, built_ms, query, allowed, cands), scores in zip(
                batch, all_scores, strict=True
            ):
                ranked = self._ranked(state, cands, scores, query, allowed, FEED_MIN_ITEMS)
                feed = self._feed(state, ranked, built_ms)
                status["built"] += self._feeds.put(user_id, feed, generation)
            status["seconds"] = round(time.perf_counter() - started, 2)
        status["done"] = True
        status["seconds"] = round(time.perf_counter() - started, 2)
        log.info(
            "feeds: %d of %d users built in %.1fs", status["built"], len(users), status["seconds"]
        )
        return int(status["built"])

    def stop(self) -> None:
        self._stop.set()
        self._running = False
        for thread in (self._watcher, self._feed_poller, self._builder):
            if thread is not None:
                thread.join(timeout=5)
        self._watcher = self._feed_poller = self._builder = None

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        state = self._state
        if state is not None and item_ids:
            self._apply_rows(state, item_ids)
        self._clear_caches()

    def _apply_rows(self, state: ServingState, item_ids: Sequence[str]) -> None:
        """Apply changed catalog rows. With content retrieval they are read with their text,
        as training read them: items it appends are vectorised from it, and items whose
        vectorised content changed are re-vectorised, so content retrieval and similar items
        follow edits without a retraining."""
        with_text = state.pipeline is not None and state.pipeline.content is not None
        rows = self.store.catalog(item_ids, with_text=with_text)
        state.apply_catalog(rows, rows if with_text else None)

    def ready(self) -> bool:
        """A model is loaded, or there are events for the popularity fallback."""
        return self._state is not None or self.store.count_events() > 0

    # ----------------------------------------------------------------- requests
    def recommend(
        self,
        user_id: str,
        n: int,
        exclude_seen: bool = True,
        category: str | None = None,
        page_token: str | None = None,
        filter: str | None = None,
        diversity: float | None = None,
        max_per_category: int | None = None,
        exploration: float | None = None,
    ) -> Results:
        shown = decode_page_token(page_token)
        item_filter = parse_filter(filter) if filter else None
        state = self._state
        request = RequestRules(diversity, max_per_category, exploration)
        if self._erased:
            self._drop_erased_feed(user_id)
        if state is not None and state.pipeline is not None and exclude_seen:
            served = self._from_feed(state, user_id, n, category, shown, item_filter, request)
            if served is not None:
                return served
        # Read before the history: an event stored while this request runs cancels the feed
        # it would store (the generation moved), and the poll judges it by this time.
        read_from = (self._feeds.generation(user_id), int(time.time() * 1000))
        history = self.store.user_history(user_id, HISTORY_LIMIT)
        if state is not None and state.pipeline is not None:
            key = None
            if not shown.shown and self.settings.user_cache_ttl_s > 0 and not self._feeds_on:
                # The history is part of the key: a new event means a new answer.
                key = repr(
                    (
                        state.version,
                        user_id,
                        n,
                        exclude_seen,
                        category,
                        filter,
                        diversity,
                        max_per_category,
                        exploration,
                        hash(tuple(history)),
                        len(history),
                    )
                )
                cached = self._user_cache.get(key)
                if cached is not None:
                    return cached
            results = self._recommend_pipeline(
                state,
                user_id,
                history,
                n,
                exclude_seen,
                category,
                shown,
                item_filter,
                request,
                read_from,
            )
            if key is not None and state is self._state:
                self._user_cache.put(key, results)
            return results
        want = n + len(shown.shown) + 1  # one more than the page: is there a next page?
        if item_filter is not None:
            want = max(want * 4, 200)  # the filter runs after ranking: rank more
        if state is None:
            seen: set[str] = set()
            if exclude_seen:
                seen = {h[0] for h in history}
                if len(history) >= HISTORY_LIMIT:
                    seen = set(self.store.user_items(user_id))
            ranked = self._popular_from_log(None, category, want + len(seen))
            items = [
                Recommendation(i, s, [{"kind": "popular"}]) for i, s in ranked if i not in seen
            ]
            return self._page(items, shown, n, None, item_filter)
        conf, seen_row, hist_idx = state.user_rows(history)
        if exclude_seen and len(history) >= HISTORY_LIMIT:
            # Scoring looks at the newest events only, but "seen" means ever seen.
            seen_row = state.items_row(self.store.user_items(user_id))
        uidx = self._model_user(state, user_id)
        allowed = state.allowed(category)[: state.n_model]
        exclude = seen_row if exclude_seen else negative_row(conf, seen_row)
        recs: list[Recommendation] = []
        if conf.nnz > 0 or uidx >= 0:
            model = state.bundle.model
            ids, scores = model.recommend(
                conf, want, users=np.array([uidx]), exclude=exclude, allowed=allowed
            )
            keep = (ids[0] >= 0) & (scores[0] > 0)
            ids_k, scores_k = ids[0][keep], scores[0][keep]
            reasons = self._because(state, hist_idx, conf, ids_k)
            recs = [
                Recommendation(state.item_ids[i], float(s), r)
                for i, s, r in zip(ids_k.tolist(), scores_k.tolist(), reasons, strict=True)
            ]
        if len(recs) < want:
            recs += self._popular_fill(state, want - len(recs), allowed, exclude, recs, category)
        return self._page(recs, shown, n, state.version, item_filter)

    def recommend_fast(
        self,
        user_id: str,
        n: int,
        exclude_seen: bool = True,
        category: str | None = None,
        page_token: str | None = None,
        filter: str | None = None,
        diversity: float | None = None,
        max_per_category: int | None = None,
        exploration: float | None = None,
    ) -> Results | None:
        """The answer from the user's feed when it can be given without blocking I/O (no
        database read): the API calls it on the event loop and falls back to
        :meth:`recommend` in a thread when it returns None."""
        state = self._state
        if state is None or state.pipeline is None or not exclude_seen or not self._feeds_on:
            return None
        shown = decode_page_token(page_token)
        item_filter = parse_filter(filter) if filter else None
        request = RequestRules(diversity, max_per_category, exploration)
        if self._erased:
            self._drop_erased_feed(user_id)
        return self._from_feed(
            state, user_id, n, category, shown, item_filter, request, read_rows=False
        )

    def _from_feed(
        self,
        state: ServingState,
        user_id: str,
        n: int,
        category: str | None,
        shown: PageState,
        item_filter: ItemFilter | None,
        request: RequestRules,
        read_rows: bool = True,
    ) -> Results | None:
        if not self._feeds_on:
            return None
        feed = self._feeds.get(user_id, state.version)
        if feed is None:
            return None
        results = self._apply_rules(
            state,
            feed.ranked,
            n,
            category,
            shown,
            item_filter,
            request,
            from_feed=True,
            read_rows=read_rows,
        )
        if results is not None:
            self._feed_hits += 1
        return results

    # ----------------------------------------------------------------- the pipeline
    def _recommend_pipeline(
        self,
        state: ServingState,
        user_id: str,
        history: Sequence[tuple[str, str, float | None]],
        n: int,
        exclude_seen: bool,
        category: str | None,
        shown: PageState,
        item_filter: ItemFilter | None,
        request: RequestRules,
        read_from: tuple[int, int],
    ) -> Results:
        """Retrieve -> rank -> rules: filter, boosts, diversity, exploration, no repeats.
        ``read_from``: the feed generation and the time, read before ``history``."""
        pipeline = state.pipeline
        assert pipeline is not None
        self._feed_misses += exclude_seen
        fresh = self._feeds.get(user_id, state.version) is not None  # it could not answer
        if self._feeds_on and exclude_seen and category is None and not shown.shown and not fresh:
            # What a request with default retrieval ranks is the user's feed: keep it. A feed
            # is ranked over the whole catalogue and the visibility masks apply at request
            # time, so an item hidden now and shown again later is not lost from it.
            generation, built_ms = read_from
            ranked = self._rank_user(state, user_id, history, n, True, None, shown, masked=False)
            self._feeds.put(user_id, self._feed(state, ranked, built_ms), generation)
            results = self._apply_rules(
                state, ranked, n, None, shown, item_filter, request, from_feed=True
            )
            if results is not None:
                return results
        ranked = self._rank_user(state, user_id, history, n, exclude_seen, category, shown)
        results = self._apply_rules(
            state, ranked, n, category, shown, item_filter, request, from_feed=False
        )
        assert results is not None
        return results

    def _feed(self, state: ServingState, ranked: Ranked, built_ms: int) -> Feed:
        """What a feed keeps: the best items, with what their answers need that no request
        changes (the history items behind their reasons, the retrievers that found them, the
        items' hashes)."""
        pipeline = state.pipeline
        assert pipeline is not None
        kept = ranked.trim(self.settings.feed_items)
        similar = self._similar_sources(pipeline, kept.recent, kept.items)
        content = self._content_sources(pipeline, kept.recent, kept.items)
        pairs = zip(similar, content, strict=True)
        sources = np.array(
            [[-1 if a is None else a, -1 if b is None else b] for a, b in pairs], dtype=np.int64
        ).reshape(-1, 2)
        hashes = np.fromiter(
            (item_hash(state.item_ids[i]) for i in kept.items.tolist()),
            dtype=np.uint32,
            count=len(kept.items),
        )
        found: np.ndarray | None = None
        n_retrievers = kept.cands.ranks.shape[1] if kept.cands.ranks.ndim == 2 else 0
        if n_retrievers <= 64:  # one bit each (more: worked out per page from the ranks)
            found = np.zeros(len(kept.items), dtype=np.uint64)
            if len(kept.cands):
                bits = np.left_shift(np.uint64(1), np.arange(n_retrievers, dtype=np.uint64))
                found[: len(kept.cands)] = np.bitwise_or.reduce(
                    np.where(np.isnan(kept.cands.ranks), np.uint64(0), bits), axis=1
                )
        kept = dataclasses.replace(kept, sources=sources, hashes=hashes, found=found)
        return Feed(state.version, kept, built_ms)

    def _rank_user(
        self,
        state: ServingState,
        user_id: str,
        history: Sequence[tuple[str, str, float | None]],
        n: int,
        exclude_seen: bool,
        category: str | None,
        shown: PageState,
        masked: bool = True,
    ) -> Ranked:
        """Retrieval and ranking for one user (the expensive half, a feed when kept); not
        ``masked``: over every item, visible now or not."""
        query, allowed = self._user_query(state, user_id, history, exclude_seen, category, shown)
        pipeline = state.pipeline
        assert pipeline is not None
        cands = pipeline.retrieve(query, allowed if masked else None)
        scores, _ = pipeline.score(cands, query)
        return self._ranked(state, cands, scores, query, allowed, n)

    def _user_query(
        self,
        state: ServingState,
        user_id: str,
        history: Sequence[tuple[str, str, float | None]],
        exclude_seen: bool,
        category: str | None,
        shown: PageState,
    ) -> tuple[UserQuery, np.ndarray]:
        conf, seen_row, hist_idx = state.user_rows(history)
        ever: list[str] | None = None
        if exclude_seen and len(history) >= HISTORY_LIMIT:
            ever = self.store.user_items(user_id)
            seen_row = state.items_row(ever)
        # Items with negative feedback are never shown, whatever exclude_seen says.
        blocked_row = seen_row if exclude_seen else negative_row(conf, seen_row)
        blocked = [blocked_row.indices.astype(np.int64)]
        if state.extra_index:  # items newer than the model: not on its axis, not in the rows
            blocked.append(self._extra_blocked(state, history, exclude_seen, ever))
        if shown.shown:
            blocked.append(self._shown_positions(state, shown))
        query = UserQuery(
            conf=conf,
            user=self._model_user(state, user_id),
            recent=positive_first(hist_idx, conf),
            exclude=np.unique(np.concatenate(blocked)),
            now=time.time(),
        )
        return query, state.allowed(category)

    def _ranked(
        self,
        state: ServingState,
        cands: Candidates,
        scores: np.ndarray,
        query: UserQuery,
        allowed: np.ndarray,
        n: int,
    ) -> Ranked:
        items = cands.items
        popular = np.zeros(len(items), dtype=bool)
        if len(items) < n + 1:  # too few candidates (new user, narrow filter): popular items
            extra = self._pipeline_fill(state, n + 1 - len(items), allowed, query.exclude, items)
            if extra.size:
                base = float(scores.min()) - 1.0 if scores.size else 0.0
                items = np.concatenate([items, extra])
                scores = np.concatenate(
                    [scores, base - np.arange(len(extra), dtype=np.float32) * 1e-3]
                )
                popular = np.concatenate([popular, np.ones(len(extra), dtype=bool)])
        return Ranked(items, scores, popular, cands, list(query.recent), query.exclude)

    def _apply_rules(
        self,
        state: ServingState,
        ranked: Ranked,
        n: int,
        category: str | None,
        shown: PageState,
        item_filter: ItemFilter | None,
        request: RequestRules,
        from_feed: bool,
        read_rows: bool = True,
    ) -> Results | None:
        """Business rules over a ranking. From a feed (``from_feed``), the category and the
        items already shown are masked here, and None means "the feed cannot answer this"
        (too few items left, or catalogue rows needed while ``read_rows`` is off)."""
        pipeline = state.pipeline
        assert pipeline is not None
        rules = pipeline.spec.rules
        cands = ranked.cands
        items, scores = ranked.items, ranked.scores
        popular_fill = ranked.popular
        keep = np.ones(len(items), dtype=bool)
        allowed = state.allowed(category)
        if from_feed:
            # The catalogue may have changed since the feed was built (hidden, unavailable):
            # the live masks decide, as they do for the online path's retrieval.
            keep &= allowed[items]
            if shown.shown:  # the feed's own items, not the catalogue's: this is the event loop
                hashes = ranked.hashes
                if hashes is None:
                    hashes = np.array([item_hash(state.item_ids[i]) for i in items.tolist()])
                wanted = np.fromiter(shown.shown, dtype=np.uint32, count=len(shown.shown))
                keep &= ~np.isin(hashes, wanted)
            if int(keep.sum()) < n + 1:
                return None  # the online path looks further (or fills with popular items)
        # Rules that read item rows fetch them for the candidates only.
        needs_rows = item_filter is not None or rules.promoted_filter is not None
        if needs_rows and not read_rows:
            return None
        ids = [state.item_ids[i] for i in items.tolist()] if needs_rows or rules.promoted else []
        rows = self.store.catalog(ids) if needs_rows else {}
        if item_filter is not None:
            keep &= item_filter.mask([rows.get(i) for i in ids])
            if int(keep.sum()) < n + 1:  # a narrow filter: look past the candidates
                if from_feed:
                    return None
                more = self._filter_fill(
                    state, item_filter, n + 1 - int(keep.sum()), allowed, ranked.exclude, items
                )
                if more:
                    base = float(scores.min()) - 1.0 if scores.size else 0.0
                    items = np.concatenate([items, np.array([p for p, _ in more])])
                    scores = np.concatenate(
                        [scores, base - np.arange(len(more), dtype=np.float32) * 1e-3]
                    )
                    popular_fill = np.concatenate([popular_fill, np.ones(len(more), dtype=bool)])
                    keep = np.concatenate([keep, np.ones(len(more), dtype=bool)])
                    ids += [row.item_id for _, row in more]
                    rows.update({row.item_id: row for _, row in more})
        # Boosts: new and promoted items.
        born = self._born(state, items)
        is_new = (time.time() - born) <= rules.new_days * 86400.0
        promoted = np.zeros(len(items), dtype=bool)
        if rules.promoted:
            promoted = np.array([i in rules.promoted for i in ids], dtype=bool)
        if rules.promoted_filter is not None:
            promoted |= parse_filter(rules.promoted_filter).mask([rows.get(i) for i in ids])
        final = scores
        if rules.boost_new != 1.0 or rules.boost_promoted != 1.0:
            multipliers = np.ones(len(items), dtype=np.float32)
            multipliers[is_new] *= rules.boost_new
            multipliers[promoted] *= rules.boost_promoted
            final = boost_scores(scores, multipliers)
        by_score = np.argsort(-final, kind="stable")
        order: list[int] = by_score[keep[by_score]].tolist()
        # Exploration: a share of the page for new items the ranking would not have shown.
        share = rules.exploration if request.exploration is None else request.exploration
        slots = exploration_slots(n, share)
        explore: list[int] = []
        if slots:
            ranked_in = set(order[: n - len(slots)])
            pool = [j for j in order if is_new[j] and j not in ranked_in]
            explore = self._by_content(pipeline, cands, pool)[: len(slots)]
            order = [j for j in order if j not in set(explore)]
        # Diversity over the head of the list.
        lam = rules.diversity if request.diversity is None else request.diversity
        cap = (
            rules.max_per_category if request.max_per_category is None else request.max_per_category
        )
        head_n = min(len(order), max(5 * n, 50))
        if (lam < 1.0 or cap) and head_n > 1:
            head = np.asarray(order[:head_n])
            cats = [self._categories_of(state, int(items[j])) for j in head.tolist()]
            picked = np.arange(len(head))
            if lam < 1.0:
                picked = mmr(final[head], category_vectors(cats), len(head), lam)
            if cap:
                picked = cap_per_category(picked, cats, cap, len(head))
            order = head[picked].tolist() + order[head_n:]
        positions = interleave(order, explore, slots, n)
        page = [j if j >= 0 else explore[-1 - j] for j in positions] if explore else positions
        remaining = len(order) + len(explore) - len(page)
        recs = self._pipeline_reasons(
            state,
            pipeline,
            cands,
            ranked.recent,
            items,
            page,
            final,
            popular_fill,
            is_new,
            promoted,
            set(explore),
            category,
            ranked.sources if from_feed else None,
            ranked.found if from_feed else None,
        )
        if from_feed and ranked.hashes is not None:
            new_shown = shown.after_hashes(ranked.hashes[np.asarray(page, dtype=np.int64)].tolist())
        else:
            new_shown = shown.after(r.item_id for r in recs)
        more_left = remaining > 0 or ranked.truncated
        token = new_shown.encode() if more_left and recs else None
        return Results(recs, state.version, token)

    @staticmethod
    def _extra_blocked(
        state: ServingState,
        history: Sequence[tuple[str, str, float | None]],
        exclude_seen: bool,
        ever: list[str] | None,
    ) -> np.ndarray:
        """Positions of items newer than the model that the user touched (``exclude_seen``) or
        gave negative feedback to overall: ``user_rows`` sees the model's items only."""
        extra = state.extra_index
        totals: dict[int, float] = {}
        for item_id, event_type, value in history:
            pos = extra.get(item_id)
            if pos is not None:
                totals[pos] = totals.get(pos, 0.0) + state.weights.weight_of(event_type, value)
        out = [p for p, w in totals.items() if exclude_seen or w <= 0]
        out += [p for i in ever or () if (p := extra.get(i)) is not None]
        return np.asarray(out, dtype=np.int64)

    @staticmethod
    def _by_content(pipeline: TrainedPipeline, cands: Candidates, pool: list[int]) -> list[int]:
        """Exploration candidates, the most similar in content to the user's history first.

        New items have no model scores, so the ranker gives them (nearly) equal scores and
        their order would be the catalogue's; ties keep the ranking's order."""
        col = next((k for k, r in enumerate(pipeline.spec.retrievers) if r.kind == "content"), None)
        if col is None or not pool:
            return pool

        def key(j: int) -> float:
            value = float(cands.scores[j, col]) if j < len(cands) else float("nan")
            return -value if value == value else float("inf")

        return sorted(pool, key=key)

    def _filter_fill(
        self,
        state: ServingState,
        item_filter: ItemFilter,
        count: int,
        allowed: np.ndarray,
        exclude: np.ndarray,
        taken: np.ndarray,
    ) -> list[tuple[int, CatalogItem]]:
        """Items passing a filter that retrieval did not find, most popular first; reads item
        rows a chunk at a time and gives up after FILTER_SCAN_LIMIT items."""
        skip = set(exclude.tolist()) | set(taken.tolist())
        out: list[tuple[int, CatalogItem]] = []
        order = state.popular_order
        for start in range(0, min(len(order), FILTER_SCAN_LIMIT), FILTER_SCAN_CHUNK):
            chunk = [
                i
                for i in order[start : start + FILTER_SCAN_CHUNK].tolist()
                if allowed[i] and i not in skip
            ]
            rows = self.store.catalog([state.item_ids[i] for i in chunk])
            for i in chunk:
                row = rows.get(state.item_ids[i])
                if row is not None and item_filter.matches(row):
                    out.append((i, row))
                    if len(out) >= count:
                        return out
        return out

    def _shown_positions(self, state: ServingState, shown: PageState) -> np.ndarray:
        """Serving-axis positions of items already shown in this session (by hash)."""
        hashes = state.__dict__.get("_hashes")
        if hashes is None:
            hashes = np.fromiter(
                (item_hash(i) for i in state.item_ids), dtype=np.uint32, count=state.n_total
            )
            state.__dict__["_hashes"] = hashes
        if len(hashes) < state.n_total:  # items appended since
            tail = [item_hash(i) for i in state.item_ids[len(hashes) :]]
            hashes = np.concatenate([hashes, np.asarray(tail, dtype=np.uint32)])
            state.__dict__["_hashes"] = hashes
        wanted = np.fromiter(shown.shown, dtype=np.uint32, count=len(shown.shown))
        return np.flatnonzero(np.isin(hashes, wanted)).astype(np.int64)

    @staticmethod
    def _born(state: ServingState, items: np.ndarray) -> np.ndarray:
        """Publication time, else first event time, else when the catalogue first stored it,
        per item (NaN-safe: unknown = long ago), so that an item added without a publication
        time is new until it has been in the catalogue for ``new_days``. Worked out for the whole
        axis once per catalogue change (``published`` and ``created`` are replaced together,
        never edited in place), then looked up per request."""
        cached = state.__dict__.get("_born")
        if cached is None or cached[0] is not state.published:
            pub = state.published
            born = pub.copy()
            pipeline = state.pipeline
            if pipeline is not None:
                m = min(len(pub), pipeline.n_items)
                first = np.asarray(pipeline.stats.first_seen[:m], dtype=np.float64)
                born[:m] = np.where(np.isnan(pub[:m]), first, pub[:m])
            created = state.created[: len(born)]
            born = np.where(np.isnan(born), created, born)
            cached = (pub, np.where(np.isnan(born), -np.inf, born))
            state.__dict__["_born"] = cached
        return cached[1][items]

    @staticmethod
    def _categories_of(state: ServingState, idx: int) -> list[str]:
        return [c for c, mask in state.categories.items() if mask[idx]]

    def _pipeline_fill(
        self,
        state: ServingState,
        count: int,
        allowed: np.ndarray,
        exclude: np.ndarray,
        taken: np.ndarray,
    ) -> np.ndarray:
        skip = set(exclude.tolist()) | set(taken.tolist())
        out: list[int] = []
        for idx in state.popular_order[: 4 * (count + len(skip)) + 100].tolist():
            if len(out) >= count:
                break
            if allowed[idx] and idx not in skip:
                out.append(idx)
        return np.asarray(out, dtype=np.int64)

    def _pipeline_reasons(
        self,
        state: ServingState,
        pipeline: TrainedPipeline,
        cands: Candidates,
        recent: list[int],
        items: np.ndarray,
        page: list[int],
        final: np.ndarray,
        popular_fill: np.ndarray,
        is_new: np.ndarray,
        promoted: np.ndarray,
        explored: set[int],
        category: str | None = None,
        sources: np.ndarray | None = None,
        found: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Readable and parseable reasons: which retriever found it and why (``sources``: the
        history items behind them, and ``found``: the retrievers' bit masks, when a feed has
        them already)."""
        out: list[Recommendation] = []
        by_mask = self._retrievers_by_mask(pipeline, tuple(cands.names))
        at = np.asarray(page, dtype=np.int64)
        page_items = items[at]
        similar_src: list[int | None]
        content_src: list[int | None]
        if sources is not None:
            picked = sources[at].tolist()
            similar_src = [a if a >= 0 else None for a, _ in picked]
            content_src = [b if b >= 0 else None for _, b in picked]
        else:
            similar_src = self._similar_sources(pipeline, recent, page_items)
            content_src = self._content_sources(pipeline, recent, page_items)
        if found is not None:
            by = [by_mask[m] for m in found[at].tolist()]
        else:
            bits = [sum(1 << b for b in cands.found_by(j)) if j < len(cands) else 0 for j in page]
            by = [by_mask[m] for m in bits]
        fill = popular_fill[at].tolist()
        new = is_new[at].tolist()
        promo = promoted[at].tolist()
        scores = final[at].tolist()
        for pos, (j, idx) in enumerate(zip(page, page_items.tolist(), strict=True)):
            reasons: list[dict[str, Any]] = []
            if j in explored:
                reasons.append({"kind": "new", "exploration": True})
            reasons += self._found_reasons(
                state, by[pos], similar_src[pos], content_src[pos], category
            )
            if fill[pos]:
                reasons.append({"kind": "popular"})
            if new[pos] and j not in explored:
                reasons.append({"kind": "new"})
            if promo[pos]:
                reasons.append({"kind": "promoted"})
            if not reasons:
                reasons.append({"kind": "personalized", "algorithm": "pipeline"})
            out.append(Recommendation(state.item_ids[idx], scores[pos], reasons))
        return out

    def _retrievers_by_mask(self, pipeline: TrainedPipeline, names: tuple[str, ...]) -> Any:
        """Mask -> the retriever specs it stands for, filled as masks are met, kept for the
        pipeline being served (dropped with it: see :meth:`_clear_caches`)."""
        key = (id(pipeline), names)
        held = self._mask_tables.get(key)
        if held is None or held[0] is not pipeline:
            specs = [next(r for r in pipeline.spec.retrievers if r.name == n) for n in names]
            table = _MaskTable(specs)
            if len(self._mask_tables) >= 4:  # a model swap clears it; this bounds the rest
                self._mask_tables.clear()
            held = (pipeline, table)  # the pipeline is held so that its id is not reused
            self._mask_tables[key] = held
        return held[1]

    @staticmethod
    def _found_reasons(
        state: ServingState,
        by: list[Any],
        similar: int | None,
        content: int | None,
        category: str | None,
    ) -> list[dict[str, Any]]:
        """Why the retrievers ``by`` found an item, once per cause (two retrievers with the
        same cause read once)."""
        reasons: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in by:
            if r.kind == "neighbours" and similar is not None:
                reasons[("similar_to", similar)] = {
                    "kind": "similar_to",
                    "item_id": state.item_ids[similar],
                    "title": state.titles[similar],
                }
            elif r.kind == "content" and content is not None:
                reasons[("content", content)] = {
                    "kind": "similar_to",
                    "item_id": state.item_ids[content],
                    "title": state.titles[content],
                    "via": "content",
                }
            elif r.kind == "embedding":
                reasons[("personalized", r.model)] = {"kind": "personalized", "algorithm": r.model}
            elif r.kind == "popular":
                # Popular over the whole catalogue in the window (a category is named only
                # when the request asked for one: then the list is popular within it).
                reason: dict[str, Any] = {"kind": "popular_in", "window": r.windows[0]}
                if category is not None:
                    reason["category"] = category
                reasons[("popular_in", r.windows[0])] = reason
        return list(reasons.values())

    @staticmethod
    def _similar_sources(
        pipeline: TrainedPipeline, recent: list[int], page_items: np.ndarray
    ) -> list[int | None]:
        """The recent history item that lifts each page item most (neighbours model)."""
        out: list[int | None] = [None] * len(page_items)
        r = next((r for r in pipeline.spec.retrievers if r.kind == "neighbours"), None)
        inside = page_items < pipeline.n_items
        if r is None or not recent or not inside.any():
            return out
        src = np.asarray(recent[:50], dtype=np.int64)
        contrib = np.asarray(pipeline.models[r.name].contributions(src, page_items[inside]))
        best = contrib.argmax(axis=0)
        for k, pos in enumerate(np.flatnonzero(inside).tolist()):
            if contrib[best[k], k] > 0:
                out[pos] = int(src[best[k]])
        return out

    @staticmethod
    def _content_sources(
        pipeline: TrainedPipeline, recent: list[int], page_items: np.ndarray
    ) -> list[int | None]:
        """The recent history item most similar in content to each page item."""
        out: list[int | None] = [None] * len(page_items)
        index = pipeline.content
        if index is None or not recent or len(page_items) == 0:
            return out
        total = index.matrix.shape[0]
        src = np.asarray([i for i in recent[:20] if i < total], dtype=np.int64)
        ok = page_items < total
        if src.size == 0 or not ok.any():
            return out
        a, b = index.matrix[src], index.matrix[page_items[ok]]
        sims = a @ b.T
        sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
        best = sims.argmax(axis=0)
        for k, pos in enumerate(np.flatnonzero(ok).tolist()):
            if sims[best[k], k] > 0:
                out[pos] = int(src[best[k]])
        return out

    def _because(
        self,
        state: ServingState,
        hist_idx: list[int],
        conf: sp.csr_matrix,
        rec_idx: np.ndarray,
        kind: str = "personalized",
    ) -> list[list[dict[str, Any]]]:
        """Name the history item that contributes most to each recommendation."""
        model = state.bundle.model
        base: dict[str, Any] = {"kind": kind, "algorithm": model.name}
        if not hist_idx or not model.supports_similar or rec_idx.size == 0:
            return [[dict(base)] for _ in rec_idx]
        hist = np.asarray(hist_idx[:50], dtype=np.int64)  # the 50 most recent items
        row = dict(zip(conf.indices.tolist(), conf.data.tolist(), strict=True))
        weights = np.array([row.get(h, 0.0) for h in hist.tolist()], dtype=np.float32)
        contrib = model.contributions(hist, rec_idx) * np.maximum(weights, 0)[:, None]
        best = contrib.argmax(axis=0)
        out: list[list[dict[str, Any]]] = []
        for j in range(len(rec_idx)):
            if contrib[best[j], j] > 0:
                src = int(hist[best[j]])
                out.append(
                    [
                        dict(base),
                        {
                            "kind": "similar_to",
                            "item_id": state.item_ids[src],
                            "title": state.titles[src],
                        },
                    ]
                )
            else:
                out.append([dict(base)])
        return out

    def _popular_fill(
        self,
        state: ServingState,
        count: int,
        allowed: np.ndarray,
        exclude: sp.csr_matrix | None,
        already: list[Recommendation],
        category: str | None,
    ) -> list[Recommendation]:
        taken = {r.item_id for r in already}
        excluded = set(exclude.indices.tolist()) if exclude is not None else set()
        reason = (
            {"kind": "popular"}
            if category is None
            else {"kind": "popular_in", "category": category}
        )
        out: list[Recommendation] = []
        for idx in state.popular_order:
            if len(out) >= count:
                break
            if not allowed[idx] or idx in excluded:
                continue
            if state.popular_scores[idx] <= 0:
                break  # the rest never had an event: not "popular" by any measure
            item_id = state.item_ids[idx]
            if item_id in taken:
                continue
            out.append(Recommendation(item_id, float(state.popular_scores[idx]), [dict(reason)]))
        return out

    def similar(self, item_id: str, n: int, category: str | None = None) -> Results:
        state = self._state
        if state is not None and item_id in state.deleted:
            raise NotFound(f"item {item_id!r} was deleted")
        if state is not None and state.pipeline is not None:
            pos = state.position(item_id)
            cold = pos >= state.n_model or (
                pos >= 0 and state.pipeline.stats.counts[pos] < COLD_EVENTS
            )
            if cold and state.pipeline.content is not None:
                return self._similar_by_content(state, item_id, pos, n, category)
        if state is None or item_id not in state.items:
            known = self.store.catalog([item_id]).get(item_id)
            if known is None or known.deleted:
                raise NotFound(f"item {item_id!r} does not exist")
            # A catalog item the model has not learned yet: popular items of its categories.
            cat = category or (known.categories[0] if known.categories else None)
            return self.popular(n, cat, None, exclude={item_id})
        idx = state.items.get(item_id)
        allowed = state.allowed(category)[: state.n_model]
        model = state.bundle.model
        if not model.supports_similar:
            cat = category or next((c for c, m in state.categories.items() if m[idx]), None)
            return self.popular(n, cat, None, exclude={item_id})
        ids, scores = model.similar_items(np.array([idx]), n, allowed=allowed)
        keep = ids[0] >= 0
        title = state.titles[idx]
        recs = [
            Recommendation(
                state.item_ids[i],
                float(s),
                [{"kind": "similar_to", "item_id": item_id, "title": title}],
            )
            for i, s in zip(ids[0][keep].tolist(), scores[0][keep].tolist(), strict=True)
        ]
        return Results(recs, state.version)

    def _similar_by_content(
        self, state: ServingState, item_id: str, pos: int, n: int, category: str | None
    ) -> Results:
        """Items like a new or little-known item, by title, categories, attributes and text."""
        pipeline = state.pipeline
        assert pipeline is not None and pipeline.content is not None
        allowed = state.allowed(category)
        index = pipeline.content
        mask = np.zeros(len(index), dtype=bool)
        m = min(len(index), len(allowed))
        mask[:m] = allowed[:m]
        found = index.similar(item_id, n, allowed=mask)
        title = state.titles[pos] if pos >= 0 else None
        reason = {"kind": "similar_to", "item_id": item_id, "title": title, "via": "content"}
        recs = [Recommendation(i, float(s), [dict(reason)]) for i, s in found]
        if len(recs) < n:
            cat = category or next(
                (c for c, mk in state.categories.items() if pos >= 0 and mk[pos]), None
            )
            taken = {r.item_id for r in recs} | {item_id}
            recs += self.popular(n - len(recs), cat, None, exclude=taken).items
        return Results(recs, state.version)

    def session(self, item_ids: Sequence[str], n: int) -> Results:
        """Recommendations for an anonymous visitor from the items they just touched."""
        state = self._state
        given = set(item_ids)
        if state is None:
            return self.popular(n, None, None, exclude=given)
        idx = state.items.index(item_ids)
        idx = np.array(list(dict.fromkeys(idx[idx >= 0].tolist())), dtype=np.int64)
        allowed = state.available[: state.n_model].copy()
        if idx.size == 0:
            return self.popular(n, None, None, exclude=given)
        allowed[idx] = False
        row = sp.csr_matrix(
            (np.ones(len(idx), dtype=np.float32), (np.zeros(len(idx), dtype=np.int64), idx)),
            shape=(1, len(state.items)),
        )
        ids, scores = state.bundle.model.recommend(row, n, users=np.array([-1]), allowed=allowed)
        keep = (ids[0] >= 0) & (scores[0] > 0)
        ids_k = ids[0][keep]
        reasons = self._because(state, idx.tolist(), row, ids_k, kind="session")
        recs = [
            Recommendation(state.item_ids[i], float(s), r)
            for i, s, r in zip(ids_k.tolist(), scores[0][keep].tolist(), reasons, strict=True)
        ]
        if len(recs) < n:
            recs += self._popular_fill(state, n - len(recs), allowed, None, recs, None)
        return Results(recs, state.version)

    def rank(self, user_id: str, item_ids: Sequence[str]) -> Results:
        """The caller's list ordered for this user; items the model does not know go last, and
        items deleted from the catalogue are left out (they are in no answer)."""
        state = self._state
        gone: frozenset[str] | set[str] = state.deleted if state is not None else set()
        if state is None:
            rows = self.store.catalog(item_ids)
            gone = {i for i, row in rows.items() if row.deleted}
        ordered = [i for i in dict.fromkeys(item_ids) if i not in gone]
        if state is None:
            pop = dict(self._popular_from_log(None, None, None))
            ranked = sorted(ordered, key=lambda i: -pop.get(i, 0.0))
            return Results(
                [Recommendation(i, pop.get(i, 0.0), [{"kind": "popular"}]) for i in ranked], None
            )
        history = self.store.user_history(user_id, HISTORY_LIMIT)
        if state.pipeline is not None:
            return self._rank_pipeline(state, user_id, history, ordered)
        conf, _, _ = state.user_rows(history)
        uidx = self._model_user(state, user_id)
        idx = state.items.index(ordered)
        if conf.nnz > 0 or uidx >= 0:
            scores = state.bundle.model.score(conf, np.array([uidx]))[0]
            kind: dict[str, Any] = {"kind": "personalized", "algorithm": state.bundle.algorithm}
        else:
            scores = state.popular_scores
            kind = {"kind": "popular"}
        known = [
            (i, float(scores[j])) for i, j in zip(ordered, idx.tolist(), strict=True) if j >= 0
        ]
        unknown = [i for i, j in zip(ordered, idx.tolist(), strict=True) if j < 0]
        known.sort(key=lambda t: -t[1])
        recs = [Recommendation(i, s, [dict(kind)]) for i, s in known]
        recs += [Recommendation(i, 0.0, [{"kind": "unknown_item"}]) for i in unknown]
        return Results(recs, state.version)

    def _rank_pipeline(
        self,
        state: ServingState,
        user_id: str,
        history: Sequence[tuple[str, str, float | None]],
        ordered: list[str],
    ) -> Results:
        """The caller's list scored by the pipeline's ranker, with the same reasons."""
        pipeline = state.pipeline
        assert pipeline is not None
        conf, _, hist_idx = state.user_rows(history)
        query = UserQuery(
            conf=conf,
            user=self._model_user(state, user_id),
            recent=positive_first(hist_idx, conf),
            exclude=np.zeros(0, dtype=np.int64),
            now=time.time(),
        )
        positions = [state.position(i) for i in ordered]
        known = [(i, p) for i, p in zip(ordered, positions, strict=True) if p >= 0]
        unknown = [i for i, p in zip(ordered, positions, strict=True) if p < 0]
        items = np.asarray([p for _, p in known], dtype=np.int64)
        recs: list[Recommendation] = []
        if items.size:
            cands = pipeline.retrieve(query, None, items=items)
            scores, _ = pipeline.score(cands, query)
            order = np.argsort(-scores, kind="stable").tolist()
            born = self._born(state, items)
            is_new = (time.time() - born) <= pipeline.spec.rules.new_days * 86400.0
            recs = self._pipeline_reasons(
                state,
                pipeline,
                cands,
                query.recent,
                items,
                order,
                scores,
                np.zeros(len(items), dtype=bool),
                is_new,
                np.zeros(len(items), dtype=bool),
                set(),
            )
        recs += [Recommendation(i, 0.0, [{"kind": "unknown_item"}]) for i in unknown]
        return Results(recs, state.version)

    def popular(
        self,
        n: int,
        category: str | None,
        window: str | None,
        exclude: set[str] | None = None,
    ) -> Results:
        exclude = exclude or set()
        state = self._state
        reason: dict[str, Any] = {"kind": "popular"}
        if category is not None:
            reason = {"kind": "popular_in", "category": category}
        if window is not None:
            reason = {**reason, "kind": "popular_in", "window": window}
        if window is None and state is not None:
            allowed = state.allowed(category)
            out: list[Recommendation] = []
            for idx in state.popular_order:
                if len(out) >= n:
                    break
                if not allowed[idx]:
                    continue
                item_id = state.item_ids[idx]
                if item_id not in exclude:
                    out.append(
                        Recommendation(item_id, float(state.popular_scores[idx]), [dict(reason)])
                    )
            return Results(out, state.version)
        seconds = parse_window(window) if window is not None else None
        ranked = self._popular_from_log(seconds, category, n + len(exclude))
        items = [Recommendation(i, s, [dict(reason)]) for i, s in ranked if i not in exclude][:n]
        return Results(items, state.version if state else None)

    def _popular_from_log(
        self, window_s: float | None, category: str | None, limit: int | None
    ) -> list[tuple[str, float]]:
        """Weighted event counts from the log, in a window ending at the newest event."""
        key = f"{window_s}"
        ranking = self._popular_cache.get(key)
        if ranking is None:
            since = None
            if window_s is not None:
                newest = self.store.newest_event_ms()
                since = None if newest is None else newest - int(window_s * 1000)
            rows = self.store.item_activity(since)
            totals: dict[str, float] = {}
            if rows:
                w = self.weights.weigh([r[1] for r in rows], [r[2] for r in rows])
                for (item_id, _t, _v, count), weight in zip(rows, w.tolist(), strict=True):
                    if weight > 0:
                        totals[item_id] = totals.get(item_id, 0.0) + weight * count
            ranking = sorted(totals.items(), key=lambda t: (-t[1], t[0]))
            self._popular_cache.put(key, ranking)
        # The catalog filter reads item rows: cache its answer too, for the same time (all of it
        # is dropped when the catalog changes).
        filtered_key = f"{window_s}|{category}|{limit}"
        filtered = self._popular_cache.get(filtered_key)
        if filtered is None:
            filtered = self._filter_catalog(ranking, category, limit)
            filtered = filtered if limit is None else filtered[:limit]
            self._popular_cache.put(filtered_key, filtered)
        return filtered

    def _filter_catalog(
        self, ranking: list[tuple[str, float]], category: str | None, limit: int | None
    ) -> list[tuple[str, float]]:
        """Keep available items (of the category); reads the catalog in chunks, stops early."""
        out: list[tuple[str, float]] = []
        chunk = 500
        state = self._state
        hidden = state.hidden_attribute if state is not None else DEFAULT_HIDDEN_ATTRIBUTE
        for start in range(0, len(ranking), chunk):
            part = ranking[start : start + chunk]
            catalog = self.store.catalog([i for i, _ in part])
            for item_id, score in part:
                item = catalog.get(item_id)
                if item is None or not visible(item, hidden):
                    continue
                if category is not None and category not in item.categories:
                    continue
                out.append((item_id, score))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _page(
        self,
        items: list[Recommendation],
        shown: PageState,
        n: int,
        version: str | None,
        item_filter: ItemFilter | None = None,
    ) -> Results:
        """The next n items not shown before in this session (and passing the filter)."""
        fresh = [r for r in items if not shown.seen(r.item_id)] if shown.shown else items
        if item_filter is not None and fresh:
            rows = self.store.catalog([r.item_id for r in fresh])
            fresh = [r for r in fresh if (row := rows.get(r.item_id)) and item_filter.matches(row)]
        page = fresh[:n]
        token = shown.after(r.item_id for r in page).encode() if len(fresh) > n else None
        return Results(page, version, token)


class _MaskTable:
    """Bit mask (bit r: the r-th retriever found the item) -> those retrievers' specs, built
    as masks are met: a handful in practice, never 2^R up front."""

    def __init__(self, specs: list[Any]) -> None:
        self.specs = specs
        self._lists: dict[int, list[Any]] = {}

    def __getitem__(self, mask: int) -> list[Any]:
        found = self._lists.get(mask)
        if found is None:
            found = [r for b, r in enumerate(self.specs) if mask >> b & 1]
            self._lists[mask] = found
        return found


@dataclass(frozen=True)
class RequestRules:
    """Per-request overrides of the pipeline's rules (None = the pipeline's default)."""

    diversity: float | None = None
    max_per_category: int | None = None
    exploration: float | None = None
