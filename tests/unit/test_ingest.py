from __future__ import annotations

import numpy as np
import pytest

from smartrec.domain import EventWeights
from smartrec.errors import PayloadTooLarge
from smartrec.ingest import BatchInvalid, Ingestor, event_id_for
from smartrec.schemas import EventIn, ItemIn, UserIn, to_epoch_ms
from smartrec.storage.memory import MemoryStore


@pytest.fixture()
def ingestor() -> Ingestor:
    """On the memory adapter: the ingest rules do not depend on the database (the contract
    suite proves the adapters store alike)."""
    store = MemoryStore()
    return Ingestor(store, store, EventWeights(), max_batch_size=5)


def test_deterministic_event_ids() -> None:
    a = event_id_for("u", "i", "view", 1000)
    assert a == event_id_for("u", "i", "view", 1000)
    assert a != event_id_for("u", "i", "view", 1001)
    assert a != event_id_for("u", "i", "click", 1000)
    # The separator keeps ("ab","c") and ("a","bc") apart.
    assert event_id_for("ab", "c", "view", 1) != event_id_for("a", "bc", "view", 1)


def test_timestamps_iso_and_epoch_seconds() -> None:
    assert to_epoch_ms(1_700_000_000) == 1_700_000_000_000
    assert to_epoch_ms(1_700_000_000.5) == 1_700_000_000_500
    assert to_epoch_ms("1700000000") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # naive = UTC
    assert to_epoch_ms(-1) == -1000  # before 1970: any instant ISO 8601 can write
    assert to_epoch_ms("0001-01-01T00:00:00z") == -62_135_596_800_000
    assert to_epoch_ms("2016-12-31t23:59:60Z") == to_epoch_ms("2016-12-31T23:59:59Z")  # leap
    for bad in ("yesterday", -7e10, float("nan"), True, 10**15, " 1700000000", "1_700", "1e9"):
        with pytest.raises(ValueError):
            to_epoch_ms(bad)


def test_retried_batch_without_ids_counts_once(ingestor: Ingestor) -> None:
    batch = [EventIn(user_id="u", item_id=str(i), type="view", timestamp=100 + i) for i in range(3)]
    assert ingestor.add_events(batch) == (3, 0)
    assert ingestor.add_events(batch) == (0, 3)


def test_unknown_types_rejected_with_index(ingestor: Ingestor) -> None:
    batch = [
        EventIn(user_id="u", item_id="i", type="view", timestamp=1),
        EventIn(user_id="u", item_id="i", type="teleport", timestamp=2),
    ]
    with pytest.raises(BatchInvalid) as info:
        ingestor.add_events(batch)
    assert info.value.errors[0].index == 1
    assert "events[1].type" in str(info.value)
    assert ingestor.events.count_events() == 0


def test_batch_limit(ingestor: Ingestor) -> None:
    batch = [EventIn(user_id="u", item_id=str(i), type="view", timestamp=1) for i in range(6)]
    with pytest.raises(PayloadTooLarge, match="limit is 5"):
        ingestor.add_events(batch)


def test_event_weights() -> None:
    w = EventWeights({"view": 1.0, "rating": 1.0, "dislike": -4.0}, frozenset({"rating"}))
    out = w.weigh(["view", "rating", "rating", "dislike", "other"], [None, 4.0, None, None, 3.0])
    np.testing.assert_allclose(out, [1.0, 4.0, 1.0, -4.0, 0.0])
    assert w.known("view") and not w.known("other")


def test_scalar_weight_matches_vector_weights() -> None:
    w = EventWeights()
    types = ["view", "rating", "rating", "dislike", "purchase", "unknown"]
    values = [None, 4.0, None, None, 2.0, 1.0]
    np.testing.assert_allclose(
        [w.weight_of(t, v) for t, v in zip(types, values, strict=True)], w.weigh(types, values)
    )


def test_events_far_in_the_future_are_rejected() -> None:
    store = MemoryStore()
    ing = Ingestor(store, store, EventWeights(), max_batch_size=10, max_future_skew_s=3600)
    now = 1_700_000_000_000
    ok = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 3_000_000) / 1000)
    late = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 7_200_000) / 1000)
    assert len(ing.to_records([ok], now_ms=now)) == 1
    with pytest.raises(BatchInvalid, match=r"events\[1\]\.timestamp: timestamp is 2\.0 h ahead"):
        ing.to_records([ok, late], now_ms=now)


# --- exact ids, limits and messages (each pins a behaviour a mutation test found unchecked) ---


def test_event_ids_are_stable_across_releases() -> None:
    """Stored ids: a batch retried after an upgrade must still count once."""
    assert event_id_for("u", "i", "view", 1000) == "h:dc88a798bb1475c6a648be2a432cb29e"


def test_a_batch_of_exactly_the_limit_is_accepted_and_the_limit_is_named(
    ingestor: Ingestor,
) -> None:
    batch = [EventIn(user_id="u", item_id=str(i), type="view", timestamp=1) for i in range(5)]
    assert ingestor.add_events(batch) == (5, 0)
    for add, what in ((ingestor.add_items, "items"), (ingestor.add_users, "users")):
        rows = [
            ItemIn(item_id=str(i)) if what == "items" else UserIn(user_id=str(i)) for i in range(6)
        ]
        with pytest.raises(PayloadTooLarge) as info:
            add(rows)  # type: ignore[operator]
        assert str(info.value) == (
            f"6 {what} in one batch; the limit is 5 (SMARTREC_MAX_BATCH_SIZE): split the batch"
        )


