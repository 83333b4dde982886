"""Every example of the README and docs/ runs against a real ``smartrec serve``.

One server for the module (``scripts/gen_docs.py``'s :class:`DocsServer`: its own home, the
docs world, an EASE champion as version 1); the examples run in page order, as
``python scripts/gen_docs.py --examples`` runs them when it writes the outputs, so the state
each example sees is the same in both. Run the whole module, not single examples: later
examples depend on what earlier ones sent. How to mark an example is in docs/development.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.docs.conftest import load_gen_docs

gen = load_gen_docs()
EXAMPLES = [example for example in gen.examples() if example.runs]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with gen.DocsServer(tmp_path_factory.mktemp("docs-server")) as running:
        yield running


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_example(server: Any, example: Any) -> None:
    result = server.run(example)
    problems = gen.problems_of(example, result)
    if problems:
        pytest.fail(
            gen.describe(example, result, problems) + f"\n--- server log\n{server.log_tail()}"
        )
    if "output" in example.markers:
        lang, text = gen.format_output(result.stdout)
        assert example.output is not None, (
            f"{example.id} is marked <!-- output --> but shows none: {gen.REGENERATE_EXAMPLES}"
        )
        assert gen.same_output(example.output, lang, text), (
            f"{example.id}: the output shown is not what the example prints now "
            f"({gen.REGENERATE_EXAMPLES}):\n{text}"
        )
