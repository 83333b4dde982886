"""Pure domain types: no I/O, no frameworks."""

from smartrec.domain.dataset import IdMap, Interactions
from smartrec.domain.records import CatalogItem, EventRecord, EventSnapshot
from smartrec.domain.weights import DEFAULT_EVENT_WEIGHTS, EventWeights

__all__ = [
    "DEFAULT_EVENT_WEIGHTS",
    "CatalogItem",
    "EventRecord",
    "EventSnapshot",
    "EventWeights",
    "IdMap",
    "Interactions",
]
