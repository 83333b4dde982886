"""A private ``redis-server`` (the machine's binary) on a free loopback port, for tests that stop
and restart Redis under a running system. Nothing is kept on disk."""

from __future__ import annotations

import shutil

import pytest

from tests.serverproc import LoopbackProcess


class RedisServer(LoopbackProcess):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/ensure-services.sh)")
        port = str(self.port)
        return [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start(self) -> RedisServer:
        self.launch()
        return self
