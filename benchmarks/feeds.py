"""In-process costs behind ``serve.py --pipeline``: a feed answer against the whole pipeline,
and the shape of the embedding index, on the home ``serve.py --pipeline`` prepared.

    .venv/bin/python benchmarks/feeds.py            # after serve.py --pipeline has run once

Prints, for ``--users`` of the most recently active users, one thread:

* the whole pipeline per user (retrieve, rank, rules, reasons; the feed stored), mean ms,
  after 30 unmeasured users;
* a request answered from the user's feed (rules, reasons, serialisation), mean ms, and the
  ratio of the two, measured in the same run;
* feeds built ahead (``build_feeds``), users/s;
* the IVF index: items indexed, items with a zero vector, empty lists, the largest list.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

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
    from smartrec.api.routers.recommendations import _answer, _items
    from smartrec.api.runtime import Runtime
    from smartrec.config import Settings

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
        results = service.recommend_fast(user, 10) if fast else service.recommend(user, 10)
        assert results is not None, "no feed"
        _answer(
            user_id=user,
            model_version=results.model_version,
            items=_items(results),
            next_page_token=results.next_page_token,
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
    rt.stop()


if __name__ == "__main__":
    main()
