"""The OpenAPI document tells the truth: schemathesis ``--checks all`` over the whole API of a
real server with keys required finds nothing (training and promotion excluded: they change the
champion under the run; key revocation excluded: it revokes the fuzzer's own key; their inputs
are covered by the API suites).

It generates requests from the document and checks every answer against it: statuses, content
types, headers and bodies declared; schema-valid requests accepted and invalid ones refused;
auth enforced; 405 with ``Allow``. Examples per operation are bounded (``FUZZ_EXAMPLES``) so
that CI stays quick; raise the environment variable for a longer hunt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from smartrec.datasets import generate
from tests.serverproc import smartrec_serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def _load(url: str, token: str) -> None:
    syn = generate(40, 60, 1500, n_categories=4, seed=3)
    events = syn.events()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        http.post("/v1/items", json={"items": syn.items()}).raise_for_status()
        http.post("/v1/events", json={"events": events}).raise_for_status()
        job = http.post("/v1/training-jobs", json={"pipeline": {"ease": {"l2": 50.0}}}).json()
        deadline = time.monotonic() + 120
        while (state := http.get(f"/v1/training-jobs/{job['job_id']}").json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["status"] == "succeeded", state


@pytest.mark.slow
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    smartrec = str(Path(sys.executable).with_name("smartrec"))
    created = subprocess.run(
        [smartrec, "keys", "create", "--scope", "read,ingest,admin", "--json"],
        env={**os.environ, "SMARTREC_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(created.stdout)["token"]
    with smartrec_serve(home, SMARTREC_AUTH="required", SMARTREC_ACCESS_LOG="false") as url:
        _load(url, token)
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(ROOT / "tests" / "e2e" / "schemathesis.toml"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "-H",
                f"Authorization: Bearer {token}",
                "--max-examples",
                str(EXAMPLES),
                "--exclude-path",
                "/v1/training-jobs",
                "--exclude-path-regex",
                "/promote$",
                # Revoking keys: the fuzzer finds its own key's id in GET /v1/keys and revokes
                # it (tests/api/test_auth.py covers revocation).
                "--exclude-path",
                "/v1/keys/{key_id}",
                "--workers",
                "1",
                "--seed",
                "1",
                "--no-color",
            ],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.st_hooks", "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    summary = run.stdout[-6000:]
    assert run.returncode == 0, f"schemathesis found failures:\n{summary}\n{run.stderr[-2000:]}"
    assert "generated" in summary
