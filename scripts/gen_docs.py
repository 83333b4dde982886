#!/usr/bin/env python3
"""Generate the parts of the docs that must not drift from the code, and run the docs' examples.

    python scripts/gen_docs.py              # write docs/reference/*.md and the included files
    python scripts/gen_docs.py --check      # exit 1 when a committed page differs from the code
    python scripts/gen_docs.py --examples   # also run every example against a fresh server and
                                            # write the outputs of the blocks marked <!-- output -->

What is generated:

* ``docs/reference/configuration.md`` from ``smartrec.config.Settings``: each field's name,
  ``SMARTREC_`` environment variable, type, constraints, default, and the ``#:`` comment above
  it (a field without a comment of its own directly below a commented one shares that comment);
* ``docs/reference/cli.md`` from the typer app ``smartrec.cli.app``, walked as a click command;
* the fenced block below an ``<!-- include: PATH -->`` line: the file at PATH (from the root);
* the output block below an example marked ``<!-- output -->`` (with ``--examples`` only).

Examples are the ``bash`` and ``python`` fenced blocks of README.md and docs/**/*.md. They are
written against ``http://127.0.0.1:8000``; :class:`DocsServer` starts ``smartrec serve`` on a
free port with its own ``SMARTREC_HOME``, loads a small seeded synthetic world shaped like the
demo's data (numeric ids, genres, ``release_year``), trains an EASE champion (version 1), and
examples run against it in page order (mkdocs.yml's nav, then README.md). tests/docs runs them
the same way. The markers are documented in docs/development.md.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MKDOCS_YML = ROOT / "mkdocs.yml"
REFERENCE = DOCS / "reference"
#: The base URL examples are written with; replaced by the test server's.
BASE_URL = "http://127.0.0.1:8000"
REGENERATE = "run python scripts/gen_docs.py"
REGENERATE_EXAMPLES = "run python scripts/gen_docs.py --examples"

#: Fenced-block languages that run, and those that never may (use bash / python instead).
RUN_LANGS = ("bash", "python")
FORBIDDEN_LANGS = ("sh", "shell", "console", "zsh", "py", "pycon", "python3", "shell-session")
OUTPUT_LANGS = ("json", "text")
MARKERS = ("skip", "expect", "output", "include", "settings-file")


# =================================================================================== reference
def _md(text: str) -> str:
    """reST-ish comment text to Markdown: ``x`` and :role:`x` become `x`; pipes escaped."""
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return text.replace("|", "\\|")


def _setting_comments(source: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``#:`` comment and the annotation (as written) of each field of ``Settings``."""
    tree = ast.parse(source)
    lines = source.splitlines()
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    comments: dict[str, str] = {}
    annotations: dict[str, str] = {}
    previous_end: int | None = None
    previous_comment = ""
    group_head = ""
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            previous_end = None
            continue
        name = node.target.id
        block: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#:"):
            block.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if block:
            comment, group_head = " ".join(block), name
            comments[name] = comment
        elif previous_end is not None and node.lineno == previous_end + 1 and previous_comment:
            comment = previous_comment  # one comment above a group of fields: point at it
            comments[name] = f"See ``{group_head}``."
        else:
            comment = comments[name] = ""
        annotation = node.annotation
        # Annotated[T, ...] is T to a reader: the rest is for pydantic.
        if (
            isinstance(annotation, ast.Subscript)
            and isinstance(annotation.value, ast.Name)
            and annotation.value.id == "Annotated"
            and isinstance(annotation.slice, ast.Tuple)
        ):
            annotation = annotation.slice.elts[0]
        annotations[name] = ast.get_source_segment(source, annotation) or ""
        previous_end, previous_comment = node.end_lineno, comment
    return comments, annotations


def _default_text(value: Any) -> str:
    if value is None:
        return "*unset*"
    if isinstance(value, Path):
        value = str(value)
    return "`" + json.dumps(value, default=str).replace("|", "\\|") + "`"


def _constraints(metadata: list[Any]) -> str:
    words = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥"}
    parts = []
    for item in metadata:
        for attr, word in words.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{word} {value}")
    return ", ".join(parts)


