"""Serving's exclusions (``smartrec.serving.state``): a user's seen items, the items with
negative feedback (never shown again, whatever ``exclude_seen`` says), and the positive history
newest first. A tiny real ``ServingState``: five items, popularity only."""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.sparse as sp

from smartrec.domain import EventWeights, Interactions
from smartrec.models import create
from smartrec.registry import ModelBundle
from smartrec.serving.state import ServingState, negative_row, positive_first

ITEMS = ["a", "b", "c", "d", "e"]
WEIGHTS = EventWeights(
    weights={"view": 1.0, "like": 3.0, "dislike": -5.0, "rating": 0.5},
    value_types=frozenset({"rating"}),
)


@cache
def state() -> ServingState:
    data = Interactions.from_events(
        ["u1", "u1", "u2", "u2", "u3"], ["a", "b", "c", "d", "e"], [1.0] * 5, [1.0] * 5
    )
    assert data.items.to_list() == ITEMS
    pop = create("popularity").fit(data)
    bundle = ModelBundle(model=pop, popularity=pop, items=data.items, users=data.users)
    return ServingState(bundle, {}, WEIGHTS)


def row(m: sp.csr_matrix) -> dict[str, float]:
    """A 1 x n_items row as {item: value}."""
    assert m.shape == (1, len(ITEMS))
    dense = m.toarray()[0]
    return {ITEMS[i]: float(v) for i, v in enumerate(dense) if v != 0}


def test_seen_confidence_and_history_of_a_mixed_history() -> None:
    history = [  # newest first
        ("c", "dislike", None),
        ("a", "view", None),
        ("zz", "view", None),  # not an item of the model: ignored
        ("b", "rating", 4.0),
        ("a", "like", None),
        ("d", "view", None),
        ("d", "dislike", None),  # summed: 1 - 5 < 0
        ("e", "rating", None),  # a rating without value counts its weight once
    ]
    conf, seen, recent = state().user_rows(history)
    assert row(seen) == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 1.0}
    assert row(conf) == {"a": 4.0, "b": 2.0, "e": 0.5}
    assert recent == [2, 0, 1, 3, 4]  # positions, newest first, each once
    assert row(negative_row(conf, seen)) == {"c": 1.0, "d": 1.0}
    assert positive_first(recent, conf) == [0, 1, 4]


def test_unknown_types_and_zero_sums_are_seen_but_neither_positive_nor_confident() -> None:
    conf, seen, recent = state().user_rows(
        [("a", "share", None), ("b", "like", None), ("b", "dislike", None), ("c", "rating", 0.0)]
    )
    assert row(seen) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert row(conf) == {}
    assert recent == [0, 1, 2]
    # Touched without positive feedback: never shown again.
    assert row(negative_row(conf, seen)) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert positive_first(recent, conf) == []


def test_no_history_or_only_unknown_items_is_empty() -> None:
    for history in ([], [("nope", "like", None)]):
        conf, seen, recent = state().user_rows(history)
        assert row(conf) == {} and row(seen) == {} and recent == []
        assert conf.nnz == 0 and seen.nnz == 0
        assert row(negative_row(conf, seen)) == {}


def test_a_negative_rating_value_makes_an_item_disliked() -> None:
    conf, seen, recent = state().user_rows([("a", "rating", -2.0), ("b", "rating", 2.0)])
    assert row(conf) == {"b": 1.0}
    assert row(negative_row(conf, seen)) == {"a": 1.0}
    assert positive_first(recent, conf) == [1]


def test_positive_first_keeps_the_newest_first_order() -> None:
    conf = sp.csr_matrix(
        (np.array([2.0, 1.0, -1.0], dtype=np.float32), np.array([0, 3, 4]), np.array([0, 3])),
        shape=(1, 5),
    )
    assert positive_first([4, 3, 2, 0], conf) == [3, 0]
    # A stored zero is no positive feedback either.
    zero = sp.csr_matrix(
        (np.array([0.0, 1.0], dtype=np.float32), np.array([1, 2]), np.array([0, 2])), shape=(1, 5)
    )
    assert positive_first([1, 2], zero) == [2]


def test_rows_are_float32_like_the_models_matrices() -> None:
    """A float64 row would upcast every score computed from it."""
    for history in ([], [("nope", "like", None)], [("a", "like", None), ("c", "dislike", None)]):
        conf, seen, _ = state().user_rows(history)
        rows = [conf, seen, negative_row(conf, seen), state().items_row(["a", "d"])]
        assert [r.dtype for r in rows] == [np.float32] * 4
        assert all(r.indices.dtype == np.int32 for r in rows)


def test_items_row_marks_known_items_once() -> None:
    assert row(state().items_row(["e", "a", "e", "nope"])) == {"a": 1.0, "e": 1.0}
    assert row(state().items_row([])) == {}
    assert state().items_row(["e", "a"]).indices.tolist() == [0, 4]
