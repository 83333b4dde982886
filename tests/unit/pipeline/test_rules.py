"""Rules after ranking: page tokens, boosts, exploration slots."""

from __future__ import annotations

import base64
import json
import warnings
import zlib

import numpy as np
import pytest

from smartrec.errors import ValidationFailed
from smartrec.pipeline.rules import (
    MAX_SHOWN,
    MAX_TOKEN_CHARS,
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


# --- boundaries and exact outcomes (each pins a behaviour a mutation test found unchecked) ----


def test_the_too_many_items_error_names_the_page_token() -> None:
    with pytest.raises(ValidationFailed) as info:
        PageState(frozenset(range(MAX_SHOWN + 1))).encode()
    assert info.value.field == "page_token"
    assert str(info.value) == f"a session can page through at most {MAX_SHOWN} items"


@pytest.mark.parametrize("count", [0, 1, RAW_UP_TO + 2, MAX_SHOWN])
def test_empty_odd_and_largest_sessions_round_trip(count: int) -> None:
    """No items (a 5-byte plain token), a count whose bytes are no multiple of 5, and exactly
    MAX_SHOWN items, the most a session may page through."""
    state = PageState(frozenset(item_hash(f"item-{i}") for i in range(count)))
    assert len(state.shown) == count
    assert decode_page_token(state.encode()) == state


def test_tokens_ending_in_any_base64_character_round_trip() -> None:
    """Only the padding is stripped: a token may end in any of base64url's letters."""
    endings = set()
    for count in range(1, 400):
        state = PageState.empty().after(f"x{count}-{i}" for i in range(count % 90))
        token = state.encode()
        endings.add(token[-1])
        assert decode_page_token(token) == state
    assert {"X", "A", "="} & endings == {"X", "A"}


def test_a_bad_token_says_what_to_pass() -> None:
    with pytest.raises(ValidationFailed) as info:
        decode_page_token("garbage!")
    assert str(info.value) == (
        "page_token is not valid: pass the next_page_token of the previous page"
    )


def _stored_zlib(raw: bytes, empty_blocks: int) -> bytes:
    """A valid zlib stream of ``raw`` padded with empty stored blocks (any inflater reads it)."""
    blocks = b"\x00\x00\x00\xff\xff" * empty_blocks
    last = b"\x01" + len(raw).to_bytes(2, "little") + (0xFFFF - len(raw)).to_bytes(2, "little")
    return b"\x78\x01" + blocks + last + raw + zlib.adler32(raw).to_bytes(4, "big")


def test_a_token_of_max_token_chars_is_read_and_a_longer_one_refused() -> None:
    hashes = sorted(item_hash(f"item-{i}") for i in range(4))
    raw = np.asarray(hashes, dtype=">u4").tobytes()
    # 1 + 12 + 5 * 2452 + 16 bytes = 12288 bytes = exactly MAX_TOKEN_CHARS base64 characters.
    token = _b64(bytes([TOKEN_VERSION]) + _stored_zlib(raw, 2452))
    assert len(token) == MAX_TOKEN_CHARS
    assert decode_page_token(token) == PageState(frozenset(hashes))
    longer = _b64(bytes([TOKEN_VERSION]) + _stored_zlib(raw, 2453))  # 5 bytes more
    assert MAX_TOKEN_CHARS < len(longer) <= MAX_TOKEN_CHARS + 8
    with pytest.raises(ValidationFailed):
        decode_page_token(longer)


def test_plain_tokens_of_more_than_raw_up_to_hashes_are_refused_even_with_a_good_checksum() -> None:
    raw = np.arange(RAW_UP_TO + 1, dtype=">u4").tobytes()
    fine = np.arange(RAW_UP_TO, dtype=">u4").tobytes()
    assert decode_page_token(_b64(b"\x03" + fine + zlib.crc32(fine).to_bytes(4, "big")))
    with pytest.raises(ValidationFailed):
        decode_page_token(_b64(b"\x03" + raw + zlib.crc32(raw).to_bytes(4, "big")))


@pytest.mark.parametrize("extra_bytes", [1, 4])
def test_a_compressed_token_just_past_max_shown_is_refused(extra_bytes: int) -> None:
    raw = np.arange(MAX_SHOWN, dtype=">u4").tobytes() + b"\1" * extra_bytes
    with pytest.raises(ValidationFailed):
        decode_page_token(_b64(bytes([TOKEN_VERSION]) + zlib.compress(raw)))


def test_boost_values_are_log_multiples_of_the_scores_spread() -> None:
    scores = np.array([0.0, 4.0], dtype=np.float32)  # standard deviation 2
    boosted = boost_scores(scores, np.array([np.e, 1.0], dtype=np.float32))
    assert boosted.dtype == np.float32
    np.testing.assert_allclose(boosted, [2.0, 4.0], rtol=1e-6)
    # The same boost on every item shifts every score alike.
    both = boost_scores(scores, np.array([2.0, 2.0], dtype=np.float32))
    np.testing.assert_allclose(both, [2 * np.log(2), 4 + 2 * np.log(2)], rtol=1e-6)
    # Equal scores (no spread) move by ln(b) itself, a lone candidate too.
    np.testing.assert_allclose(
        boost_scores(np.array([3.0, 3.0], dtype=np.float32), np.array([np.e, 1.0])),
        [4.0, 3.0],
        rtol=1e-6,
    )
    alone = boost_scores(np.array([-2.0], dtype=np.float32), np.array([np.e**2]))
    np.testing.assert_allclose(alone, [0.0], atol=1e-6)


def test_no_boost_leaves_every_score_as_it_was() -> None:
    scores = np.array([1.5, -np.inf, 0.25], dtype=np.float32)  # -inf: a ruled-out candidate
    same = boost_scores(scores, np.ones(3, dtype=np.float32))
    np.testing.assert_array_equal(same, scores)
    empty = np.zeros(0, dtype=np.float32)
    assert boost_scores(empty, np.zeros(0, dtype=np.float32)).size == 0


def test_a_zero_boost_sinks_an_item_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sunk = boost_scores(
            np.array([1.0, 2.0], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
        )
    assert sunk[0] == -np.inf and sunk[1] == 2.0


@pytest.mark.parametrize(
    ("n", "share", "slots"),
    [
        (10, 0.1, [9]),
        (10, 0.2, [4, 9]),
        (10, 0.5, [1, 3, 5, 7, 9]),
        (2, 0.5, [1]),
        (3, 0.5, [1, 2]),
        (5, 0.2, [4]),
        (20, 0.25, [3, 7, 11, 15, 19]),
        (10, 0.04, []),  # rounds to no slot
        (0, 0.5, []),
    ],
)
def test_exploration_slots_exact_positions(n: int, share: float, slots: list[int]) -> None:
    """round(n * share) slots (at most n - 1), one at the end of each equal stretch of the
    page, never the first position."""
    assert exploration_slots(n, share) == slots


def test_interleave_exact_positions_when_main_runs_short() -> None:
    # Three extras at three slots, one after the other.
    assert interleave([10, 11, 12], [0, 1, 2], [1, 2, 3], 5) == [10, -1, -2, -3, 11]
    # The main list runs out: extras fill in order, each once, and never past the last extra.
    assert interleave([10], [0, 1, 2], [1], 4) == [10, -1, -2, -3]
    assert interleave([10], [0, 1], [2, 3], 4) == [10, -1, -2]
    assert interleave([10], [0], [5], 3) == [10, -1]
