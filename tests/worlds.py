"""The small seeded world the API, client and docs suites load: a synthetic catalogue and event
log (``smartrec.datasets.generate``) and facts about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smartrec.datasets import generate


@dataclass(frozen=True)
class World:
    items: list[dict[str, Any]]
    events: list[dict[str, Any]]
    seen: dict[str, set[str]]  # user -> items they have events on
    item_categories: dict[str, list[str]]
    categories: tuple[str, ...]
    newest_ts: int  # epoch seconds

    def heaviest_user(self) -> str:
        return max(sorted(self.seen), key=lambda u: len(self.seen[u]))

    def items_of(self, category: str) -> set[str]:
        return {i for i, cats in self.item_categories.items() if category in cats}

    def active_since(self, ts: int) -> set[str]:
        return {e["item_id"] for e in self.events if e["timestamp"] >= ts}

    def events_of(self, user_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["user_id"] == user_id]


def small_world() -> World:
    """60 users, 80 items in 4 categories, 3,000 events with ids ``w0``, ``w1``, ..."""
    syn = generate(60, 80, 3000, n_categories=4, seed=1)
    events = syn.events(id_prefix="w")
    seen: dict[str, set[str]] = {}
    for e in events:
        seen.setdefault(e["user_id"], set()).add(e["item_id"])
    items = syn.items()
    return World(
        items=items,
        events=events,
        seen=seen,
        item_categories={i["item_id"]: list(i["categories"]) for i in items},
        categories=tuple(syn.categories),
        newest_ts=max(e["timestamp"] for e in events),
    )
