"""Synthetic generator: determinism, sizes, skew, taste structure, time window."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from smartrec.datasets.synthetic import EVENT_TYPES, Synthetic, generate

START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> Synthetic:
    return generate(2000, 1000, 100_000, n_categories=10, seed=3, start=START, days=30)


def test_same_seed_same_data_other_seed_other_data(data: Synthetic) -> None:
    again = generate(2000, 1000, 100_000, n_categories=10, seed=3, start=START, days=30)
    for name in ("event_user", "event_item", "event_type", "timestamp"):
        np.testing.assert_array_equal(getattr(data, name), getattr(again, name))
    assert data.item_categories == again.item_categories
    other = generate(2000, 1000, 100_000, n_categories=10, seed=4, start=START, days=30)
    assert not np.array_equal(data.event_item, other.event_item)


def test_sizes_and_ids(data: Synthetic) -> None:
    assert (data.n_users, data.n_items, data.n_events) == (2000, 1000, 100_000)
    assert len(set(data.user_ids.tolist())) == 2000
    assert len(set(data.item_ids.tolist())) == 1000
    assert all(isinstance(x, str) for x in data.event_user_ids()[:100])
    assert data.event_item_ids()[0] in set(data.item_ids.tolist())
    assert set(data.event_type_names()[:1000].tolist()) <= set(EVENT_TYPES)
    items = data.items()
    assert len(items) == 1000
    assert set(items[0]) == {"item_id", "title", "categories", "attributes"}
    assert set(items[0]["attributes"]) == {"price", "brand"}
    assert all(1 <= len(it["categories"]) <= 2 for it in items)
    assert {c for it in items for c in it["categories"]} == set(data.categories)


def test_popularity_is_skewed(data: Synthetic) -> None:
    counts = np.sort(np.bincount(data.event_item, minlength=data.n_items))[::-1]
    top_decile = counts[: data.n_items // 10].sum() / counts.sum()
    assert top_decile > 0.4  # uniform would be 0.1
    assert counts[0] > 20 * np.median(counts)


def test_event_types_decrease_in_frequency(data: Synthetic) -> None:
    freq = np.bincount(data.event_type, minlength=len(EVENT_TYPES))
    assert list(freq) == sorted(freq, reverse=True)
    assert freq[-1] > 0


def test_users_prefer_their_clusters_categories(data: Synthetic) -> None:
    cat_index = {c: i for i, c in enumerate(data.categories)}
    primary = np.array([cat_index[c[0]] for c in data.item_categories])
    fav = data.cluster_categories[data.user_cluster[data.event_user]]
    in_taste = (fav == primary[data.event_item][:, None]).any(axis=1).mean()
    chance = data.cluster_categories.shape[1] / len(data.categories)
    assert in_taste > chance + 0.5  # taste=0.8 on top of chance-level hits


def test_timestamps_inside_window_and_sorted(data: Synthetic) -> None:
    t0 = START.timestamp()
    assert data.timestamp.min() >= t0
    assert data.timestamp.max() < t0 + 30 * 86_400
    assert np.all(np.diff(data.timestamp) >= 0)
    # activity spans the window, not one instant
    assert data.timestamp.max() - data.timestamp.min() > 20 * 86_400


def test_to_interactions(data: Synthetic) -> None:
    inter = data.to_interactions()
    assert inter.matrix.shape == (2000, 1000)
    assert inter.n_events == 100_000
    weights = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
    expected = sum(
        weights[t] * n for t, n in zip(EVENT_TYPES, np.bincount(data.event_type), strict=True)
    )
    assert inter.matrix.sum() == pytest.approx(expected, rel=1e-5)
    assert inter.item_categories is not None and len(inter.item_categories) == 1000


def test_small_and_degenerate_sizes() -> None:
    tiny = generate(3, 2, 10, n_categories=20, seed=0)
    assert tiny.n_events == 10 and len(tiny.categories) == 2
    empty = generate(5, 5, 0)
    assert empty.n_events == 0
    with pytest.raises(ValueError):
        generate(0, 5, 10)
