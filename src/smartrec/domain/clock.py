"""Time and identity helpers every layer shares (no I/O)."""

from __future__ import annotations

import hashlib
import time


def now_ms() -> int:
    """Epoch milliseconds: the unit of every timestamp the store keeps."""
    return int(time.time() * 1000)


def erasure_key(user_id: str) -> str:
    """What is kept of an erased user: a hash of the id, enough to recognise the id when a
    model trained before the erasure is asked about it."""
    return hashlib.sha256(("smartrec-erasure\x1f" + user_id).encode()).hexdigest()
