"""What a catalogue edit costs the content index: re-vectorising one item of a large index.

    .venv/bin/python benchmarks/content_upsert.py [--items 1000000] [--rounds 5]

Serving applies every item edit or addition (``POST /v1/items``, or another process's change
found by the watcher) by building a new, immutable content index (TF-IDF) beside the old one.
Prints the fit time of a synthetic catalogue, then the best of ``--rounds`` for: one edited
item, one added item, both; and, as the baseline measured in the same run, the bare copy of
the index's arrays that any copy-on-write update must pay (so the ratio says how close an
edit comes to that floor).
"""

from __future__ import annotations

import argparse
import time

from smartrec.domain import CatalogItem
from smartrec.pipeline.content import ContentIndex


def item(k: int, title: str | None = None) -> CatalogItem:
    return CatalogItem(
        f"i{k}",
        title or f"product {k % 5000} thing {k % 777}",
        [f"c{k % 50}"],
        {"brand": f"b{k % 300}", "price": float(k % 90)},
        True,
        False,
    )


def best(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    index = ContentIndex.fit([item(k) for k in range(args.items)])
    took = time.perf_counter() - t0
    print(f"fit: {args.items:,} items, {index.matrix.nnz:,} non-zeros, {took:.1f} s")
    edited = [item(5, "a new title with other words")]
    added = [CatalogItem("new-1", "product 1 thing 2", ["c1"], {}, True, False)]
    m = index.matrix
    floor = best(lambda: (m.data.copy(), m.indices.copy(), m.indptr.copy()), args.rounds)
    print(f"baseline, copying the index's arrays: {floor * 1e3:.1f} ms")
    for name, batch in (("edit 1 item", edited), ("add 1 item", added), ("both", edited + added)):
        took = best(lambda batch=batch: index.upsert(batch), args.rounds)
        print(f"{name}: {took * 1e3:.1f} ms ({took / floor:.1f}x the copy)")
    out = index.upsert(edited + added)
    assert (out.vector_of(["i5"]) != index.vector_of(["i5"])).nnz > 0  # the edit took
    assert len(out) == len(index) + 1 and out.index_of("new-1") == len(index)


if __name__ == "__main__":
    main()
