"""Answering recommendation requests from the champion bundle and the live event log.

The user's history is read from the event log at request time, so item-based models react to
events sent a moment ago without retraining. The serving state is one immutable object swapped
by reference: a request holds the state it started with, so a hot swap never breaks it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import scipy.sparse as sp

from smartrec.config import Settings
from smartrec.domain import EventWeights, IdMap
from smartrec.errors import NotFound, ValidationFailed
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.registry.mlflow_registry import CHAMPION
from smartrec.storage.ports import CatalogItem
from smartrec.storage.sql import SqlStore

log = logging.getLogger(__name__)

WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HISTORY_LIMIT = 500
MAX_WINDOW_S = 100 * 365 * 86400


def parse_window(window: str) -> float:
    """'7d' -> seconds. Units: s, m, h, d, w."""
    match = WINDOW_RE.match(window)
    if not match or float(match.group(1)) <= 0:
        raise ValidationFailed(
            f"window {window!r} is not a duration like 30m, 24h, 7d or 2w", field="window"
        )
    seconds = float(match.group(1)) * WINDOW_UNITS[match.group(2)]
    if seconds > MAX_WINDOW_S:  # also keeps the SQL bound inside a 64-bit integer
        raise ValidationFailed(f"window {window!r} is longer than 100 years", field="window")
    return seconds


V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small thread-safe LRU whose entries expire: bounded memory whatever the keys."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self.ttl_s:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Results:
    items: list[Recommendation]
    model_version: str | None
    next_page_token: str | None = None


class ServingState:
    """A loaded bundle plus catalog masks aligned with the model's item axis."""

    def __init__(self, bundle: ModelBundle, catalog: dict[str, CatalogItem], weights: EventWeights):
        self.bundle = bundle
        self.version = str(bundle.meta.get("version", "local"))
        self.items: IdMap = bundle.items
        self.item_ids: list[str] = bundle.items.to_list()  # plain list: the fastest lookup
        self.users: IdMap = bundle.users
        self.weights = weights
        self._plain_weights = {
            t: float(w) for t, w in weights.weights.items() if t not in weights.value_types
        }
        self._scaled_weights = {
            t: float(w) for t, w in weights.weights.items() if t in weights.value_types
        }
        n = len(self.items)
        self.available = np.ones(n, dtype=bool)
        self.titles: list[str | None] = [None] * n
        self.categories: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.apply_catalog(catalog)
        pop_scores = bundle.popularity.score(sp.csr_matrix((1, n), dtype=np.float32))[0]
        self.popular_order = np.argsort(-pop_scores, kind="stable")
        self.popular_scores = pop_scores

    def apply_catalog(self, catalog: dict[str, CatalogItem]) -> None:
        """Update availability, titles and category masks for the given items (copy-on-write)."""
        idx = self.items.index(catalog.keys())
        with self._lock:
            available = self.available.copy()
            titles = list(self.titles)
            categories = {k: v.copy() for k, v in self.categories.items()}
            for pos, item in zip(idx.tolist(), catalog.values(), strict=True):
                if pos < 0:
                    continue
                available[pos] = item.available
                titles[pos] = item.title
                for mask in categories.values():
                    mask[pos] = False
                for cat in item.categories:
                    if cat not in categories:
                        categories[cat] = np.zeros(len(self.items), dtype=bool)
                    categories[cat][pos] = True
            self.available, self.titles, self.categories = available, titles, categories

    def items_row(self, item_ids: Sequence[str]) -> sp.csr_matrix:
        """A 1 x n_items indicator row of the given (known) items."""
        index = self.items.lookup
        cols = np.array(sorted({index[i] for i in item_ids if i in index}), dtype=np.int32)
        data = np.ones(len(cols), dtype=np.float32)
        return sp.csr_matrix((data, cols, np.array([0, len(cols)])), shape=(1, len(self.items)))

    def allowed(self, category: str | None) -> np.ndarray:
        if category is None:
            return self.available
        mask = self.categories.get(category)
        if mask is None:
            return np.zeros(len(self.items), dtype=bool)
        return self.available & mask

    def user_rows(
        self, history: Sequence[tuple[str, str, float | None]]
    ) -> tuple[sp.csr_matrix, sp.csr_matrix, list[int]]:
        """(confidence row, seen row, known history item indices) for one user's events."""
        n = len(self.items)
        if not history:
            empty = sp.csr_matrix((1, n), dtype=np.float32)
            return empty, empty, []
        # Hot path (every request, up to HISTORY_LIMIT events): plain dict look-ups only.
        index = self.items.lookup
        plain, scaled = self._plain_weights, self._scaled_weights
        totals: dict[int, float] = {}  # insertion order = newest first
        for item_id, event_type, value in history:
            pos = index.get(item_id)
            if pos is None:
                continue
            weight = plain.get(event_type)
            if weight is None:
                weight = scaled.get(event_type, 0.0) * (1.0 if value is None else value)
            totals[pos] = totals.get(pos, 0.0) + weight
        if not totals:
            empty = sp.csr_matrix((1, n), dtype=np.float32)
            return empty, empty, []
        recent = list(totals)
        order = sorted(recent)
        values = np.fromiter((totals[p] for p in order), dtype=np.float32, count=len(order))
        cols = np.asarray(order, dtype=np.int32)
        ones = np.ones(len(order), dtype=np.float32)
        seen = sp.csr_matrix((ones, cols, np.array([0, len(order)])), shape=(1, n))
        positive = values > 0
        conf = sp.csr_matrix(
            (values[positive], cols[positive], np.array([0, int(positive.sum())])), shape=(1, n)
        )
        return conf, seen, recent


