"""What the service answers: items with typed reasons, as the HTTP answer serialises them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired

from typing_extensions import TypedDict


class Reason(TypedDict):
    """One reason of an answer item: a plain dict, exactly as the HTTP answer carries it (the
    keys in the order they are set), so that answers serialise with no conversion."""

    kind: str
    item_id: NotRequired[str]
    title: NotRequired[str | None]
    via: NotRequired[str]
    algorithm: NotRequired[str]
    window: NotRequired[str]
    category: NotRequired[str]
    exploration: NotRequired[bool]


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: str
    score: float
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Results:
    items: list[Recommendation]
    model_version: str | None
    next_page_token: str | None = None
