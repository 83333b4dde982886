"""The change feed on a real Redis: delivered across clients, survives Redis going away."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from smartrec.storage.cache import open_change_feed
from tests.redisproc import RedisCluster, RedisServer

pytest.importorskip("redis")


def _next(q: queue.Queue[list[str]], timeout: float = 10.0) -> list[str]:
    return q.get(timeout=timeout)


def test_notices_reach_other_processes_listeners_and_survive_a_redis_restart(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path).start()
    publisher = open_change_feed(server.url, prefix="t:")
    listener = open_change_feed(server.url, prefix="t:")
    other_deployment = open_change_feed(server.url, prefix="other:")
    heard: queue.Queue[list[str]] = queue.Queue()
    elsewhere: queue.Queue[list[str]] = queue.Queue()
    try:
        listener.listen(heard.put)
        other_deployment.listen(elsewhere.put)
        assert listener.connected.wait(10)  # type: ignore[attr-defined]
        assert other_deployment.connected.wait(10)  # type: ignore[attr-defined]
        publisher.publish(["u2", "u1", "u2"])
        assert _next(heard) == ["u1", "u2"]
        assert elsewhere.empty()

        server.stop()
        started = time.monotonic()
        publisher.publish(["lost"])  # Redis is gone: no exception, no long wait
        assert time.monotonic() - started < 2.0

        server.start()  # same port: everything reconnects by itself
        deadline = time.monotonic() + 20
        while True:
            publisher.publish(["back"])
            try:
                if _next(heard, timeout=0.5) == ["back"]:
                    break
            except queue.Empty:
                assert time.monotonic() < deadline, "the listener never came back"
    finally:
        for feed in (publisher, listener, other_deployment):
            feed.close()
        server.stop()


def test_notices_cross_a_redis_cluster(tmp_path: Path) -> None:
    """On a Redis Cluster (``redis+cluster://``) a notice published through one node reaches a
    listener on another."""
    cluster = RedisCluster(tmp_path).start()
    publisher = open_change_feed(cluster.url, prefix="t:")
    listener = open_change_feed(cluster.url, prefix="t:")
    heard: queue.Queue[list[str]] = queue.Queue()
    try:
        listener.listen(heard.put)
        assert listener.connected.wait(10)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while True:  # the subscription may take a moment to be in place on every node
            publisher.publish(["u1", "u2"])
            try:
                assert _next(heard, timeout=0.5) == ["u1", "u2"]
                break
            except queue.Empty:
                assert time.monotonic() < deadline, "no notice crossed the cluster"
    finally:
        publisher.close()
        listener.close()
        cluster.stop()