class RecommendationService:
    def __init__(self, settings: Settings, store: SqlStore, registry: ModelRegistry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.weights = settings.weights
        self._state: ServingState | None = None
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._popular_cache: TtlCache[list[tuple[str, float]]] = TtlCache(
            max_entries=256, ttl_s=settings.popular_cache_ttl_s
        )
        self._catalog_mark: int | None = None  # newest items.updated_at applied
        self._applied_at_mark: set[str] = set()
        self.last_reload_error: str | None = None

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
        state = ServingState(bundle, self.store.catalog(bundle.items.to_list()), self.weights)
        self._state = state  # one reference assignment: in-flight requests keep the old one
        self._catalog_mark, self._applied_at_mark = mark, set()
        self.refresh_catalog()  # changes committed while the catalog was being read
        self._popular_cache.clear()

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
            state.apply_catalog(self.store.catalog(fresh))
            self._popular_cache.clear()
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
                except Exception as exc:  # keep serving the current model
                    self.last_reload_error = f"{type(exc).__name__}: {exc}"
                    log.warning("champion reload failed: %s", self.last_reload_error)

        self._watcher = threading.Thread(target=loop, name="smartrec-reload", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        state = self._state
        if state is not None and item_ids:
            state.apply_catalog(self.store.catalog(item_ids))
        self._popular_cache.clear()

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
    ) -> Results:
        offset = decode_page_token(page_token)
        want = offset + n + 1  # one more than the page: is there a next page?
        state = self._state
        history = self.store.user_history(user_id, HISTORY_LIMIT)
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
            return self._page(items, offset, n, None)
        conf, seen_row, hist_idx = state.user_rows(history)
        if exclude_seen and len(history) >= HISTORY_LIMIT:
            # Scoring looks at the newest events only, but "seen" means ever seen.
            seen_row = state.items_row(self.store.user_items(user_id))
        uidx = state.users.get(user_id)
        allowed = state.allowed(category)
        exclude = seen_row if exclude_seen else None
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
        return self._page(recs, offset, n, state.version)

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
            item_id = state.item_ids[idx]
            if item_id in taken:
                continue
            out.append(Recommendation(item_id, float(state.popular_scores[idx]), [dict(reason)]))
        return out

    def similar(self, item_id: str, n: int, category: str | None = None) -> Results:
        state = self._state
        if state is None or item_id not in state.items:
            known = self.store.catalog([item_id]).get(item_id)
            if known is None:
                raise NotFound(f"item {item_id!r} does not exist")
            # A catalog item the model has not learned yet: popular items of its categories.
            cat = category or (known.categories[0] if known.categories else None)
            return self.popular(n, cat, None, exclude={item_id})
        idx = state.items.get(item_id)
        allowed = state.allowed(category)
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

    def session(self, item_ids: Sequence[str], n: int) -> Results:
        """Recommendations for an anonymous visitor from the items they just touched."""
        state = self._state
        given = set(item_ids)
        if state is None:
            return self.popular(n, None, None, exclude=given)
        idx = state.items.index(item_ids)
        idx = np.array(list(dict.fromkeys(idx[idx >= 0].tolist())), dtype=np.int64)
        allowed = state.available.copy()
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
        """The caller's list ordered for this user; items the model does not know go last."""
        ordered = list(dict.fromkeys(item_ids))
        state = self._state
        if state is None:
            pop = dict(self._popular_from_log(None, None, None))
            ranked = sorted(ordered, key=lambda i: -pop.get(i, 0.0))
            return Results(
                [Recommendation(i, pop.get(i, 0.0), [{"kind": "popular"}]) for i in ranked], None
            )
        history = self.store.user_history(user_id, HISTORY_LIMIT)
        conf, _, _ = state.user_rows(history)
        uidx = state.users.get(user_id)
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
        for start in range(0, len(ranking), chunk):
            part = ranking[start : start + chunk]
            catalog = self.store.catalog([i for i, _ in part])
            for item_id, score in part:
                item = catalog.get(item_id)
                if item is None or not item.available:
                    continue
                if category is not None and category not in item.categories:
                    continue
                out.append((item_id, score))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _page(
        self, items: list[Recommendation], offset: int, n: int, version: str | None
    ) -> Results:
        page = items[offset : offset + n]
        token = encode_page_token(offset + n) if len(items) > offset + n else None
        return Results(page, version, token)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded.encode()))["o"])
    except Exception:
        raise ValidationFailed(
            "page_token is not valid: pass the token of the previous page", field="page_token"
        ) from None
    if offset < 0 or offset > 100_000:
        raise ValidationFailed("page_token is out of range", field="page_token")
    return offset