def test_items_and_users_are_stored(ingestor: Ingestor) -> None:
    assert ingestor.add_items([ItemIn(item_id="a", title="A"), ItemIn(item_id="b")]) == 2
    assert ingestor.add_users([UserIn(user_id="u1"), UserIn(user_id="u2")]) == 2
    assert ingestor.catalog.count_items() == 2
    assert ingestor.catalog.count_users() == 2


def test_the_default_future_skew_is_one_day() -> None:
    store = MemoryStore()
    ing = Ingestor(store, store, EventWeights(), max_batch_size=10)
    now = 1_700_000_000_000
    day = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 86_400_000) / 1000)
    later = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 86_401_000) / 1000)
    assert [r.ts for r in ing.to_records([day], now_ms=now)] == [now + 86_400_000]
    with pytest.raises(BatchInvalid) as info:
        ing.to_records([later], now_ms=now)
    assert info.value.errors[0].message == (
        "timestamp is 24.0 h ahead of the server clock (at most 24.0 h allowed)"
    )


def test_records_keep_given_ids_and_fill_missing_timestamps_and_ids(ingestor: Ingestor) -> None:
    now = 1_700_000_000_000
    given = EventIn(event_id="e1", user_id="u", item_id="i", type="rating", value=4, timestamp=5)
    bare = EventIn(user_id="v", item_id="j", type="view")
    records = ingestor.to_records([given, bare], now_ms=now)
    assert [(r.event_id, r.user_id, r.item_id, r.type, r.value, r.ts) for r in records] == [
        ("e1", "u", "i", "rating", 4.0, 5000),
        (event_id_for("v", "j", "view", now), "v", "j", "view", None, now),
    ]
    # Without a clock given, now is the server's clock.
    (record,) = ingestor.to_records([bare])
    assert record.ts > now


def test_every_bad_row_is_listed_in_row_order_with_its_field_and_message(
    ingestor: Ingestor,
) -> None:
    now = 1_700_000_000_000
    batch = [
        EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 10**9) / 1000),
        EventIn(user_id="u", item_id="i", type="rating"),
        EventIn(user_id="u", item_id="i", type="teleport"),
        EventIn(user_id="u", item_id="i", type="rating", value=0),
    ]
    with pytest.raises(BatchInvalid) as info:
        ingestor.to_records(batch, now_ms=now)
    err = info.value
    assert err.field is None or err.field == ""
    assert err.status == 422 and err.collection == "events"
    assert [e.as_dict() for e in err.errors] == [
        {
            "index": 0,
            "field": "timestamp",
            "message": "timestamp is 277.8 h ahead of the server clock (at most 24.0 h allowed)",
        },
        {
            "index": 1,
            "field": "value",
            "message": "a 'rating' event needs a value (its weight is scaled by it, e.g. the "
            "rating given)",
        },
        {
            "index": 2,
            "field": "type",
            "message": "unknown event type 'teleport'; configured types: add_to_cart, click, "
            "dislike, like, purchase, rating, view",
        },
    ]
    assert str(err) == (
        "events[0].timestamp: timestamp is 277.8 h ahead of the server clock "
        "(at most 24.0 h allowed) (and 2 more)"
    )


def test_one_bad_row_says_no_more(ingestor: Ingestor) -> None:
    with pytest.raises(BatchInvalid) as info:
        ingestor.to_records([EventIn(user_id="u", item_id="i", type="teleport")])
    assert str(info.value) == (
        "events[0].type: unknown event type 'teleport'; configured types: add_to_cart, click, "
        "dislike, like, purchase, rating, view"
    )
    two = [EventIn(user_id="u", item_id="i", type=t) for t in ("teleport", "warp")]
    with pytest.raises(BatchInvalid) as info:
        ingestor.to_records(two)
    assert str(info.value).endswith(", view (and 1 more)")


def test_an_event_batch_too_large_says_events(ingestor: Ingestor) -> None:
    batch = [EventIn(user_id="u", item_id=str(i), type="view", timestamp=1) for i in range(7)]
    with pytest.raises(PayloadTooLarge) as info:
        ingestor.to_records(batch)
    assert str(info.value).startswith("7 events in one batch;")


def test_hours_ahead_are_rounded_to_a_tenth() -> None:
    """0.05 h (3 minutes) reads 0.1 h, on both sides of the message."""
    store = MemoryStore()
    ing = Ingestor(store, store, EventWeights(), max_batch_size=10, max_future_skew_s=180)
    now = 1_700_000_000_000
    ahead = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 360_000) / 1000)
    with pytest.raises(BatchInvalid) as info:
        ing.to_records([ahead], now_ms=now)
    assert info.value.errors[0].message == (
        "timestamp is 0.1 h ahead of the server clock (at most 0.1 h allowed)"
    )
    strict = Ingestor(store, store, EventWeights(), max_batch_size=10, max_future_skew_s=0)
    ahead = EventIn(user_id="u", item_id="i", type="view", timestamp=(now + 180_000) / 1000)
    with pytest.raises(BatchInvalid) as info:
        strict.to_records([ahead], now_ms=now)
    assert info.value.errors[0].message == (
        "timestamp is 0.1 h ahead of the server clock (at most 0.0 h allowed)"
    )
