"""The docs' tests use scripts/gen_docs.py itself: the generator and the tests cannot disagree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES_NODE = "tests/docs/test_examples.py::test_example["
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_docs.py"


def load_gen_docs() -> ModuleType:
    name = "smartrec_gen_docs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The docs' examples build on each other on one server, in page order (as
    ``gen_docs.py --examples`` runs them): put them back in that order after pytest-randomly
    shuffled the suite. Every other test keeps its random place."""
    at = [k for k, item in enumerate(items) if item.nodeid.startswith(EXAMPLES_NODE)]
    in_page_order = sorted(
        (items[k] for k in at),
        key=lambda item: item.callspec.indices["example"],  # type: ignore[attr-defined]
    )
    for k, item in zip(at, in_page_order, strict=True):
        items[k] = item
