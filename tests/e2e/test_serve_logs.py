"""`smartrec serve` logs the same way in every process: with two workers and JSON logs, the
access lines written by the worker processes are JSON objects, as are uvicorn's own; and a
server that needs keys and has none refuses in one line before any worker starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.serverproc import smartrec_serve


def test_two_workers_log_json_access_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with smartrec_serve(
        home, SMARTREC_WORKERS="2", SMARTREC_LOG_FORMAT="json", SMARTREC_LOG_LEVEL="info"
    ) as url:
        for _ in range(4):
            assert httpx.get(f"{url}/v1/popular?n=2").status_code == 200
    lines = [line for line in (home / "server.log").read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    access = [r for r in records if r["logger"] == "smartrec.access"]
    assert len(access) >= 4
    assert all(r["http"]["path"] == "/v1/popular?n=2" for r in access if "popular" in r["message"])
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert not any("color_message" in r for r in records)


def test_refuses_to_serve_without_keys_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")}
    env |= {"SMARTREC_HOME": str(tmp_path), "SMARTREC_AUTH": "required", "SMARTREC_WORKERS": "2"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("smartrec")), "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "API keys are required and none exists" in said, said
    assert "smartrec keys create" in said and "Traceback" not in said
