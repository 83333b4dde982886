"""Algorithms behind one interface (:class:`Recommender`)."""

from __future__ import annotations

from smartrec.errors import ModelError
from smartrec.models.base import Recommender, top_n

_ALGORITHMS: dict[str, str] = {
    "popularity": "smartrec.models.popularity:Popularity",
    "itemknn": "smartrec.models.itemknn:ItemKNN",
    "ease": "smartrec.models.ease:EASE",
    "als": "smartrec.models.factor:ALS",
    "bpr": "smartrec.models.factor:BPR",
}


def algorithm_names() -> list[str]:
    return list(_ALGORITHMS)


def get_algorithm(name: str) -> type[Recommender]:
    """The class registered under ``name``; imported lazily so ``implicit`` loads only when used."""
    import importlib

    try:
        target = _ALGORITHMS[name]
    except KeyError:
        raise ModelError(f"unknown algorithm {name!r}; known: {', '.join(_ALGORITHMS)}") from None
    module, _, attr = target.partition(":")
    klass: type[Recommender] = getattr(importlib.import_module(module), attr)
    return klass


def create(name: str, **params: object) -> Recommender:
    return get_algorithm(name)(**params)


__all__ = ["Recommender", "algorithm_names", "create", "get_algorithm", "top_n"]
