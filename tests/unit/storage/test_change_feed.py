"""The in-process change feed and the choice of adapter."""

from __future__ import annotations

import pytest

from smartrec.errors import ConfigError
from smartrec.storage.cache import open_change_feed


def test_local_feed_tells_every_listener_once_per_user_and_survives_a_failing_one() -> None:
    feed = open_change_feed("memory://")
    heard: list[list[str]] = []

    def broken(users: list[str]) -> None:
        raise RuntimeError("listener bug")

    feed.listen(broken)
    feed.listen(heard.append)
    feed.publish(["b", "a", "b"])
    feed.publish([])
    assert heard == [["a", "b"]]
    assert feed.shared is False
    feed.close()
    feed.publish(["c"])
    assert heard == [["a", "b"]]


def test_redis_urls_give_the_shared_feed_without_connecting() -> None:
    feed = open_change_feed("redis://127.0.0.1:1/0", prefix="smartrec:m:")
    assert feed.shared is True
    feed.publish(["u"])  # nothing listens on port 1: logged, not raised
    feed.close()


@pytest.mark.parametrize("url", ["", "memcached://x", "memory://x", "redis"])
def test_unknown_cache_urls_name_the_choices(url: str) -> None:
    with pytest.raises(ConfigError, match="memory://"):
        open_change_feed(url)
