"""The import architecture of ``pyproject.toml``'s ``[tool.importlinter]`` holds: layers (a module
imports only from the layers below its own), the client apart from the server, no import cycles.

Run through ``lint-imports`` itself, one contract per test, so that the test and the command
agree; a failure shows its report, which names each import that breaks the contract.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
CONTRACTS = [
    contract["id"]
    for contract in tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
]


def test_the_contracts_cover_layers_the_client_and_cycles() -> None:
    assert {"layers", "client", "acyclic"} <= set(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract_is_kept(contract: str) -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), str(CONFIG), "--contract", contract, "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-8000:]
    assert "1 kept, 0 broken" in report, report[-8000:]
