"""Real time across processes: two ``smartrec serve`` replicas, one ``smartrec worker``, Kafka
(tansu), Redis and PostgreSQL, each a real process.

An event posted to replica A goes through Kafka to the worker, which writes it to PostgreSQL and
tells every replica through Redis; replica B drops the user's feed and its next answer ranks
with the event. Both replicas run without their poll of the event log
(``SMARTREC_FEED_POLL_INTERVAL_S=0``), so the change can only come through Redis: with Redis
stopped, B keeps serving (200) the feed it has, and once Redis is back the changes flow again
without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartrec.serving.shared_feeds import SHARED_MARGIN_MS
from tests.e2e.commands import wait_until
from tests.kafka import Tansu
from tests.redisproc import RedisServer
from tests.serverproc import smartrec_serve
from tests.worlds import small_world

pytest.importorskip("confluent_kafka")
pytest.importorskip("redis")

JOB_TIMEOUT_S = 300.0


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")} | env
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("smartrec")), "worker"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _subscribers(url: str) -> int:
    """Serving processes listening on the change feed (Redis's own count)."""
    import redis

    with redis.Redis.from_url(url) as client:
        counts = dict(client.pubsub_numsub("smartrec:smartrec:events"))
    return int(counts.get(b"smartrec:smartrec:events", 0))


def _top(client: httpx.Client, user: str) -> list[str]:
    r = client.get(f"/v1/users/{user}/recommendations", params={"n": 5})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def _click(client: httpx.Client, user: str, item: str) -> None:
    event = {
        "event_id": f"fresh-{user}-{item}",
        "user_id": user,
        "item_id": item,
        "type": "click",
        "timestamp": int(time.time()),
    }
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 202, r.text


def _built(client: httpx.Client) -> dict[str, Any] | None:
    """The replica's feed status once its build after the model's install is done."""
    feeds: dict[str, Any] = client.get("/readyz").json()["feeds"]
    return feeds if feeds["build"].get("done") else None


def _changed(client: httpx.Client, user: str, item: str, timeout_s: float) -> float | None:
    """Seconds until ``item`` leaves the user's answer, or None if it stays ``timeout_s``."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if item not in _top(client, user):
            return time.perf_counter() - started
        time.sleep(0.005)
    return None


def test_an_event_posted_to_one_replica_changes_the_others_answer_through_redis(
    tmp_path: Path, pg_url: str
) -> None:
    world = small_world()
    shared = tmp_path / "shared"
    shared.mkdir()
    redis = RedisServer(tmp_path).start()
    broker = Tansu(tmp_path).start()
    env = {
        "SMARTREC_DATABASE_URL": pg_url,
        "SMARTREC_REGISTRY_URL": f"sqlite:///{shared / 'mlflow.db'}",
        "SMARTREC_ARTIFACTS_URL": str(shared / "artifacts"),
        "SMARTREC_EVENTS_URL": broker.url(),
        "SMARTREC_CACHE_URL": redis.url,
        # A weak single model, so that the multi-stage pipeline (served from feeds) wins.
        "SMARTREC_MODELS": json.dumps({"itemknn": {"k": 5}}),
        "SMARTREC_HOME": str(tmp_path / "worker"),
        "SMARTREC_FEED_PRECOMPUTE_USERS": "10000",  # A builds ahead; B takes them from Redis
    }
    worker = _worker(env, tmp_path / "worker.log")
    try:
        with (
            smartrec_serve(tmp_path / "a", **env) as url_a,
            httpx.Client(base_url=url_a, timeout=30) as a,
        ):
            assert a.post("/v1/items", json={"items": world.items}).status_code == 200
            r = a.post("/v1/events", json={"events": world.events})
            assert r.status_code == 202 and r.json()["accepted"] == len(world.events), r.text
            # The worker writes them to PostgreSQL: training reads them there.
            user = world.heaviest_user()

            def stored() -> bool | None:
                r = a.get(f"/v1/users/{user}")
                return r.status_code == 200 and r.json()["events"] == len(world.events_of(user))

            wait_until(lambda: stored() or None, 60, "the worker storing the world's events")
            job_id = a.post("/v1/training-jobs", json={}).json()["job_id"]

            def finished() -> dict[str, Any] | None:
                job: dict[str, Any] = a.get(f"/v1/training-jobs/{job_id}").json()
                return job if job["status"] in ("succeeded", "failed") else None

            job = wait_until(finished, JOB_TIMEOUT_S, "training")
            assert job["status"] == "succeeded" and job["result"]["algorithm"] == "pipeline", job
            built_on_a = wait_until(lambda: _built(a), 60, "A building the active users' feeds")
            assert built_on_a["build"]["built"] > 0 and built_on_a["shared"]

            with (
                smartrec_serve(tmp_path / "b", **env) as url_b,
                httpx.Client(base_url=url_b, timeout=30) as b,
            ):
                # B starts warm: the feeds A built are in Redis, and B ranks none of them again.
                on_b = wait_until(lambda: _built(b), 60, "B taking the feeds from Redis")
                assert on_b["build"]["shared"] == built_on_a["build"]["built"], on_b
                assert on_b["build"]["built"] == 0 and on_b["shared_hits"] > 0, on_b
                users = sorted(world.seen)[:12]
                took: list[float] = []
                for user in users[:8]:
                    item = _top(b, user)[0]  # B builds and keeps the user's feed
                    _click(a, user, item)
                    seconds = _changed(b, user, item, timeout_s=20)
                    assert seconds is not None, f"B still shows {item} to {user}"
                    took.append(seconds)
                took.sort()
                print(
                    f"freshness across replicas: median {took[len(took) // 2] * 1000:.0f} ms, "
                    f"max {took[-1] * 1000:.0f} ms over {len(took)} events"
                )

                redis.stop()
                user = users[8]
                item = _top(b, user)[0]
                _click(a, user, item)  # Kafka and the worker still take it
                assert _changed(b, user, item, timeout_s=3) is None  # no notice, no poll
                assert _top(a, users[9]) and _top(b, users[9])  # 200s without Redis

                redis.start()  # back on the same port: no restart of anything
                wait_until(lambda: _subscribers(redis.url) == 2 or None, 20, "resubscribing")
                for user in users[10:12]:
                    item = _top(b, user)[0]
                    _click(a, user, item)
                    assert _changed(b, user, item, timeout_s=20) is not None
                # Shared again (Redis came back empty): a visitor's clicks reach both replicas;
                # once the notice's margin is past, A ranks the visitor and B serves A's feed.
                visitor = "anon-session-0"
                for item in sorted(world.items_of(world.categories[1]))[:2]:
                    _click(a, visitor, item)
                wait_until(
                    lambda: a.get(f"/v1/users/{visitor}").json().get("events") == 2 or None,
                    20,
                    "the worker storing the visitor's clicks",
                )
                time.sleep(SHARED_MARGIN_MS / 1000 + 0.2)
                before = b.get("/readyz").json()["feeds"]["shared_hits"]
                assert _top(a, visitor) == _top(b, visitor)
                assert b.get("/readyz").json()["feeds"]["shared_hits"] == before + 1

                # An anonymous visitor (a session id no model has seen) acting on A: B's next
                # answers follow those clicks (the neighbours of the clicked items, which are
                # named in the reasons) and never show them again.
                session = "anon-session-1"
                cold = _top(b, session)
                category = world.categories[0]
                clicked = sorted(world.items_of(category) - set(cold))[:3]
                for item in clicked:
                    _click(a, session, item)

                def steered() -> list[dict[str, Any]] | None:
                    r = b.get(f"/v1/users/{session}/recommendations", params={"n": 10})
                    assert r.status_code == 200, r.text
                    items = r.json()["items"]
                    because = {x.get("item_id") for i in items for x in i["reasons"]}
                    return items if because & set(clicked) else None

                items = wait_until(steered, 20, "the session's clicks steering B's answer")
                assert not {i["item_id"] for i in items} & set(clicked)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        broker.stop()
        redis.stop()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