def render_configuration() -> str:
    from pydantic_core import PydanticUndefined

    import smartrec.config as config
    from smartrec.config import Settings

    comments, annotations = _setting_comments(inspect.getsource(config))
    prefix = Settings.model_config.get("env_prefix", "")
    rows = []
    for name, info in Settings.model_fields.items():
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:  # pragma: no cover - every setting has a default
            default = None
        kind = f"`{annotations.get(name) or info.annotation}`".replace("|", "\\|")
        limits = _constraints(info.metadata)
        if limits:
            kind += f" ({limits})"
        description = _md(info.description or comments.get(name, "")) or "—"
        env = f"`{prefix}{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {kind} | {_default_text(default)} | {description} |")
    head = f"""\
<!-- generated by scripts/gen_docs.py from smartrec.config.Settings: do not edit; {REGENERATE} -->
# Configuration reference

*Generated from `smartrec.config.Settings` by `scripts/gen_docs.py`: do not edit this page.*
Where settings come from, and how to write dicts and lists in the environment, is in
[Configuration](../configuration.md). The descriptions are the `#:` comments in
`src/smartrec/config.py`; *unset* means the default is computed (see the description).

| setting | environment variable | type | default | description |
|---|---|---|---|---|
"""
    return head + "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_cli() -> str:
    import typer

    from smartrec.cli import app

    root = typer.main.get_command(app)
    out = [
        f"<!-- generated by scripts/gen_docs.py from smartrec.cli.app: do not edit; "
        f"{REGENERATE} -->",
        "# Command-line reference",
        "",
        "*Generated from the typer app `smartrec.cli.app` by `scripts/gen_docs.py`: do not edit "
        "this page.* Every command also takes `--help`. [Command line](../cli.md) says what "
        "each command is for.",
        "",
    ]

    def walk(command: Any, ctx: Any, path: list[str]) -> None:
        name = " ".join(path)
        out.append(f"## `{name}`")
        out.append("")
        if command.help:
            out.append(inspect.cleandoc(command.help))
            out.append("")
        usage = " ".join([name, *command.collect_usage_pieces(ctx)])
        out.extend(["```text", usage, "```", ""])
        rows = []
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False) or "--help" in getattr(param, "opts", []):
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            what, help_text = record
            kind = "argument" if param.param_type_name == "argument" else "option"
            rows.append(f"| `{_cell(what)}` | {kind} | {_cell(help_text) or '—'} |")
        if rows:
            out.extend(["| parameter | kind | help |", "|---|---|---|", *rows, ""])
        subcommands = getattr(command, "list_commands", None)
        if subcommands is not None:
            for sub_name in subcommands(ctx):
                sub = command.get_command(ctx, sub_name)
                if sub is None or getattr(sub, "hidden", False):
                    continue
                walk(sub, sub.context_class(sub, info_name=sub_name, parent=ctx), [*path, sub_name])

    walk(root, root.context_class(root, info_name="smartrec"), ["smartrec"])
    return "\n".join(out).rstrip() + "\n"


def reference_pages() -> dict[str, str]:
    """Generated page name (under docs/reference) -> content."""
    return {"configuration.md": render_configuration(), "cli.md": render_cli()}


def write_reference(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in reference_pages().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# =================================================================================== markdown
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<name>[a-z][a-z-]*)\s*(?::\s*(?P<value>.*?))?\s*-->\s*$")


@dataclass
class Block:
    """A fenced code block of a page; lines are 0-based indexes into the page's lines."""

    page: str  # relative to the repository root
    start: int  # the opening fence
    end: int  # the closing fence
    lang: str
    info: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)
    output: Block | None = None  # the block showing this example's output, if any

    @property
    def id(self) -> str:
        return f"{self.page}:{self.start + 1}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS and "skip" not in self.markers

    @property
    def expect(self) -> int | None:
        value = self.markers.get("expect")
        return int(value) if value else None


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block with the HTML-comment markers on the lines right above it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        info = match["info"].strip()
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if close and close["fence"].startswith(fence) and not close["info"].strip():
                break
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        markers: dict[str, str] = {}
        k = i - 1
        while k >= 0 and (marker := _MARKER.match(lines[k])):
            markers[marker["name"]] = marker["value"] or ""
            k -= 1
        lang = info.split()[0] if info else ""
        blocks.append(Block(page, i, j, lang, info, "\n".join(body), markers))
        i = j + 1
    # An example marked `output` owns the json/text block that follows it after blank lines only.
    for before, after in itertools.pairwise(blocks):
        if before.lang in RUN_LANGS and "output" in before.markers:
            between = lines[before.end + 1 : after.start]
            if (
                after.lang in OUTPUT_LANGS
                and not after.markers
                and not any(s.strip() for s in between)
            ):
                before.output = after
    return blocks


