"""Parquet snapshots of the event log: write and read throughput on S3 (moto's server on
loopback, through s3fs) beside a local folder, in one run.

The events are a seeded synthetic log held in memory (``--events``, default 1,000,000), handed
to ``write_snapshot`` as the event store would hand them: what is timed is the Parquet encoding
and the object storage, not the database read. Each round writes one snapshot to each store and
reads it back (``read_snapshot``); rounds interleave the stores.

Run from the repository root: ``.venv/bin/python benchmarks/snapshots.py [--events 1000000]``.
Needs the dev extras (s3fs, moto[server]).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3proc import CREDENTIALS, MotoServer

from _common import machine_note, table
from smartrec.domain.records import EventSnapshot
from smartrec.storage.objects import open_object_store
from smartrec.storage.objects.snapshots import read_snapshot, write_snapshot


class Prepared:
    """The event store's ``snapshot`` call, answered from a log already in memory."""

    def __init__(self, events: EventSnapshot) -> None:
        self.events = events

    def snapshot(self, since_ms: int | None = None) -> EventSnapshot:
        return self.events


def synthetic(n: int, seed: int = 7) -> EventSnapshot:
    rng = random.Random(seed)
    types = ["view", "view", "view", "click", "purchase", "rating"]
    users = [f"u{rng.randrange(100_000)}" for _ in range(n)]
    items = [f"i{int(rng.paretovariate(1.2)) % 50_000}" for _ in range(n)]
    kinds = [rng.choice(types) for _ in range(n)]
    values = [float(rng.randint(1, 5)) if k == "rating" else None for k in kinds]
    start = 1_780_000_000.0
    times = sorted(start + rng.random() * 86_400 * 30 for _ in range(n))
    return EventSnapshot(users, items, kinds, values, [round(t, 3) for t in times])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    events = synthetic(args.events)
    source = Prepared(events)
    os.environ.update(CREDENTIALS)
    results: dict[str, dict[str, list[float]]] = {}
    size = 0
    with tempfile.TemporaryDirectory(prefix="smartrec-snapshots-") as tmp:
        moto = MotoServer(Path(tmp)).start()
        try:
            moto.create_bucket("bench")
            stores = {
                "local folder": open_object_store(str(Path(tmp) / "local")),
                "S3 (moto, loopback)": open_object_store(moto.url("bench", "snapshots")),
            }
            for store in stores.values():
                store.check()
            for _ in range(args.rounds):
                for name, store in stores.items():
                    timing = results.setdefault(name, {"write": [], "read": []})
                    started = time.perf_counter()
                    info = write_snapshot(source, store)  # type: ignore[arg-type]
                    timing["write"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    _, back = read_snapshot(store, info.path)
                    timing["read"].append(time.perf_counter() - started)
                    assert len(back) == len(events)
                    size = info.bytes
        finally:
            moto.stop()
    rows = []
    for name, timing in results.items():
        write, read = statistics.median(timing["write"]), statistics.median(timing["read"])
        rows.append(
            [
                name,
                f"{args.events / write:,.0f}",
                f"{write:.2f}",
                f"{args.events / read:,.0f}",
                f"{read:.2f}",
            ]
        )
    print(
        f"snapshots.py: {args.events:,} events, {size / 1e6:.1f} MB of Parquet (zstd), median of "
        f"{args.rounds} rounds ({time.strftime('%Y-%m-%d')}; {machine_note()})"
    )
    print(table(["store", "write events/s", "write s", "read events/s", "read s"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
