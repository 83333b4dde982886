"""A feed as bytes, for the feed store every replica shares (Redis): no pickle, no model axis
assumptions beyond the model version.

Positions on the serving axis are the same on every replica for the model's own items (the
model's item axis), but items added to the catalogue after training are appended in the order
each replica learned of them. So positions of those items travel as their ids, and a replica
that does not know one of them yet treats the feed as missing (it builds its own).

Layout: ``SRF1``, a 4-byte header length, a JSON header (version, build time, retriever names,
the user's recent items, the ids of newer items, each array's dtype and shape), then the
arrays' bytes in header order.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from smartrec.pipeline.core import Candidates
from smartrec.serving.feeds import Feed, Ranked
from smartrec.serving.state import ServingState

MAGIC = b"SRF1"
_LENGTH = struct.Struct("<I")
#: Arrays of serving-axis positions (newer items travel as ids).
POSITIONS = ("items", "cand_items", "exclude")


def encode(feed: Feed, state: ServingState) -> bytes:
    r = feed.ranked
    extras: dict[str, int] = {}
    arrays: dict[str, np.ndarray | None] = {
        "items": r.items,
        "scores": r.scores,
        "popular": r.popular,
        "cand_items": r.cands.items,
        "cand_scores": r.cands.scores,
        "cand_ranks": r.cands.ranks,
        "exclude": r.exclude,
        "sources": r.sources,
        "hashes": r.hashes,
        "found": r.found,
    }
    for name in POSITIONS:
        arrays[name] = _out(np.asarray(arrays[name], dtype=np.int64), state, extras)
    present = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    header = {
        "version": feed.version,
        "built_ms": feed.built_ms,
        "names": list(r.cands.names),
        "recent": [int(i) for i in r.recent],
        "truncated": r.truncated,
        "extras": list(extras),
        "arrays": [[k, v.dtype.str, list(v.shape)] for k, v in present.items()],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = (v.tobytes() for v in present.values())
    return b"".join([MAGIC, _LENGTH.pack(len(head)), head, *body])


def decode(data: bytes, state: ServingState) -> Feed | None:
    """The feed, on this replica's axis; None when it is of another model version, names an
    item this replica does not know yet, or is not a feed this release wrote (another
    release's layout, damaged bytes): the caller then builds it. Never raises."""
    try:
        return _decode(data, state)
    except Exception:  # any bytes at all may be in a shared store
        return None


def _decode(data: bytes, state: ServingState) -> Feed | None:
    if data[:4] != MAGIC or len(data) < 8:
        return None
    (length,) = _LENGTH.unpack_from(data, 4)
    header: dict[str, Any] = json.loads(data[8 : 8 + length])
    if header["version"] != state.version:
        return None
    layout = [(n, np.dtype(d), tuple(int(k) for k in s)) for n, d, s in header["arrays"]]
    offset = 8 + length
    if offset + sum(d.itemsize * math.prod(s) for _, d, s in layout) != len(data):
        return None  # truncated or padded: not written by encode()
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, shape in layout:
        count = math.prod(shape)
        arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * dtype.itemsize
    extras = [state.position(str(i)) for i in header["extras"]]
    if extras and min(extras) < 0:
        return None
    for name in POSITIONS:
        coded = arrays[name]
        if coded.ndim != 1 or (coded == -1).any() or int(coded.min(initial=0)) < -1 - len(extras):
            return None
        arrays[name] = _in(coded, extras)
        if len(arrays[name]) and int(arrays[name].max()) >= state.n_total:
            return None  # a position this replica's axis does not have
    m, n_c = len(arrays["items"]), len(arrays["cand_items"])
    if n_c > m or any(len(arrays[k]) != m for k in ("scores", "popular")):
        return None
    cands = Candidates(
        arrays["cand_items"],
        arrays["cand_scores"],
        arrays["cand_ranks"],
        [str(n) for n in header["names"]],
    )
    ranked = Ranked(
        items=arrays["items"],
        scores=arrays["scores"],
        popular=arrays["popular"],
        cands=cands,
        recent=[int(i) for i in header["recent"]],
        exclude=arrays["exclude"],
        truncated=bool(header["truncated"]),
        sources=arrays.get("sources"),
        hashes=arrays.get("hashes"),
        found=arrays.get("found"),
    )
    return Feed(str(header["version"]), ranked, int(header["built_ms"]))


def _out(positions: np.ndarray, state: ServingState, extras: dict[str, int]) -> np.ndarray:
    """Model items as positions, newer items as -2 - (their index in ``extras``)."""
    newer = positions >= state.n_model
    if not newer.any():
        return positions.astype(np.int32 if state.n_model < 2**31 else np.int64)
    out = positions.copy()
    for at in np.flatnonzero(newer):
        item_id = state.item_ids[int(positions[at])]
        out[at] = -2 - extras.setdefault(item_id, len(extras))
    return out


def _in(coded: np.ndarray, extras: list[int]) -> np.ndarray:
    out = coded.astype(np.int64)
    newer = out <= -2
    if newer.any():
        out[newer] = np.asarray(extras, dtype=np.int64)[-2 - out[newer]]
    return out