def nav_pages() -> list[str]:
    """Markdown pages in mkdocs.yml's nav order, then other docs pages, then README.md."""
    import yaml

    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    ordered: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, str):
            if node.endswith(".md") and "://" not in node:
                ordered.append(f"docs/{node}")
        elif isinstance(node, list):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)

    visit(config.get("nav", []))
    present = [p for p in dict.fromkeys(ordered) if (ROOT / p).is_file()]
    rest = sorted(
        str(p.relative_to(ROOT))
        for p in DOCS.rglob("*.md")
        if str(p.relative_to(ROOT)) not in present
    )
    return [*present, *rest, "README.md"]


def page_blocks() -> Iterator[Block]:
    for page in nav_pages():
        yield from parse_blocks((ROOT / page).read_text(encoding="utf-8"), page)


def examples() -> list[Block]:
    """Every bash and python block, in the order they run (skipped ones included)."""
    return [b for b in page_blocks() if b.lang in RUN_LANGS]


def lint() -> list[str]:
    """Mistakes in the docs' blocks and markers that would let an example go unchecked."""
    problems = []
    for block in page_blocks():
        where = block.id
        if block.lang in FORBIDDEN_LANGS:
            problems.append(
                f"{where}: ```{block.lang} blocks are not run: use ```bash or ```python "
                "(with <!-- skip: reason --> for what must not run in a test)"
            )
        for name, value in block.markers.items():
            if name not in MARKERS:
                problems.append(f"{where}: unknown marker <!-- {name} -->; known: {MARKERS}")
            elif name == "skip" and not value:
                problems.append(f"{where}: <!-- skip --> needs a reason: <!-- skip: why -->")
            elif name == "expect" and not re.fullmatch(r"[1-5]\d\d", value):
                problems.append(f"{where}: <!-- expect: {value} --> is not an HTTP status")
            elif name in ("output", "expect") and block.lang not in RUN_LANGS:
                problems.append(f"{where}: <!-- {name} --> is for ```bash and ```python blocks")
            elif name == "include" and not (ROOT / value).is_file():
                problems.append(f"{where}: <!-- include: {value} -->: no such file")
        if "output" in block.markers and block.lang in RUN_LANGS and block.output is None:
            problems.append(
                f"{where}: marked <!-- output --> but no output block: {REGENERATE_EXAMPLES}"
            )
        if block.lang in RUN_LANGS and "skip" in block.markers and "output" in block.markers:
            problems.append(f"{where}: a skipped example cannot show output")
        if "settings-file" in block.markers:
            problems.extend(f"{where}: {p}" for p in _settings_file_problems(block.code))
    return problems


def _settings_file_problems(text: str) -> list[str]:
    """Why a TOML block would not load as a settings file (empty: it loads)."""
    from smartrec.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "smartrec.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_settings(path)
        except Exception as exc:  # a docs check: report whatever the loader says
            return [f"not a valid settings file: {exc}"]
    return []


# ==================================================================================== includes
def render_includes(text: str, page: str) -> str:
    """The page with each block under <!-- include: PATH --> replaced by that file."""
    lines = text.splitlines()
    for block in reversed(parse_blocks(text, page)):
        path = block.markers.get("include")
        if not path:
            continue
        content = (ROOT / path).read_text(encoding="utf-8").rstrip("\n").splitlines()
        lines[block.start + 1 : block.end] = content
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def include_pages() -> dict[str, str]:
    """Pages that have includes -> their text with the includes up to date."""
    out = {}
    for page in nav_pages():
        text = (ROOT / page).read_text(encoding="utf-8")
        if "<!-- include:" in text:
            out[page] = render_includes(text, page)
    return out


# ===================================================================================== outputs
def format_output(stdout: str) -> tuple[str, str]:
    """(language, text) of an example's output: JSON laid out one list element a line."""
    text = stdout.strip()
    try:
        value = json.loads(text)
    except ValueError:
        return "text", text
    return "json", _layout(value)


def _layout(value: Any) -> str:
    compact = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict) or len(compact) <= 100:
        return compact
    lines = ["{"]
    entries = list(value.items())
    for n, (key, item) in enumerate(entries):
        comma = "," if n < len(entries) - 1 else ""
        head = f"  {json.dumps(key)}: "
        if isinstance(item, list) and item and len(json.dumps(item, ensure_ascii=False)) > 80:
            inner = [f"    {json.dumps(x, ensure_ascii=False)}" for x in item]
            lines.append(head + "[")
            lines.append(",\n".join(inner))
            lines.append(f"  ]{comma}")
        elif isinstance(item, dict) and len(json.dumps(item, ensure_ascii=False)) > 80:
            inner_text = _layout(item).replace("\n", "\n  ")
            lines.append(head + inner_text + comma)
        else:
            lines.append(head + json.dumps(item, ensure_ascii=False) + comma)
    lines.append("}")
    return "\n".join(lines)


