"""What a caller asks the service, as one frozen object per request path.

The API builds them (the route and the feed lane from one table of names and limits,
``smartrec.api.wire``); the service reads them and never re-declares their parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smartrec.pipeline.filters import ItemFilter, parse_filter
from smartrec.pipeline.rules import PageState, decode_page_token


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """Personalised recommendations for one user. The rule overrides (``diversity``,
    ``max_per_category``, ``exploration``) are None for the pipeline's defaults."""

    user_id: str
    n: int = 10
    exclude_seen: bool = True
    category: str | None = None
    filter: str | None = None
    page_token: str | None = None
    diversity: float | None = None
    max_per_category: int | None = None
    exploration: float | None = None

    def page_state(self) -> PageState:
        """The items shown so far in this session (raises ValidationFailed on a bad token)."""
        return decode_page_token(self.page_token)

    def item_filter(self) -> ItemFilter | None:
        """The parsed filter expression (raises ValidationFailed on a bad one)."""
        return parse_filter(self.filter) if self.filter else None


@dataclass(frozen=True, slots=True)
class SimilarRequest:
    """Items like one item (optionally within a category)."""

    item_id: str
    n: int = 10
    category: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """Recommendations for an anonymous visitor from the items they just touched."""

    item_ids: Sequence[str]
    n: int = 10


@dataclass(frozen=True, slots=True)
class RankRequest:
    """The caller's items ordered for one user."""

    user_id: str
    item_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class PopularRequest:
    """The most popular items, overall or in a window ending at the newest event."""

    n: int = 10
    category: str | None = None
    window: str | None = None
