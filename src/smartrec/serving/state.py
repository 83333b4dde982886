"""What a served model version holds in memory: the bundle plus catalogue masks on its axis.

One immutable object per installed version (apart from copy-on-write catalogue updates), swapped
by reference, so a request keeps the state it started with across a hot swap.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from smartrec.domain import CatalogItem, EventWeights, IdMap
from smartrec.errors import ValidationFailed
from smartrec.pipeline.rules import item_hash
from smartrec.registry import ModelBundle

log = logging.getLogger(__name__)

WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_WINDOW_S = 100 * 365 * 86400
#: The windows an HTTP request may name (whole units, under 100 years whatever the unit): the
#: OpenAPI document states exactly what the server takes.
WINDOW_PATTERN = (
    r"^([1-9][0-9]{0,8}s|[1-9][0-9]{0,6}m|[1-9][0-9]{0,4}h|[1-9][0-9]{0,3}d|[1-9][0-9]{0,2}w)$"
)
DEFAULT_HIDDEN_ATTRIBUTE = "hidden"


def visible(item: CatalogItem, hidden_attribute: str = DEFAULT_HIDDEN_ATTRIBUTE) -> bool:
    """May this item be shown at all: available, and not hidden by its attribute."""
    return item.available and item.attributes.get(hidden_attribute) is not True


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
        self.n_model = n
        #: When the training read the event log (epoch ms; 0 when the bundle does not say):
        #: users erased since are unknown to this model as far as serving goes.
        self.snapshot_ms = int(float(bundle.meta.get("snapshot_at") or 0) * 1000)
        self.pipeline = bundle.pipeline
        if self.pipeline is not None:
            self.pipeline.warm()
        self.hidden_attribute = (
            self.pipeline.spec.rules.hidden_attribute
            if self.pipeline is not None
            else DEFAULT_HIDDEN_ATTRIBUTE
        )
        #: Items added to the catalogue after training: indices n_model, n_model + 1, ...
        self.extra_index: dict[str, int] = {}
        self.available = np.ones(n, dtype=bool)
        self.titles: list[str | None] = [None] * n
        self.published = np.full(n, np.nan)  # epoch seconds
        self.created = np.full(n, np.nan)  # epoch seconds the catalogue first stored it
        self.categories: dict[str, np.ndarray] = {}
        #: Items deleted from the catalogue (their similar items are a 404).
        self.deleted: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        #: Per-item caches, worked out on first use: when each item was born (with the
        #: ``published`` array it was worked out from) and each item's page-token hash.
        self.born: tuple[np.ndarray, np.ndarray] | None = None
        self.hashes: np.ndarray | None = None
        self.apply_catalog(catalog)
        pop_scores = bundle.popularity.score(sp.csr_matrix((1, n), dtype=np.float32))[0]
        self.popular_order = np.argsort(-pop_scores, kind="stable")
        self.popular_scores = pop_scores

    @property
    def n_total(self) -> int:
        return len(self.item_ids)

    def position(self, item_id: str) -> int:
        """Index of an item on the serving axis (model items, then newer ones); -1 if unknown."""
        pos = self.items.lookup.get(item_id)
        if pos is None:
            return self.extra_index.get(item_id, -1)
        return pos

    def apply_catalog(
        self, catalog: dict[str, CatalogItem], texts: dict[str, CatalogItem] | None = None
    ) -> list[str]:
        """Update availability, titles, dates and category masks (copy-on-write); items the
        model has not seen are appended when the pipeline can reach them (content retrieval).
        ``texts``: the same rows with their text; items of it already on the content axis whose
        vectorised content changed (``ContentIndex.edited``) are re-vectorised too. Returns the
        ids appended."""
        with self._lock:
            lookup = self.items.lookup
            can_extend = self.pipeline is not None and self.pipeline.content is not None
            new_ids = [
                i
                for i, item in catalog.items()
                if i not in lookup
                and i not in self.extra_index
                and can_extend
                and not item.placeholder
            ]
            content = None
            index = self.pipeline.content if self.pipeline is not None else None
            edited: list[CatalogItem] = []
            if index is not None and texts is not None:
                edited = index.edited(
                    row for i, row in texts.items() if i in catalog and not row.placeholder
                )
            if (new_ids or edited) and index is not None:
                rows = texts if texts is not None else catalog
                content = index.upsert(edited + [rows.get(i) or catalog[i] for i in new_ids])
                if any(content.index_of(i) != self.n_total + k for k, i in enumerate(new_ids)):
                    # The content index and the serving axis disagree: do not extend, but still
                    # apply the edits and the rest to the items already on the axis.
                    log.warning("content index out of line with the serving axis; not extended")
                    new_ids = []
                    content = index.upsert(edited) if edited else None
            n_new = self.n_total + len(new_ids)
            item_ids = self.item_ids + new_ids if new_ids else self.item_ids
            extra = dict(self.extra_index)
            for k, i in enumerate(new_ids):
                extra[i] = self.n_total + k
            grow = n_new - len(self.available)
            available = np.concatenate([self.available, np.zeros(grow, dtype=bool)])
            published = np.concatenate([self.published, np.full(grow, np.nan)])
            created = np.concatenate([self.created, np.full(grow, np.nan)])
            titles = list(self.titles) + [None] * grow
            categories = {
                k: np.concatenate([v, np.zeros(grow, dtype=bool)])
                for k, v in self.categories.items()
            }
            hidden_key = self.hidden_attribute
            for item_id, item in catalog.items():
                pos = lookup.get(item_id)
                if pos is None:
                    pos = extra.get(item_id)
                    if pos is None:
                        continue
                available[pos] = visible(item, hidden_key)
                titles[pos] = item.title
                published[pos] = np.nan if item.published_at is None else item.published_at / 1e3
                created[pos] = np.nan if item.created_at is None else item.created_at / 1e3
                for mask in categories.values():
                    mask[pos] = False
                for cat in item.categories:
                    if cat not in categories:
                        categories[cat] = np.zeros(n_new, dtype=bool)
                    categories[cat][pos] = True
            gone = {i for i, item in catalog.items() if item.deleted}
            back = {i for i, item in catalog.items() if not item.deleted}
            if gone or (back & self.deleted):
                self.deleted = frozenset((self.deleted - back) | gone)
            self.item_ids, self.extra_index = item_ids, extra
            self.available, self.titles, self.categories = available, titles, categories
            # created first: a reader that sees the new ``published`` sees an axis as long.
            self.created = created
            self.published = published
            if content is not None and self.pipeline is not None:
                self.pipeline.content = content
            return new_ids

    def born_times(self, items: np.ndarray) -> np.ndarray:
        """Publication time, else first event time, else when the catalogue first stored it,
        per item (unknown = long ago), so that an item added without a publication time is new
        until it has been in the catalogue for ``new_days``. Worked out for the whole axis once
        per catalogue change (``published`` and ``created`` are replaced together, never
        edited in place), then looked up per request."""
        cached = self.born
        if cached is None or cached[0] is not self.published:
            pub = self.published
            born = pub.copy()
            if self.pipeline is not None:
                m = min(len(pub), self.pipeline.n_items)
                first = np.asarray(self.pipeline.stats.first_seen[:m], dtype=np.float64)
                born[:m] = np.where(np.isnan(pub[:m]), first, pub[:m])
            created = self.created[: len(born)]
            born = np.where(np.isnan(born), created, born)
            cached = (pub, np.where(np.isnan(born), -np.inf, born))
            self.born = cached
        return cached[1][items]

    def item_hashes(self) -> np.ndarray:
        """The page-token hash of every item on the serving axis (the whole catalogue hashed
        once, then the items appended since): page tokens and feeds read it by position."""
        known = self.hashes
        if known is None:
            known = np.fromiter(
                (item_hash(i) for i in self.item_ids), dtype=np.uint32, count=self.n_total
            )
            self.hashes = known
        if len(known) < self.n_total:  # items appended since
            tail = [item_hash(i) for i in self.item_ids[len(known) :]]
            known = np.concatenate([known, np.asarray(tail, dtype=np.uint32)])
            self.hashes = known
        return known

    def positions_of(self, hashes: frozenset[int]) -> np.ndarray:
        """Serving-axis positions of the items with these page-token hashes."""
        wanted = np.fromiter(hashes, dtype=np.uint32, count=len(hashes))
        return np.flatnonzero(np.isin(self.item_hashes(), wanted)).astype(np.int64)

    def items_row(self, item_ids: Sequence[str]) -> sp.csr_matrix:
        """A 1 x n_items indicator row of the given (known) items."""
        index = self.items.lookup
        cols = np.array(sorted({index[i] for i in item_ids if i in index}), dtype=np.int32)
        data = np.ones(len(cols), dtype=np.float32)
        return sp.csr_matrix((data, cols, np.array([0, len(cols)])), shape=(1, len(self.items)))

    def allowed(self, category: str | None) -> np.ndarray:
        """Mask over the serving axis (model items first: slice ``[:n_model]`` for models)."""
        if category is None:
            return self.available
        mask = self.categories.get(category)
        if mask is None:
            return np.zeros(self.n_total, dtype=bool)
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


def positive_first(hist_idx: list[int], conf: sp.csr_matrix) -> list[int]:
    """History items with positive feedback, newest first (one set look-up each)."""
    if conf.nnz == 0:
        return []
    positive = set(conf.indices[conf.data > 0].tolist())
    return [i for i in hist_idx if i in positive]


def negative_row(conf: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    """Items the user touched whose summed feedback is not positive (disliked, returned...)."""
    negative = np.setdiff1d(seen.indices, conf.indices)
    data = np.ones(len(negative), dtype=np.float32)
    return sp.csr_matrix((data, negative, np.array([0, len(negative)])), shape=seen.shape)