def same_output(shown: Block, lang: str, text: str) -> bool:
    """Whether an output block shows this output (JSON numbers compared to 1e-6)."""
    if shown.lang != lang:
        return False
    if lang == "json":
        try:
            return _close(json.loads(shown.code), json.loads(text))
        except ValueError:
            return False
    return shown.code.strip() == text.strip()


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def write_outputs(page: str, outputs: dict[int, tuple[str, str]]) -> bool:
    """Write {example start line: (lang, text)} below the examples of a page; True if changed."""
    path = ROOT / page
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for block in reversed(parse_blocks(text, page)):
        if block.start not in outputs:
            continue
        lang, body = outputs[block.start]
        new = [f"```{lang}", *body.splitlines(), "```"]
        if block.output is not None:
            lines[block.end + 1 : block.output.end + 1] = new
        else:
            lines[block.end + 1 : block.end + 1] = new
    new_text = "\n".join(lines) + "\n"
    if new_text != text:
        path.write_text(new_text, encoding="utf-8")
        return True
    return False


# ====================================================================================== server
def docs_world() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A small seeded world shaped like the demo's MovieLens data, so examples run on both.

    The synthetic generator's world of tests/api (60 users, 80 items, 3,000 events), with
    numeric string ids (users "1".."60", items "1".."80"), genres for categories, titles and
    a ``release_year`` attribute.
    """
    from smartrec.datasets import generate

    syn = generate(60, 80, 3000, n_categories=4, seed=1)
    genres = dict(zip(syn.categories, ("Comedy", "Drama", "Romance", "Action"), strict=True))
    user_of = {u: str(n + 1) for n, u in enumerate(syn.user_ids.tolist())}
    item_of = {i: str(n + 1) for n, i in enumerate(syn.item_ids.tolist())}
    items = []
    for raw in syn.items():
        item_id = item_of[raw["item_id"]]
        items.append(
            {
                "item_id": item_id,
                "title": f"Movie {item_id}",
                "categories": [genres[c] for c in raw["categories"]],
                "attributes": {"release_year": 1960 + (int(item_id) * 7) % 40},
            }
        )
    events = [
        {
            "event_id": f"w{k}",
            "user_id": user_of[u],
            "item_id": item_of[i],
            "type": t,
            "timestamp": int(ts),
        }
        for k, (u, i, t, ts) in enumerate(
            zip(
                syn.event_user_ids().tolist(),
                syn.event_item_ids().tolist(),
                syn.event_type_names().tolist(),
                syn.timestamp.tolist(),
                strict=True,
            )
        )
    ]
    return items, events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    statuses: list[int]
    seconds: float


#: Run before every bash example: fail on any error, and report each curl's HTTP status.
BASH_PRELUDE = r"""set -euo pipefail
curl() { command curl -sS -w '%{stderr}\n@@http-status %{http_code}\n' "$@"; }
"""


class DocsServer:
    """``smartrec serve`` on a free port with its own home, the docs world, and version 1."""

    #: The champion the examples see: EASE, fast to train on the small world.
    TRAINING = {"pipeline": {"ease": {"l2": 50.0}}}

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.work = root / "work"
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")}
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            SMARTREC_HOME=str(self.home),
            SMARTREC_HOST="127.0.0.1",
            SMARTREC_PORT=str(self.port),
            SMARTREC_LOG_LEVEL="warning",
            PATH=bin_dir + os.pathsep + env.get("PATH", ""),
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            PYTHONUNBUFFERED="1",
        )
        self.env = env

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> DocsServer:
        self.home.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        smartrec = Path(sys.executable).parent / "smartrec"
        command = [str(smartrec)] if smartrec.exists() else [sys.executable, "-m", "smartrec.cli"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.work,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_healthy()
            self._load_world()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"smartrec serve exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"smartrec serve did not answer in {timeout}s:\n{self.log_tail()}")

    def _load_world(self, timeout: float = 300.0) -> None:
        import httpx

        items, events = docs_world()
        with httpx.Client(base_url=self.base_url, timeout=120) as http:
            http.post("/v1/items", json={"items": items}).raise_for_status()
            http.post("/v1/events", json={"events": events}).raise_for_status()
            response = http.post("/v1/training-jobs", json=self.TRAINING)
            response.raise_for_status()
            job_id = response.json()["job_id"]
            deadline = time.monotonic() + timeout
            while True:
                job = http.get(f"/v1/training-jobs/{job_id}").json()
                if job["status"] == "succeeded":
                    return
                if job["status"] == "failed" or time.monotonic() > deadline:
                    raise RuntimeError(f"training the docs world's model failed: {job}")
                time.sleep(0.2)

    # ------------------------------------------------------------------ examples
    def run(self, example: Block, timeout: float = 240.0) -> Result:
        code = example.code.replace(BASE_URL, self.base_url)
        if example.lang == "bash":
            argv = ["bash", "-c", BASH_PRELUDE + code]
        else:
            argv = [sys.executable, "-c", code]
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv, env=self.env, cwd=self.work, capture_output=True, text=True, timeout=timeout
            )
            rc, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            rc, stdout, stderr = (
                124,
                _text(exc.stdout),
                _text(exc.stderr) + f"\n(timed out after {timeout}s)",
            )
        statuses = [int(s) for s in re.findall(r"^@@http-status (\d+)$", stderr, re.M)]
        stderr = re.sub(r"\n?^@@http-status \d+$", "", stderr, flags=re.M).strip()
        stdout = stdout.replace(self.base_url, BASE_URL)
        return Result(rc, stdout, stderr, statuses, time.monotonic() - started)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def problems_of(example: Block, result: Result) -> list[str]:
    """Why a run of an example is not what its page claims (empty: it is)."""
    problems = []
    if result.rc != 0:
        problems.append(f"exit status {result.rc}")
    expect = example.expect
    for status in result.statuses:
        if status == 0:
            problems.append("a curl got no HTTP answer")
        elif not (200 <= status < 300 or status == expect):
            problems.append(
                f"a curl got HTTP {status}" + (f" (expected 2xx or {expect})" if expect else "")
            )
    if expect is not None and expect not in result.statuses:
        problems.append(f"no curl got the expected HTTP {expect} (got {result.statuses})")
    return problems


def describe(example: Block, result: Result, problems: list[str]) -> str:
    return (
        f"{example.id}: {'; '.join(problems)}\n--- example\n{example.code}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def run_examples(write: bool) -> int:
    """Run every example against a fresh server; write the marked outputs when ``write``."""
    failures: list[str] = []
    outputs: dict[str, dict[int, tuple[str, str]]] = {}
    ran = skipped = 0
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="smartrec-docs-") as tmp,
        DocsServer(Path(tmp)) as server,
    ):
        print(f"server ready in {time.monotonic() - started:.1f}s at {server.base_url}")
        for example in examples():
            if not example.runs:
                skipped += 1
                continue
            ran += 1
            result = server.run(example)
            problems = problems_of(example, result)
            if problems:
                failures.append(describe(example, result, problems))
                print(f"FAIL {example.id} ({result.seconds:.1f}s): {'; '.join(problems)}")
                continue
            print(f"ok   {example.id} ({result.seconds:.1f}s)")
            if "output" in example.markers:
                lang, text = format_output(result.stdout)
                outputs.setdefault(example.page, {})[example.start] = (lang, text)
                if not write and (
                    example.output is None or not same_output(example.output, lang, text)
                ):
                    failures.append(
                        f"{example.id}: the output shown is not what it prints now "
                        f"({REGENERATE_EXAMPLES}):\n{text}"
                    )
    if write:
        for page, page_outputs in outputs.items():
            if write_outputs(page, page_outputs):
                print(f"wrote outputs into {page}")
    seconds = time.monotonic() - started
    print(f"{ran} examples run, {skipped} skipped, {len(failures)} failed, {seconds:.0f}s")
    for failure in failures:
        print("\n" + failure)
    return 1 if failures else 0


# ======================================================================================== main
def generate(check: bool) -> int:
    """Write (or with ``check``, compare) the reference pages and the includes."""
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_reference(Path(tmp)):
            target = REFERENCE / path.name
            text = path.read_text(encoding="utf-8")
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target.relative_to(ROOT)))
                if not check:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
    for page, text in include_pages().items():
        if (ROOT / page).read_text(encoding="utf-8") != text:
            stale.append(page)
            if not check:
                (ROOT / page).write_text(text, encoding="utf-8")
    if check:
        if stale:
            print(f"out of date: {', '.join(stale)}: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    for page in stale:
        print(f"wrote {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument(
        "--examples", action="store_true", help="run the examples and write the marked outputs"
    )
    args = parser.parse_args(argv)
    problems = lint()
    for problem in problems:
        print(problem, file=sys.stderr)
    status = generate(check=args.check)
    if args.examples:
        status = max(status, run_examples(write=not args.check))
    return max(status, 1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
