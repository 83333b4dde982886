"""Stratified and temporal splits: counts, determinism, and parity with Microsoft Recommenders."""

from __future__ import annotations

import numpy as np
import pytest

from smartrec.domain.splits import stratified_split, temporal_holdout


def _ratings(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = np.array([f"u{x}" for x in rng.integers(0, 80, n)], dtype=object)
    items = np.array([f"i{x}" for x in rng.zipf(1.6, n) % 300], dtype=object)
    return users, items


def test_train_count_per_item_is_round_ratio_times_n() -> None:
    # group sizes 1, 2, 4, 6, 10 -> round(0.75 n) = 1, 2, 3, 4 (half to even), 8 (half to even)
    sizes = {"a": 1, "b": 2, "c": 4, "d": 6, "e": 10}
    items = np.array([k for k, n in sizes.items() for _ in range(n)], dtype=object)
    users = np.array([f"u{i}" for i in range(len(items))], dtype=object)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(items))  # groups interleaved in the input
    mask = stratified_split(users[perm], items[perm], ratio=0.75, seed=42, by="item")
    got = {k: int(mask[items[perm] == k].sum()) for k in sizes}
    assert got == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 8}


def test_rows_within_a_group_follow_randomstate_permutation() -> None:
    # One group of 8 rows: train = rows at RandomState(seed).permutation(8)[:6].
    items = np.array(["x"] * 8, dtype=object)
    users = np.array([str(i) for i in range(8)], dtype=object)
    mask = stratified_split(users, items, ratio=0.75, seed=7)
    expected = np.zeros(8, dtype=bool)
    expected[np.random.RandomState(7).permutation(8)[:6]] = True
    np.testing.assert_array_equal(mask, expected)


def test_split_by_user_stratifies_users() -> None:
    users, items = _ratings()
    mask = stratified_split(users, items, ratio=0.75, seed=42, by="user")
    for u in np.unique(users):
        rows = users == u
        assert mask[rows].sum() == round(0.75 * rows.sum())


def test_split_is_deterministic_per_seed() -> None:
    users, items = _ratings()
    a = stratified_split(users, items, seed=42)
    b = stratified_split(users, items, seed=42)
    c = stratified_split(users, items, seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.sum() == c.sum()  # the counts depend only on the group sizes


@pytest.mark.parametrize("by", ["item", "user"])
def test_matches_microsoft_recommenders_reference(by: str) -> None:
    """Re-implements ``python_stratified_split`` with pandas (as in recommenders) and compares."""
    pd = pytest.importorskip("pandas")
    users, items = _ratings(2000, seed=5)
    df = pd.DataFrame({"userID": users, "itemID": items, "row": np.arange(len(users))})
    col = "itemID" if by == "item" else "userID"
    train_rows = []
    for _, group in df.groupby(col):
        shuffled = group.sample(frac=1, random_state=42)
        train_rows.append(shuffled.iloc[: round(0.75 * len(shuffled))]["row"].to_numpy())
    expected = np.zeros(len(df), dtype=bool)
    expected[np.concatenate(train_rows)] = True
    np.testing.assert_array_equal(stratified_split(users, items, 0.75, 42, by=by), expected)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    users, items = _ratings(10)
    with pytest.raises(ValueError):
        stratified_split(users, items, ratio=1.0)
    with pytest.raises(ValueError):
        stratified_split(users, items, by="session")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        stratified_split(users, items[:5])
    assert stratified_split(np.array([]), np.array([])).shape == (0,)


def test_temporal_holdout_takes_the_newest_events() -> None:
    times = np.array([50, 10, 90, 30, 70, 20, 80, 60, 40, 100], dtype=float)
    mask = temporal_holdout(times, fraction=0.3)
    assert mask.sum() == 7
    assert set(times[~mask]) == {80.0, 90.0, 100.0}
    assert times[mask].max() < times[~mask].min()


def test_temporal_holdout_breaks_ties_by_row_order() -> None:
    times = np.array([5, 5, 5, 5, 1], dtype=float)
    mask = temporal_holdout(times, fraction=0.4)  # 2 held out among the four ties: the last rows
    np.testing.assert_array_equal(mask, [True, True, False, False, True])
    np.testing.assert_array_equal(temporal_holdout(times, 0.0), np.ones(5, dtype=bool))
    with pytest.raises(ValueError):
        temporal_holdout(times, 1.0)
