"""A seeded synthetic e-commerce event log with structure a recommender can learn.

Why synthetic: load tests and demos need data at any size, with known structure (taste clusters,
popularity skew) so that a working model measurably beats popularity. Generation is vectorised
numpy in fixed-size chunks: 10^7 events take a few seconds and the temporaries stay bounded.
Events are stored as integer codes into the id arrays (a string per event would cost gigabytes);
:meth:`Synthetic.event_user_ids` and friends materialise strings only when asked.

Model: item popularity follows a power law (Zipf over a random ranking); each item has a primary
category (and sometimes a second); users belong to taste clusters that favour a few categories;
a ``taste`` share of each user's events come from those categories (by within-category
popularity), the rest from global popularity. Users have log-normal activity and an active period
inside the ``days`` window. Event types are view > click > add_to_cart > purchase.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from smartrec.domain import EventWeights, IdMap, Interactions

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
EVENT_TYPE_P: tuple[float, ...] = (0.70, 0.20, 0.07, 0.03)
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
CATEGORY_NAMES: tuple[str, ...] = (
    "books",
    "electronics",
    "home",
    "garden",
    "toys",
    "sports",
    "beauty",
    "fashion",
    "grocery",
    "music",
    "movies",
    "games",
    "outdoors",
    "pets",
    "health",
    "automotive",
    "office",
    "baby",
    "jewelry",
    "tools",
)
_CHUNK = 1 << 20
_DAY_S = 86_400


@dataclass(frozen=True)
class Synthetic:
    """Generated catalogue, users and events (events as codes into ``user_ids``/``item_ids``)."""

    user_ids: np.ndarray  # object array of str, one per user
    item_ids: np.ndarray  # object array of str, one per item
    categories: tuple[str, ...]
    item_titles: list[str]
    item_categories: list[list[str]]
    item_price: np.ndarray
    item_brand: np.ndarray  # object array of str
    user_cluster: np.ndarray  # ground truth taste cluster per user
    cluster_categories: np.ndarray  # clusters x favoured categories (category indices)
    event_user: np.ndarray  # int32 index into user_ids
    event_item: np.ndarray  # int32 index into item_ids
    event_type: np.ndarray  # int8 index into EVENT_TYPES
    timestamp: np.ndarray  # int64 epoch seconds, non-decreasing

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return len(self.event_user)

    def event_user_ids(self) -> np.ndarray:
        """Per-event user id strings (shared objects: 8 bytes per event)."""
        return self.user_ids[self.event_user]

    def event_item_ids(self) -> np.ndarray:
        return self.item_ids[self.event_item]

    def event_type_names(self) -> np.ndarray:
        return np.asarray(EVENT_TYPES, dtype=object)[self.event_type]

    def items(self) -> list[dict[str, Any]]:
        """Catalogue records: ``item_id``, ``title``, ``categories``, ``attributes``."""
        return [
            {
                "item_id": str(self.item_ids[i]),
                "title": self.item_titles[i],
                "categories": list(self.item_categories[i]),
                "attributes": {
                    "price": float(self.item_price[i]),
                    "brand": str(self.item_brand[i]),
                },
            }
            for i in range(self.n_items)
        ]

    def events(self, id_prefix: str | None = None) -> list[dict[str, Any]]:
        """Event records as ``POST /v1/events`` takes them (timestamps in epoch seconds); with
        ``id_prefix``, each has the ``event_id`` ``<prefix><position>``."""
        rows = zip(
            self.event_user_ids().tolist(),
            self.event_item_ids().tolist(),
            self.event_type_names().tolist(),
            self.timestamp.tolist(),
            strict=True,
        )
        out = [
            {"user_id": u, "item_id": i, "type": t, "timestamp": int(ts)} for u, i, t, ts in rows
        ]
        if id_prefix is not None:
            out = [{"event_id": f"{id_prefix}{k}", **e} for k, e in enumerate(out)]
        return out

    def to_interactions(self, weights: EventWeights | None = None) -> Interactions:
        """Weighted interactions on the full id axes, built from the codes (no string lookups)."""
        w_table = np.array(
            [(weights or EventWeights()).weights.get(t, 0.0) for t in EVENT_TYPES],
            dtype=np.float32,
        )
        return Interactions.from_codes(
            IdMap(self.user_ids),
            IdMap(self.item_ids),
            self.event_user,
            self.event_item,
            w_table[self.event_type],
            self.timestamp,
            [list(c) for c in self.item_categories],
        )


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


class _Inverse:
    """Exact inverse-CDF lookup with a guide table (Chen's method).

    ``np.searchsorted`` costs a cache-missing binary search per draw; a guide table of
    ``buckets`` entries jumps straight to the right neighbourhood and a couple of vectorised
    "step right" passes finish the job, with the same result as ``searchsorted(side="right")``.
    """

    def __init__(self, keys: np.ndarray, buckets: int) -> None:
        self.keys = keys
        self.lo = 0.0  # keys are cumulative probabilities (plus a category offset): positive
        self.hi = float(keys[-1])
        self.scale = buckets / (self.hi - self.lo)
        self.edges = self.lo + np.arange(buckets, dtype=np.float64) / self.scale
        self.guide = np.searchsorted(keys, self.edges, side="right")
        self.top = np.nextafter(self.hi, -np.inf)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Index of the first key greater than each ``x`` (``x`` clipped below the last key)."""
        x = np.minimum(x, self.top)
        b = np.clip(((x - self.lo) * self.scale).astype(np.int64), 0, len(self.edges) - 1)
        b -= self.edges[b] > x  # float rounding may overshoot by one bucket
        idx = self.guide[b]
        active = np.flatnonzero(self.keys[idx] <= x)
        while active.size:
            idx[active] += 1
            active = active[self.keys[idx[active]] <= x[active]]
        return idx


def generate(
    n_users: int,
    n_items: int,
    n_events: int,
    n_categories: int = 20,
    seed: int = 0,
    start: datetime | float = DEFAULT_START,
    days: float = 90.0,
    *,
    popularity_exponent: float = 1.0,
    taste: float = 0.8,
    n_clusters: int | None = None,
    categories_per_cluster: int = 3,
) -> Synthetic:
    """Generate a reproducible event log; same arguments and seed give identical output."""
    if n_users <= 0 or n_items <= 0 or n_events < 0:
        raise ValueError("n_users and n_items must be positive, n_events non-negative")
    if not 0.0 <= taste <= 1.0:
        raise ValueError("taste must be in [0, 1]")
    if days <= 0:
        raise ValueError("days must be positive")
    rng = np.random.default_rng(seed)
    n_cat = max(1, min(n_categories, n_items))
    cat_names = tuple(
        CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category_{c}" for c in range(n_cat)
    )
    n_clu = max(1, n_clusters if n_clusters is not None else max(1, n_cat // 2))
    per_cluster = max(1, min(categories_per_cluster, n_cat))

    # Catalogue: balanced primary categories, ~30% with a second one, Zipf popularity.
    primary = rng.permutation(np.arange(n_items) % n_cat)
    has_second = (rng.random(n_items) < 0.3) & (n_cat > 1)
    second = (primary + rng.integers(1, max(n_cat, 2), n_items)) % n_cat
    popularity = (rng.permutation(n_items) + 1.0) ** (-popularity_exponent)
    price = np.round(rng.lognormal(3.0, 0.8, n_items), 2)
    brand_codes = rng.integers(0, max(1, n_items // 50), n_items)

    # Within-category sampling: keys c + (normalised cumulative popularity) over items sorted by
    # category, so one inverse-CDF lookup picks an item of category c by popularity.
    by_cat = np.argsort(primary, kind="stable")
    cat_sorted = primary[by_cat]
    cat_sizes = np.bincount(primary, minlength=n_cat)
    cat_end = np.cumsum(cat_sizes)
    cat_start = cat_end - cat_sizes
    cum = np.cumsum(popularity[by_cat])
    before = np.concatenate([[0.0], cum])[cat_start]
    totals = cum[cat_end - 1] - before
    within = (cum - before[cat_sorted]) / totals[cat_sorted]
    within[cat_end - 1] = 1.0
    cat_keys = cat_sorted + within
    global_cdf = _cdf(popularity)

    # Users: taste cluster, log-normal activity, an active period inside the window.
    cluster = rng.integers(0, n_clu, n_users)
    favoured = np.argsort(rng.random((n_clu, n_cat)), axis=1)[:, :per_cluster]
    activity = rng.lognormal(0.0, 1.0, n_users)
    span = rng.uniform(0.05, 1.0, n_users)
    offset = rng.random(n_users) * (1.0 - span)
    type_cdf = _cdf(np.asarray(EVENT_TYPE_P))[:-1].astype(np.float32)
    in_category = _Inverse(cat_keys, 4 * n_items)
    anywhere = _Inverse(global_cdf, 4 * n_items)

    t0 = start.timestamp() if isinstance(start, datetime) else float(start)
    window = days * _DAY_S
    # Events per user from one multinomial draw (no per-event user lookup); they come out grouped
    # by user and are put in time order at the end.
    per_user = rng.multinomial(n_events, activity / activity.sum())
    ev_user = np.repeat(np.arange(n_users, dtype=np.int32), per_user)
    ev_item = np.empty(n_events, dtype=np.int32)
    ev_type = np.empty(n_events, dtype=np.int8)
    ev_time = np.empty(n_events, dtype=np.int64)
    for lo in range(0, n_events, _CHUNK):
        m = min(_CHUNK, n_events - lo)
        u = ev_user[lo : lo + m]
        c = favoured[cluster[u], rng.integers(0, per_cluster, m)]
        pos = np.clip(in_category(c + rng.random(m)), cat_start[c], cat_end[c] - 1)
        taste_item = by_cat[pos]
        any_item = anywhere(rng.random(m))
        use_taste = rng.random(m, dtype=np.float32) < taste
        r = rng.random(m, dtype=np.float32)
        kinds = (r[:, None] >= type_cdf[None, :]).sum(axis=1)
        when = t0 + (offset[u] + span[u] * rng.random(m, dtype=np.float32)) * window
        ev_item[lo : lo + m] = np.where(use_taste, taste_item, any_item)
        ev_type[lo : lo + m] = kinds
        ev_time[lo : lo + m] = when.astype(np.int64)

    order = _time_order(ev_time)
    width_u, width_i = len(str(n_users - 1)), len(str(n_items - 1))
    item_cats = [
        [cat_names[p], cat_names[s]] if two else [cat_names[p]]
        for p, s, two in zip(primary.tolist(), second.tolist(), has_second.tolist(), strict=True)
    ]
    return Synthetic(
        user_ids=np.array([f"u{i:0{width_u}d}" for i in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i:0{width_i}d}" for i in range(n_items)], dtype=object),
        categories=cat_names,
        item_titles=[
            f"{cat_names[p].capitalize()} item {i}" for i, p in enumerate(primary.tolist())
        ],
        item_categories=item_cats,
        item_price=price,
        item_brand=np.array([f"brand_{b}" for b in brand_codes.tolist()], dtype=object),
        user_cluster=cluster,
        cluster_categories=favoured,
        event_user=ev_user[order],
        event_item=ev_item[order],
        event_type=ev_type[order],
        timestamp=ev_time[order],
    )


def _time_order(times: np.ndarray) -> np.ndarray:
    """Stable argsort by time: one plain sort of unique (time, row) keys when they fit in 63 bits.

    A plain sort of unique keys is as reproducible as a stable argsort and several times faster.
    """
    n = len(times)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rel = times - times.min()
    idx_bits = max(1, int(n - 1).bit_length())
    if int(rel.max()).bit_length() + idx_bits > 62:
        return np.argsort(times, kind="stable")
    keys = (rel << idx_bits) | np.arange(n, dtype=np.int64)
    keys.sort()
    return keys & ((1 << idx_bits) - 1)
