"""Time windows written as text (``24h``, ``7d``, ``2w``): the spec validates them, the item
statistics and the retrievers count events in them."""

from __future__ import annotations

WINDOW_UNITS = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def window_seconds(window: str) -> float:
    """'7d' -> seconds (h, d, w)."""
    text = window.strip()
    try:
        value = float(text[:-1])
        unit = WINDOW_UNITS[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"window {window!r} is not like 24h, 7d or 2w") from None
    if value <= 0:
        raise ValueError(f"window {window!r} must be positive")
    return value * unit
