"""In-process costs behind ``serve.py --pipeline``: a feed answer against the whole pipeline,
and the shape of the embedding index, on the home ``serve.py --pipeline`` prepared.

    .venv/bin/python benchmarks/feeds.py            # after serve.py --pipeline has run once

Prints, for ``--users`` of the most recently active users, one thread:

* the whole pipeline per user (retrieve, rank, rules, reasons; the feed stored), mean ms,
  after 30 unmeasured users;
* a request answered from the user's feed (rules, reasons, serialisation), mean ms, and the
  ratio of the two, measured in the same run;
* feeds built ahead (``build_feeds``), users/s;
* the IVF index: items indexed, items with a zero vector, empty lists, the largest list;
* the served path without HTTP: the ASGI apps called directly for the same users, with feeds
  (smartrec with the feed lane, smartrec through FastAPI's router, and ``serve.py``'s bare
  FastAPI endpoint), in interleaved rounds, then the top functions of a cProfile of the lane.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

WARM = 30  # users answered first, not measured
DEFAULT_HOME = "~/.cache/smartrec/bench-pipeline-1000000i-100000u-3000000e-s7-content"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--home", default=DEFAULT_HOME, help="a home serve.py --pipeline prepared")
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="feed answers per user")
    args = p.parse_args()
    home = Path(args.home).expanduser()
    if not (home / "smartrec.db").exists():
        raise SystemExit(f"{home}: run benchmarks/serve.py --pipeline first (it prepares it)")
    os.environ.pop("SMARTREC_DATABASE_URL", None)
    from smartrec.api.routers.recommendations import answer_body
    from smartrec.config import Settings
    from smartrec.runtime import Runtime
    from smartrec.serving import RecommendRequest

    settings = Settings(
        home=home, reload_interval_s=0, feed_precompute_users=0, feed_poll_interval_s=0
    )
    rt = Runtime.build(settings)
    rt.service.reload()
    service = rt.service
    state = service.state
    if state is None or state.pipeline is None:
        raise SystemExit(f"{home} serves no pipeline")
    everyone = rt.store.active_users(args.users + WARM)
    users, warm = everyone[: args.users], everyone[args.users :]

    def answer(user: str, fast: bool) -> None:
        request = RecommendRequest(user, 10)
        results = service.recommend_fast(request) if fast else service.recommend(request)
        assert results is not None, "no feed"
        answer_body(
            results.items, results.model_version, user, next_page_token=results.next_page_token
        )

    for u in warm:  # the first requests build serving structures (e.g. the kNN views)
        answer(u, fast=False)
    started = time.perf_counter()
    for u in users:  # no feed yet: the whole pipeline, and the feed stored
        answer(u, fast=False)
    whole_ms = (time.perf_counter() - started) / len(users) * 1e3
    started = time.perf_counter()
    for _ in range(args.rounds):
        for u in users:
            answer(u, fast=True)
    feed_ms = (time.perf_counter() - started) / (len(users) * args.rounds) * 1e3
    service._feeds.clear()
    started = time.perf_counter()
    built = service.build_feeds(len(users))
    build_rate = built / (time.perf_counter() - started)

    print(f"home {home}; {len(users)} most recently active users, one thread")
    print(f"whole pipeline (no feed yet)   {whole_ms:8.2f} ms a request")
    print(
        f"answer from the feed           {feed_ms:8.2f} ms a request  ({whole_ms / feed_ms:.0f}x)"
    )
    print(f"feeds built ahead              {build_rate:8.0f} users/s")
    for name, index in state.pipeline.ann.items():
        vectors = index._vectors
        zero = int((np.einsum("ij,ij->i", vectors, vectors) == 0).sum())
        ivf = index._index
        if ivf is None:
            print(f"ANN {name}: exact ({len(vectors):,} items, {zero:,} zero vectors)")
            continue
        sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
        print(
            f"ANN {name}: {ivf.ntotal:,} of {len(vectors):,} items indexed ({zero:,} zero "
            f"vectors), {ivf.nlist:,} lists, {int((sizes == 0).sum()):,} empty, largest "
            f"{int(sizes.max()):,}"
        )
    asgi_costs(rt, settings, users, args.rounds)
    rt.stop()


async def _call(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through an ASGI app, no server: what the app itself costs."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"n=10",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    out: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    return int(out[0]["status"]), bytes(out[1]["body"])


def asgi_costs(rt: Any, settings: Any, users: list[str], rounds: int) -> None:
    from smartrec.api import create_app

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import serve

    apps: dict[str, Any] = {}
    for name, lane in (("smartrec, feed lane", True), ("smartrec, FastAPI route", False)):
        app = create_app(settings.model_copy(update={"feed_lane": lane}), runtime=rt)
        app.state.runtime = rt  # already running: no lifespan
        apps[name] = app
    paths = [f"/v1/users/{u}/recommendations" for u in users]
    first = asyncio.run(_call(apps["smartrec, feed lane"], paths[0]))
    os.environ[serve.FIXED_ANSWER_ENV] = json.dumps(json.loads(first[1]))
    apps["bare FastAPI endpoint"] = serve.baseline_app()

    async def run(app: Any) -> float:
        started = time.perf_counter()
        for path in paths:
            status, _ = await _call(app, path)
            assert status == 200, status
        return (time.perf_counter() - started) / len(paths) * 1e6

    best: dict[str, float] = {}
    for _ in range(max(rounds, 3)):  # interleaved; the best round of each (noise is upward)
        for name, app in apps.items():
            best[name] = min(best.get(name, float("inf")), asyncio.run(run(app)))
    bare = best["bare FastAPI endpoint"]
    print(f"\nthe ASGI app alone (no HTTP server), {len(paths)} users with feeds, best round:")
    for name, us in best.items():
        print(f"  {name:<26} {us:8.0f} us a request  ({us / bare:.2f}x the bare endpoint)")
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(run(apps["smartrec, feed lane"]))
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(12)
    body = text.getvalue()
    print(f"\ncProfile of the feed lane ({len(paths)} requests), top functions by own time:")
    print(body[body.find("   ncalls") :])


if __name__ == "__main__":
    main()
