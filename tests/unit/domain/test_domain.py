from __future__ import annotations

import numpy as np
import pytest

from smartrec.domain import IdMap, Interactions


def test_id_map_round_trip_and_unknowns() -> None:
    ids = IdMap.from_values(["b", "a", "b", "c"])
    assert ids.to_list() == ["b", "a", "c"]  # first-seen order, unique
    assert len(ids) == 3 and "a" in ids and "z" not in ids
    np.testing.assert_array_equal(ids.index(["c", "z", "b"]), [2, -1, 0])
    assert ids.external([1, 2]) == ["a", "c"]
    assert ids.get("z") == -1
    with pytest.raises(IndexError):
        ids.external([3])
    with pytest.raises(ValueError, match="unique"):
        IdMap(["x", "x"])
    assert IdMap(["a", "b"]) == IdMap(["a", "b"]) != IdMap(["b", "a"])


def test_ids_are_strings() -> None:
    ids = IdMap.from_values([1, 2])  # type: ignore[list-item]
    assert ids.to_list() == ["1", "2"]
    np.testing.assert_array_equal(ids.index(["2"]), [1])


def test_interactions_sum_weights_and_keep_negatives_as_seen() -> None:
    data = Interactions.from_events(
        ["u1", "u1", "u1", "u2"],
        ["a", "a", "b", "b"],
        [1.0, 2.0, -4.0, 5.0],
        [10.0, 20.0, 30.0, 5.0],
    )
    assert (data.n_users, data.n_items, data.n_events) == (2, 2, 4)
    dense = data.matrix.toarray()
    np.testing.assert_allclose(dense, [[3.0, 0.0], [0.0, 5.0]])  # the dislike is not confidence
    np.testing.assert_allclose(data.seen.toarray(), [[1.0, 1.0], [0.0, 1.0]])  # but it is seen
    assert data.reference_time == 30.0
    np.testing.assert_allclose(data.binarized().toarray(), [[1.0, 0.0], [0.0, 1.0]])


def test_fixed_axes_drop_unknown_ids_and_subsets_keep_axes() -> None:
    users, items = IdMap(["u1", "u2"]), IdMap(["a", "b", "c"])
    data = Interactions.from_events(
        ["u1", "u2", "ghost"], ["a", "c", "a"], [1, 1, 1], [1, 2, 3], users=users, items=items
    )
    assert data.n_events == 2 and data.matrix.shape == (2, 3)
    early = data.subset_events(data.event_times < 2)
    assert early.users == users and early.items == items
    np.testing.assert_allclose(early.matrix.toarray(), [[1, 0, 0], [0, 0, 0]])


def test_mismatched_event_arrays_fail() -> None:
    with pytest.raises(ValueError, match="same length"):
        Interactions.from_events(["u"], ["a", "b"], [1.0], [1.0])
