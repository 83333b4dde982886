"""A private ``redis-server`` (the machine's binary) on a free loopback port, for tests that stop
and restart Redis under a running system. Nothing is kept on disk."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.serverproc import LoopbackProcess, free_port


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


class RedisClusterNode(RedisServer):
    name = "redis-cluster"

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.bus_port = free_port()  # not port + 10000, which may be past 65535

    def command(self) -> list[str]:
        config = self.log.with_suffix(".nodes.conf")
        return [
            *super().command(),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-config-file",
            str(config),
            "--cluster-node-timeout",
            "2000",
        ]


class RedisCluster:
    """Three ``redis-server`` masters in cluster mode on loopback, the slots spread over them
    (``redis-cli --cluster create``): the Redis Cluster shape of ElastiCache's cluster mode or
    Memorystore for Redis Cluster. Nothing is kept once stopped."""

    def __init__(self, log_dir: Path, nodes: int = 3) -> None:
        self.nodes = [RedisClusterNode(log_dir) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed (scripts/ensure-services.sh)")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        deadline = time.monotonic() + 30
        while True:  # every node agrees the cluster is up
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return self
            if time.monotonic() > deadline:
                pytest.fail(f"the Redis cluster did not come up: {states}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
