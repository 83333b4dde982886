"""Generated pages match the code they are generated from; the docs' blocks are well marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.conftest import load_gen_docs

gen = load_gen_docs()


@pytest.mark.parametrize("name", sorted(gen.reference_pages()))
def test_reference_page_is_generated_from_the_code(name: str, tmp_path: Path) -> None:
    gen.write_reference(tmp_path)
    committed = gen.REFERENCE / name
    assert committed.is_file(), f"docs/reference/{name} is missing: run python scripts/gen_docs.py"
    assert committed.read_text(encoding="utf-8") == (tmp_path / name).read_text(encoding="utf-8"), (
        f"docs/reference/{name} is out of date: run python scripts/gen_docs.py"
    )


def test_included_files_are_current() -> None:
    stale = [
        page
        for page, text in gen.include_pages().items()
        if (gen.ROOT / page).read_text(encoding="utf-8") != text
    ]
    assert not stale, (
        f"{', '.join(stale)}: an included file changed: run python scripts/gen_docs.py"
    )


def test_blocks_and_markers() -> None:
    problems = gen.lint()
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_in_the_nav() -> None:
    in_nav = set(gen.nav_pages()[:-1])  # the last is README.md
    import yaml

    nav = yaml.safe_load(gen.MKDOCS_YML.read_text(encoding="utf-8"))["nav"]
    listed = {f"docs/{p}" for p in _leaves(nav)}
    pages = {str(p.relative_to(gen.ROOT)) for p in gen.DOCS.rglob("*.md")}
    assert pages <= listed, f"pages missing from mkdocs.yml's nav: {sorted(pages - listed)}"
    assert in_nav <= pages


def _leaves(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [leaf for child in node for leaf in _leaves(child)]
    if isinstance(node, dict):
        return [leaf for child in node.values() for leaf in _leaves(child)]
    return []


def test_readme_is_short_and_starts_with_the_two_setup_commands() -> None:
    text = gen.README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0].startswith("## Set-up"), headings[:1]
    first = gen.parse_blocks(text, "README.md")[0]
    assert first.code.split("\n") == ["make demo", "make test"], first.code
