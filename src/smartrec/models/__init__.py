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


def check_params(name: str, params: dict[str, object]) -> list[tuple[str, str]]:
    """(parameter, problem) for each parameter ``name`` would refuse or misread, without
    fitting: unknown names, and values of another type than the default's (a string where a
    number is expected, a fraction where a count is, a non-finite number)."""
    import math

    defaults = get_algorithm(name).default_params()
    problems: list[tuple[str, str]] = []
    for key, value in params.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            problems.append((key, f"{name} has no parameter {key!r}; its parameters: {known}"))
            continue
        default = defaults[key]
        if default is None or isinstance(default, str):
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):  # 64.0 is the integer 64, as JSON has it
            ok = not isinstance(value, bool) and (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            )
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(float(value))  # type: ignore[arg-type]
        else:
            ok = True
        if not ok:
            kind = {bool: "a boolean", int: "an integer", float: "a number"}[type(default)]
            problems.append((key, f"{name}.{key} must be {kind} (got {value!r})"))
    return problems


def integral_params(name: str, params: dict[str, object]) -> dict[str, object]:
    """``params`` with integral numbers given as 64.0 turned into 64 where the parameter is an
    integer (after :func:`check_params` accepted them)."""
    defaults = get_algorithm(name).default_params()
    out = dict(params)
    for key, value in params.items():
        default = defaults.get(key)
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            out[key] = int(value)
    return out


def create(name: str, **params: object) -> Recommender:
    return get_algorithm(name)(**params)


__all__ = [
    "Recommender",
    "algorithm_names",
    "check_params",
    "create",
    "get_algorithm",
    "integral_params",
    "top_n",
]
