"""A user served from a feed in Redis, beside the in-process feed path, in one run.

Two ``smartrec serve`` replicas (real ``uvicorn`` processes) on the ML-100K home of ``serve.py``
(champion: the multi-stage pipeline) and a private ``redis-server``, ``SMARTREC_CACHE_URL`` on
it. Replica A builds the feeds of all 943 users at start (``SMARTREC_FEED_PRECOMPUTE_USERS``),
which puts them in Redis; replica B builds none. Then, for every user in a random order, one
keep-alive connection per replica, sequential requests:

* **A, in-process feed**: ``GET /v1/users/{id}/recommendations?n=10`` on A (its own copy);
* **B, from Redis**: the same GET on B, B's first for that user: B reads the feed from Redis,
  decodes it and applies the rules (its ``shared_hits`` must count every user);
* **B, in-process feed**: the same GET on B again, now from B's own copy.

The issue's aim: the Redis path's **p99 within 2x** of the in-process feed path. Each round
starts a fresh B (an empty feed cache); ``--rounds`` rounds.

Run from the repository root: ``.venv/bin/python benchmarks/shared_feeds.py [--rounds 2]``.
Needs redis-server and the redis extra (``make test`` installs both).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redisproc import RedisServer

from _common import Server, get_json, latency_ms, machine_note, table, unwind_on_sigterm
from after_event import Client
from serve import DEFAULT_HOME, ML100K_USERS, home_env, prepare_home, wait_for_feeds

GOAL_RATIO = 2.0
PATH = "/v1/users/{}/recommendations?n=10"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shared_hits(port: int) -> int:
    _, ready = get_json(port, "/readyz", timeout=30.0)
    return int((ready or {})["feeds"]["shared_hits"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    home = args.home.expanduser().resolve()
    prepare_home(home, args.rebuild)
    users = [str(u) for u in range(1, ML100K_USERS + 1)]
    samples: dict[str, list[float]] = {"a_local": [], "b_redis": [], "b_local": []}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="smartrec-shared-feeds-") as tmp:
        redis = RedisServer(Path(tmp)).start()
        base = {**home_env(home), "SMARTREC_CACHE_URL": redis.url}
        try:
            env_a = {**base, "SMARTREC_FEED_PRECOMPUTE_USERS": str(ML100K_USERS)}
            with Server("shared-a", "smartrec.api:create_app", env=env_a) as a:
                built = wait_for_feeds(a.port, 1)
                log(f"A: {built}")
                client_a = Client(a.port)
                for r in range(args.rounds):
                    rng = random.Random(args.seed + r)
                    order = users[:]
                    rng.shuffle(order)
                    env_b = {**base, "SMARTREC_FEED_PRECOMPUTE_USERS": "0"}
                    with Server("shared-b", "smartrec.api:create_app", env=env_b) as b:
                        _, ready = get_json(b.port, "/readyz", timeout=60.0)
                        if not (ready or {}).get("model_version"):
                            raise SystemExit(f"B serves no model: {ready}")
                        client_b = Client(b.port)
                        before = _shared_hits(b.port)
                        per: dict[str, list[float]] = {k: [] for k in samples}
                        for user in order:
                            path = PATH.format(user)
                            for key, client in (
                                ("a_local", client_a),
                                ("b_redis", client_b),
                                ("b_local", client_b),
                            ):
                                status, body, took = client.call("GET", path)
                                assert status == 200, body
                                per[key].append(took)
                        hits = _shared_hits(b.port) - before
                    if hits != len(order):
                        raise SystemExit(f"B took {hits} of {len(order)} feeds from Redis")
                    for key, xs in per.items():
                        samples[key].extend(xs)
                    rounds.append({k: latency_ms(v) for k, v in per.items()})
                    log(f"round {r + 1}: {rounds[-1]}")
        finally:
            redis.stop()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_note(),
        "users": ML100K_USERS,
        "rounds": rounds,
        **{k: latency_ms(v) for k, v in samples.items()},
    }
    result["ratio_p99"] = result["b_redis"]["p99_ms"] / result["a_local"]["p99_ms"]
    result["ratio_p50"] = result["b_redis"]["p50_ms"] / result["a_local"]["p50_ms"]
    result["goal_met"] = bool(result["ratio_p99"] <= GOAL_RATIO)
    return result


def report(r: dict[str, Any]) -> str:
    rows = [
        [name, f"{r[key]['p50_ms']:.2f}", f"{r[key]['p99_ms']:.2f}", f"{r[key]['mean_ms']:.2f}"]
        for name, key in (
            ("A, its own feed (in process)", "a_local"),
            ("B, the feed read from Redis", "b_redis"),
            ("B, its own copy afterwards", "b_local"),
        )
    ]
    return "\n".join(
        [
            f"shared_feeds.py: {r['users']} users x {len(r['rounds'])} round(s), sequential, one "
            f"connection per replica ({r['date']}; {r['machine']})",
            table(["request", "p50 ms", "p99 ms", "mean ms"], rows),
            f"Redis / in-process feed: p99 {r['ratio_p99']:.2f}x, p50 {r['ratio_p50']:.2f}x "
            f"(goal p99 ≤ {GOAL_RATIO}x: {'met' if r['goal_met'] else 'NOT met'})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="a fresh replica B each round")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME, help="prepared SMARTREC_HOME")
    p.add_argument("--rebuild", action="store_true", help="prepare the home again from scratch")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    unwind_on_sigterm()
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
