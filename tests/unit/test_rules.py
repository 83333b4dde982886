"""Rules after ranking: page tokens, boosts, exploration slots."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest

from smartrec.errors import ValidationFailed
from smartrec.pipeline.rules import (
    MAX_SHOWN,
    RAW_UP_TO,
    TOKEN_VERSION,
    TOKEN_VERSION_RAW,
    PageState,
    boost_scores,
    decode_page_token,
    exploration_slots,
    interleave,
    item_hash,
)


def test_page_token_round_trip() -> None:
    state = PageState.empty().after(["a", "b", "c"])
    back = decode_page_token(state.encode())
    assert back == state
    assert back.seen("a") and back.seen("c") and not back.seen("d")
    assert decode_page_token(None) == PageState.empty()
    assert decode_page_token("") == PageState.empty()


def test_short_and_long_tokens_round_trip_in_both_encodings() -> None:
    """A few items travel as plain hashes (no zlib set-up per page), many compressed."""
    for count in (1, RAW_UP_TO, RAW_UP_TO + 1, 700):
        state = PageState.empty().after(f"item-{i}" for i in range(count))
        token = state.encode()
        version = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))[0]
        assert version == (TOKEN_VERSION_RAW if count <= RAW_UP_TO else TOKEN_VERSION)
        assert decode_page_token(token) == state
    hashes = [item_hash("a"), item_hash("b")]
    assert PageState.empty().after_hashes(hashes) == PageState.empty().after(["a", "b"])


def test_page_token_stays_small() -> None:
    state = PageState.empty().after(f"item-{i}" for i in range(500))
    assert len(state.encode()) < 3000


def test_too_many_pages_is_refused() -> None:
    state = PageState(frozenset(range(MAX_SHOWN + 1)))
    with pytest.raises(ValidationFailed, match="at most"):
        state.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "NQ",
        _b64(json.dumps({"o": 5}).encode()),  # an offset token of the old format
        _b64(b"\x02not zlib"),
        _b64(b"\x09" + zlib.compress(b"abcd")),  # unknown version
        _b64(b"\x02" + zlib.compress(b"abc")),  # not a whole number of hashes
        _b64(b"\x02" + zlib.compress(b"\0" * (4 * MAX_SHOWN + 8))),  # too many
        _b64(b"\x03abc"),  # plain hashes: too short for its checksum
        _b64(b"\x03abcde" + zlib.crc32(b"abcde").to_bytes(4, "big")),  # not whole hashes
        _b64(b"\x03abcd" + b"\0\0\0\0"),  # a wrong checksum (a token cut or altered)
        _b64(b"\x03" + b"\0" * (4 * RAW_UP_TO + 4)),  # more than are ever sent plain
        "A" * 20_000,
    ],
)
def test_bad_page_tokens_are_a_clear_422(token: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        decode_page_token(token)
    assert info.value.field == "page_token"


@pytest.mark.parametrize("count", [3, RAW_UP_TO, RAW_UP_TO + 1, 300])
def test_a_token_cut_anywhere_is_refused_never_read_as_fewer_items(count: int) -> None:
    """A cut token (a proxy's URL limit, a bad copy) must not decode to a prefix of the items
    shown, which would show them again: plain tokens by their CRC, compressed ones because the
    zlib stream must end (a cut stream inflates to a prefix without error)."""
    token = PageState.empty().after(f"item-{i}" for i in range(count)).encode()
    for cut in range(1, len(token)):
        with pytest.raises(ValidationFailed) as info:
            decode_page_token(token[:-cut])
        assert info.value.field == "page_token"


def test_a_compressed_token_with_bytes_after_its_stream_is_refused() -> None:
    state = PageState.empty().after(f"item-{i}" for i in range(RAW_UP_TO + 1))
    payload = base64.urlsafe_b64decode(state.encode() + "==")
    with pytest.raises(ValidationFailed):
        decode_page_token(_b64(payload + b"\0\0\0\0"))


def test_item_hash_is_stable() -> None:
    assert item_hash("star-wars") == item_hash("star-wars")
    assert item_hash("a") != item_hash("b")
    assert 0 <= item_hash("x") < 2**32


def test_boosts_move_items_up_whatever_the_sign_of_scores() -> None:
    scores = np.array([-1.0, -1.2, -1.4, -3.0], dtype=np.float32)
    boosted = boost_scores(scores, np.array([1.0, 1.0, 1.0, 100.0], dtype=np.float32))
    assert int(np.argmax(boosted)) == 3
    same = boost_scores(scores, np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(same, scores)
    # A zero boost sinks an item to the bottom.
    sunk = boost_scores(scores, np.array([0.0, 1, 1, 1], dtype=np.float32))
    assert int(np.argmin(sunk)) == 0


def test_exploration_slots() -> None:
    assert exploration_slots(10, 0.0) == []
    assert exploration_slots(1, 0.5) == []
    slots = exploration_slots(10, 0.2)
    assert len(slots) == 2 and 0 not in slots and max(slots) < 10
    assert len(exploration_slots(10, 0.5)) == 5


def test_interleave_places_extras_at_slots() -> None:
    out = interleave([10, 11, 12, 13], [0, 1], [1, 3], 5)
    assert out == [10, -1, 11, -2, 12]
    # Fewer extras than slots: the main list fills in.
    assert interleave([10, 11, 12], [], [1], 3) == [10, 11, 12]
    # Short main list: extras fill the rest.
    assert interleave([10], [0, 1], [2], 3) == [10, -1, -2]
