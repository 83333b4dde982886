"""A real ``smartrec serve`` process on a free loopback port, for suites that test over HTTP
what a user runs (the client, the OpenAPI fuzzing)."""

from __future__ import annotations

import abc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 90.0


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    """Until ``process`` listens on loopback ``port``; fails (with its log) if it exits first
    or takes over 20 s."""
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not open port {port} in 20 s: {log.read_text()[-2000:]}")
        time.sleep(0.05)


class LoopbackProcess(abc.ABC):
    """A server binary on a free loopback port that tests stop and start again (same port),
    its output appended to ``<log_dir>/<name>-<port>.log``."""

    name = "server"

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log_dir / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line, listening on ``self.port``."""

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.process, self.port, self.log, self.name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def smartrec_serve(home: Path, **env_extra: str) -> Iterator[str]:
    """Start ``smartrec serve`` with ``SMARTREC_HOME=home`` and the given environment; yields
    its base URL once ``/healthz`` answers; stops it on exit. The log is ``home/server.log``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")}
    env |= {
        "SMARTREC_HOME": str(home),
        # No background threads racing with what the tests check.
        "SMARTREC_RELOAD_INTERVAL_S": "0",
        "SMARTREC_FEED_POLL_INTERVAL_S": "0",
        "SMARTREC_FEED_PRECOMPUTE_USERS": "0",
        "SMARTREC_LOG_LEVEL": "warning",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **env_extra,
    }
    command = [str(Path(sys.executable).with_name("smartrec")), "serve", "--port", str(port)]
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
