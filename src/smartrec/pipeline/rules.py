"""Business rules after ranking: page tokens that never repeat an item, boosts, exploration.

A page token carries short hashes of every item already shown in the session (base64url, with a
checksum; zlib-compressed past a few dozen items), not an offset: the ranking can change between
two pages (new events, a new model) and an offset would then repeat or skip items. The server
stays stateless.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from smartrec.errors import ValidationFailed

TOKEN_VERSION = 2  # zlib-compressed hashes
TOKEN_VERSION_RAW = 3  # plain hashes: zlib's set-up costs ~0.1 ms and saves nothing on a few
#: Tokens of more items than this are compressed (sorted 32-bit hashes shrink by about a fifth).
RAW_UP_TO = 64
#: A session may page through this many items; past it, the token is refused (422).
MAX_SHOWN = 2000
MAX_TOKEN_CHARS = 16_384


def item_hash(item_id: str) -> int:
    """32 bits of blake2b: collisions (one in 4e9 pairs) only hide an item, never repeat one."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "big")


@dataclass(frozen=True)
class PageState:
    shown: frozenset[int]  # hashes of the items already shown

    @classmethod
    def empty(cls) -> PageState:
        return cls(frozenset())

    def seen(self, item_id: str) -> bool:
        return item_hash(item_id) in self.shown

    def after(self, item_ids: Iterable[str]) -> PageState:
        return PageState(self.shown | {item_hash(i) for i in item_ids})

    def after_hashes(self, hashes: Iterable[int]) -> PageState:
        """:meth:`after` with the items' hashes known already (a feed keeps them)."""
        return PageState(self.shown | frozenset(hashes))

    def encode(self) -> str:
        if len(self.shown) > MAX_SHOWN:
            raise ValidationFailed(
                f"a session can page through at most {MAX_SHOWN} items", field="page_token"
            )
        raw = np.asarray(sorted(self.shown), dtype=">u4").tobytes()
        if len(self.shown) <= RAW_UP_TO:
            # A checksum, as zlib's stream has: a token cut short must not forget items.
            payload = bytes([TOKEN_VERSION_RAW]) + raw + zlib.crc32(raw).to_bytes(4, "big")
        else:
            payload = bytes([TOKEN_VERSION]) + zlib.compress(raw, 6)
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_page_token(token: str | None) -> PageState:
    """The items shown before; a clear 422 for anything that is not a token we issued."""
    if not token:
        return PageState.empty()
    bad = ValidationFailed(
        "page_token is not valid: pass the next_page_token of the previous page",
        field="page_token",
    )
    if len(token) > MAX_TOKEN_CHARS:
        raise bad
    try:
        payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except Exception:
        raise bad from None
    if payload[:1] == bytes([TOKEN_VERSION_RAW]):
        raw, check = payload[1:-4], payload[-4:]
        if len(payload) < 5 or len(raw) % 4 or len(raw) > RAW_UP_TO * 4:
            raise bad
        if zlib.crc32(raw).to_bytes(4, "big") != check:
            raise bad
        return PageState(frozenset(np.frombuffer(raw, dtype=">u4").tolist()))
    if not payload or payload[0] != TOKEN_VERSION:  # the JSON offset tokens of version 1 too
        raise bad
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(payload[1:], MAX_SHOWN * 4 + 4)
    except zlib.error:
        raise bad from None
    # A cut token inflates without error to a prefix of the list: it would forget items shown.
    if not inflate.eof or inflate.unused_data or len(raw) % 4 or len(raw) > MAX_SHOWN * 4:
        raise bad
    return PageState(frozenset(np.frombuffer(raw, dtype=">u4").tolist()))


def boost_scores(scores: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """Apply multiplicative boosts to scores of any sign (ranker scores can be negative).

    A boost b moves an item up by ln(b) standard deviations of the candidates' scores, the same
    as multiplying a positive, exponential-family score by b.
    """
    if scores.size == 0 or np.all(multipliers == 1.0):
        return scores
    spread = float(scores.std()) or 1.0
    with np.errstate(divide="ignore"):
        shift = np.log(np.maximum(multipliers, 0.0))
    return (scores + shift * spread).astype(np.float32)


def exploration_slots(n: int, share: float) -> list[int]:
    """Page positions given to exploration, spread over the page (never the first slot)."""
    k = min(n - 1, math.floor(n * share + 0.5)) if n > 1 else 0
    if k <= 0:
        return []
    step = n / k
    return sorted({min(n - 1, max(1, int(step * (j + 1)) - 1)) for j in range(k)})


def interleave(main: Sequence[int], extra: Sequence[int], slots: list[int], n: int) -> list[int]:
    """Positions of ``main`` with ``extra`` put at ``slots`` (as far as there are extras)."""
    if not extra:  # the usual page: no exploration
        return list(main[:n])
    out: list[int] = []
    mi = ei = 0
    want = set(slots[: len(extra)])
    for pos in range(n):
        if pos in want and ei < len(extra):
            out.append(-1 - ei)  # negative: an index into extra
            ei += 1
        elif mi < len(main):
            out.append(main[mi])
            mi += 1
        elif ei < len(extra):
            out.append(-1 - ei)
            ei += 1
    return out
