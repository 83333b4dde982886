from __future__ import annotations

import numpy as np
import pytest

from smartrec.domain import EventWeights
from smartrec.errors import PayloadTooLarge
from smartrec.ingest import BatchInvalid, Ingestor, event_id_for
from smartrec.schemas import EventIn, to_epoch_ms
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
