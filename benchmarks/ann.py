"""Approximate nearest neighbours for maximum inner product: faiss against usearch.

Which library should serve embedding retrieval (``user_vector . item_vector``, top 10)? Each
candidate index is measured on the same seeded synthetic factor embeddings against an exact
brute-force search in numpy measured in the same run:

- **recall@10**: the share of the exact top 10 (by inner product) that the index returns,
  averaged over the queries;
- **queries/s one at a time**: one Python call per query, as a server answering one user per
  request does, on **one thread** (faiss OpenMP, usearch ``threads=1``, BLAS via threadpoolctl);
- **speed-up** over the exact search one query at a time (the batched exact search, the way
  offline scoring of many users goes, is reported too but is not the reference).

Targets: recall@10 >= 0.95 at >= 50x the speed of exact search. Candidates, each over a sweep of
its search-time knob: faiss ``IndexHNSWFlat`` and ``IndexIVFFlat`` and usearch HNSW, in two
spaces:

- ``ip``: the vectors as they are, inner-product metric (``METRIC_INNER_PRODUCT``, ``"ip"``);
- ``aug``: the standard reduction of maximum inner product to nearest neighbour (Bachrach et
  al. 2014): every item gets a 65th coordinate ``sqrt(max|x|^2 - |x|^2)``, so that all items have
  the same norm, and every query a 0, so that the L2 order over the augmented vectors is the
  inner-product order over the originals. faiss uses ``METRIC_L2``; usearch ``"l2sq"``, or
  ``"cos"`` for its i8 storage (usearch normalises a vector when it casts it to i8, which turns
  ``"ip"`` into cosine: with plain vectors that loses the norms, so i8 runs in ``aug`` only).

Index builds may use ``--build-threads`` threads (shown as "Nt"); every query timing uses one.
usearch and faiss HNSW use the same construction depth (``--ef-construction``).

The data imitate trained factor models rather than iid Gaussians (:func:`make_space`): taste
clusters of Zipf-distributed sizes in a space with a decaying spectrum, a shared popularity
direction, and norms that grow with a log-normal popularity, so that long (popular) items fill
most top-10 lists as they do with real factors. Users (queries) come from the same clusters.
Checked against iALS factors of MovieLens-100K (64 factors): item norm p99/p50 3.3 here against
3.6-3.8 there, 0.036 distinct items per top-10 slot at the same size against 0.028-0.037.

``--shipped`` also measures the class the pipeline ships, ``smartrec.pipeline.ann.VectorIndex``
with its default :class:`AnnConfig` (builds on ``--build-threads``), the same way: recall@10 and
queries/s one ``search(q, k)`` call at a time on one thread against the exact search of the same
run, so the figure quoted for the shipped code comes from the shipped code. It is reported
apart from the library comparison; ``--candidates ''`` measures it alone (usearch is then not
needed).

Run from the repository root:
``.venv/bin/python benchmarks/ann.py [--items 1000000] [--dim 64] [--queries 1000] [--shipped]
[--json]``. Progress goes to stderr; the table (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_note, table

RECALL_TARGET = 0.95
SPEEDUP_TARGET = 50.0
SPACES = ("ip", "aug")

#: What a timing loop calls: one query vector (1-D float32) -> ids of its top k, best first.
SearchOne = Callable[[np.ndarray], np.ndarray]


def log(msg: str) -> None:
    """Progress on stderr (stdout holds only the result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def int_list(text: str) -> list[int]:
    """A comma list of integers."""
    return [int(x) for x in text.split(",") if x.strip()]


def str_list(text: str) -> list[str]:
    """A comma list of words."""
    return [x.strip() for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------------- data
@dataclass
class Space:
    """A synthetic factor space: taste clusters, a popularity direction, a spectrum."""

    centres: np.ndarray  # (clusters, dim)
    weights: np.ndarray  # (clusters,) probability of each cluster, Zipf-like
    spread: np.ndarray  # (dim,) within-cluster standard deviation per latent axis (decaying)
    rotation: np.ndarray  # (dim, dim) orthogonal: latent axes -> embedding axes
    popular: np.ndarray  # (dim,) unit vector along which popularity pushes


def make_space(dim: int, clusters: int, rng: np.random.Generator) -> Space:
    """Draw the structure that items and users share."""
    spectrum = (1.0 + np.arange(dim)) ** -0.75  # a few strong factors, a long weak tail
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    centres = (rng.standard_normal((clusters, dim)) * spectrum) @ rotation.T
    weights = (1.0 + np.arange(clusters)) ** -0.8
    weights = rng.permutation(weights / weights.sum())
    popular = rng.standard_normal(dim)
    popular /= np.linalg.norm(popular)
    return Space(centres, weights, 0.5 * spectrum, rotation, popular)


def sample(
    space: Space, n: int, rng: np.random.Generator, *, norm_sigma: float, chunk: int = 200_000
) -> np.ndarray:
    """``n`` float32 vectors: a cluster centre, spread around it, a push along popularity.

    Each vector gets a log-popularity ``z ~ N(0, 1)``: it adds ``0.3 + 0.3 z`` along the shared
    popularity direction and sets the norm to ``exp(norm_sigma * z)``, as popular items get long
    factors. Made in chunks to keep the temporaries small.
    """
    dim = space.centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cluster = rng.choice(len(space.weights), size=m, p=space.weights)
        z = rng.standard_normal(m)
        noise = (rng.standard_normal((m, dim)) * space.spread) @ space.rotation.T
        v = space.centres[cluster] + noise + np.outer(0.3 + 0.3 * z, space.popular)
        v *= (np.exp(norm_sigma * z) / np.linalg.norm(v, axis=1))[:, None]
        out[start : start + m] = v
    return out


def make_data(n_items: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Item and query vectors (float32, C order), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    clusters = max(16, round(2 * math.sqrt(n_items)))
    space = make_space(dim, clusters, rng)
    items = sample(space, n_items, rng, norm_sigma=0.5)
    queries = sample(space, n_queries, rng, norm_sigma=0.3)
    return items, queries


def augment_items(items: np.ndarray) -> np.ndarray:
    """Items with a last coordinate ``sqrt(max|x|^2 - |x|^2)``: all of norm ``max|x|``."""
    sq = np.einsum("ij,ij->i", items, items)
    out = np.empty((len(items), items.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = items
    out[:, -1] = np.sqrt(np.maximum(sq.max() - sq, 0.0))
    return out


# --------------------------------------------------------------------------- threads
@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` threads in BLAS, OpenMP and faiss; 1 again afterwards."""
    import faiss

    with threadpool_limits(limits=n):
        faiss.omp_set_num_threads(n)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(1)


def thread_report() -> str:
    """The thread counts that the loaded BLAS and OpenMP libraries report now."""
    return ", ".join(sorted({f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info()}))


# --------------------------------------------------------------------------- exact search
def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores of each row, best first."""
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def exact_batched(
    items: np.ndarray, queries: np.ndarray, k: int, batch: int = 64
) -> tuple[np.ndarray, float]:
    """Exact top ``k`` of all queries, ``batch`` queries per matmul; (ids, seconds)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    t0 = time.perf_counter()
    for start in range(0, len(queries), batch):
        out[start : start + batch] = top_k(queries[start : start + batch] @ items.T, k)
    return out, time.perf_counter() - t0


def exact_one(items: np.ndarray, k: int) -> SearchOne:
    """Exact search of one query: a matrix-vector product and an argpartition."""
    return lambda q: top_k(items @ q, k)


def run_one_at_a_time(
    search: SearchOne, queries: np.ndarray, k: int, warmup: int = 20
) -> tuple[np.ndarray, float]:
    """Call ``search`` once per query, after a few unmeasured calls; (ids, seconds)."""
    for q in queries[:warmup]:
        search(q)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    t0 = time.perf_counter()
    for i, q in enumerate(queries):
        found = search(q)
        out[i, : len(found)] = found
    return out, time.perf_counter() - t0


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


# --------------------------------------------------------------------------- candidates
@dataclass
class Row:
    """One measured configuration."""

    library: str
    index: str
    space: str
    params: str
    build_s: float
    build_threads: int
    memory_mib: float
    recall: float
    qps: float
    us_per_query: float
    speedup: float

    @property
    def meets(self) -> bool:
        return self.recall >= RECALL_TARGET and self.speedup >= SPEEDUP_TARGET


@dataclass
class Bench:
    """What every candidate needs: data, exact answers, the exact speed and the sweep rules."""

    items: np.ndarray
    queries: np.ndarray
    truth: np.ndarray
    k: int
    build_threads: int
    exact_qps: float
    stop_recall: float
    min_speedup: float
    _aug: np.ndarray | None = None

    def vectors(self, space: str) -> np.ndarray:
        """The item vectors an index of ``space`` holds (the augmented ones made once)."""
        if space == "ip":
            return self.items
        if self._aug is None:
            self._aug = augment_items(self.items)
        return self._aug

    def query_fn(self, space: str) -> Callable[[np.ndarray], np.ndarray]:
        """Per query: the vector as given (``ip``) or with a 0 appended (``aug``)."""
        if space == "ip":
            return lambda q: q
        buf = np.zeros(self.items.shape[1] + 1, dtype=np.float32)

        def augment(q: np.ndarray) -> np.ndarray:
            buf[:-1] = q
            return buf

        return augment

    def sweep(
        self,
        head: tuple[str, str, str, float, float],
        values: list[int],
        make: Callable[[int], tuple[str, SearchOne]],
    ) -> list[Row]:
        """Measure ``make(v)`` for each value, one query at a time on one thread.

        Stops once recall reaches ``stop_recall`` or the speed-up falls below ``min_speedup``.
        """
        library, index, space, build_s, mem = head
        rows: list[Row] = []
        n = len(self.queries)
        for v in values:
            params, search = make(v)
            found, secs = run_one_at_a_time(search, self.queries, self.k)
            qps = n / secs
            row = Row(
                library,
                index,
                space,
                params,
                build_s,
                self.build_threads,
                mem,
                recall(found, self.truth),
                qps,
                1e6 / qps,
                qps / self.exact_qps,
            )
            log(
                f"  {library} {index} {space} {params}: recall {row.recall:.4f}, "
                f"{row.qps:,.0f} q/s, {row.speedup:.1f}x"
            )
            rows.append(row)
            if row.recall >= self.stop_recall or row.speedup < self.min_speedup:
                break
        return rows


def faiss_hnsw(b: Bench, space: str, m: int, ef_construction: int, efs: list[int]) -> list[Row]:
    """faiss IndexHNSWFlat, ``M = m``, over the efSearch sweep."""
    import faiss

    data = b.vectors(space)
    n, d = data.shape
    metric = faiss.METRIC_INNER_PRODUCT if space == "ip" else faiss.METRIC_L2
    index = faiss.IndexHNSWFlat(d, m, metric)
    index.hnsw.efConstruction = ef_construction
    log(f"faiss HNSW M={m} {space}: building on {b.build_threads} thread(s)")
    with threads(b.build_threads):
        t0 = time.perf_counter()
        index.add(data)
        build_s = time.perf_counter() - t0
    h = index.hnsw
    links = h.neighbors.size() * 4 + h.offsets.size() * 8  # type: ignore[attr-defined]
    mem = n * d * 4 + links + h.levels.size() * 4
    dist = np.empty((1, b.k), dtype=np.float32)
    ids = np.empty((1, b.k), dtype=np.int64)
    prep = b.query_fn(space)

    def make(ef: int) -> tuple[str, SearchOne]:
        index.hnsw.efSearch = ef  # the sweep measures each value right after make()

        def search(q: np.ndarray) -> np.ndarray:
            index.search(prep(q)[None, :], b.k, D=dist, I=ids)
            return ids[0]

        return f"efSearch={ef}", search

    return b.sweep(("faiss", f"HNSWFlat M={m}", space, build_s, mem / 2**20), efs, make)


def faiss_ivf(
    b: Bench, space: str, nlist: int, train_per_list: int, nprobes: list[int]
) -> list[Row]:
    """faiss IndexIVFFlat over the nprobe sweep (k-means on a sample of the items)."""
    import faiss

    data = b.vectors(space)
    n, d = data.shape
    quantizer: faiss.IndexFlat
    if space == "ip":  # faiss clusters spherically for the inner product
        quantizer, metric = faiss.IndexFlatIP(d), faiss.METRIC_INNER_PRODUCT
    else:
        quantizer, metric = faiss.IndexFlatL2(d), faiss.METRIC_L2
    index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
    n_train = min(n, nlist * train_per_list)
    sample_ids = np.sort(np.random.default_rng(1).choice(n, n_train, replace=False))
    log(
        f"faiss IVF nlist={nlist} {space}: training on {n_train:,} items, "
        f"{b.build_threads} thread(s)"
    )
    with threads(b.build_threads):
        t0 = time.perf_counter()
        index.train(data[sample_ids])
        index.add(data)
        build_s = time.perf_counter() - t0
    mem = n * (index.code_size + 8) + nlist * d * 4
    dist = np.empty((1, b.k), dtype=np.float32)
    ids = np.empty((1, b.k), dtype=np.int64)
    prep = b.query_fn(space)

    def make(nprobe: int) -> tuple[str, SearchOne]:
        index.nprobe = nprobe

        def search(q: np.ndarray) -> np.ndarray:
            index.search(prep(q)[None, :], b.k, D=dist, I=ids)
            return ids[0]

        return f"nprobe={nprobe}", search

    values = [p for p in nprobes if p <= nlist]
    return b.sweep(("faiss", f"IVFFlat nlist={nlist}", space, build_s, mem / 2**20), values, make)


def usearch_hnsw(
    b: Bench, space: str, connectivity: int, dtype: str, expansion_add: int, efs: list[int]
) -> list[Row]:
    """usearch HNSW with ``dtype`` storage over the expansion_search sweep."""
    from usearch.index import Index

    data = b.vectors(space)
    n, d = data.shape
    metric = "ip" if space == "ip" else "cos" if dtype == "i8" else "l2sq"
    index = Index(
        ndim=d, metric=metric, dtype=dtype, connectivity=connectivity, expansion_add=expansion_add
    )
    log(
        f"usearch HNSW conn={connectivity} {dtype} {space} ({metric}): building on "
        f"{b.build_threads} thread(s)"
    )
    t0 = time.perf_counter()
    index.add(np.arange(n, dtype=np.uint64), data, threads=b.build_threads)
    build_s = time.perf_counter() - t0
    prep = b.query_fn(space)

    def make(ef: int) -> tuple[str, SearchOne]:
        index.expansion_search = ef  # type: ignore[misc]  # (it has a setter)

        def search(q: np.ndarray) -> np.ndarray:
            return index.search(prep(q), b.k, threads=1).keys

        return f"expansion_search={ef}", search

    head = (
        "usearch",
        f"HNSW conn={connectivity} {dtype}",
        space,
        build_s,
        index.serialized_length / 2**20,  # vectors + graph; its allocator holds ~2x
    )
    return b.sweep(head, efs, make)


def shipped(b: Bench) -> Row:
    """smartrec's ``VectorIndex`` with its default config (builds on ``build_threads``)."""
    from smartrec.pipeline.ann import AnnConfig, VectorIndex

    config = AnnConfig(build_threads=b.build_threads)
    log(f"smartrec VectorIndex, default config: building on {b.build_threads} thread(s)")
    with threads(b.build_threads):
        t0 = time.perf_counter()
        index = VectorIndex.build(b.items, config)
        build_s = time.perf_counter() - t0
    n, d = b.items.shape
    if index.exact:
        kind, params, space, mem = "VectorIndex exact", "-", "ip", n * d * 4
    else:
        nlist = index.nlist or 0
        kind, params, space = f"VectorIndex IVFFlat nlist={nlist}", f"nprobe={config.nprobe}", "aug"
        mem = n * d * 4 + n * ((d + 1) * 4 + 8) + nlist * (d + 1) * 4  # vectors + IVF
    found, secs = run_one_at_a_time(lambda q: index.search(q, b.k)[0], b.queries, b.k)
    qps = len(b.queries) / secs
    row = Row(
        "smartrec",
        kind,
        space,
        params,
        build_s,
        b.build_threads,
        mem / 2**20,
        recall(found, b.truth),
        qps,
        1e6 / qps,
        qps / b.exact_qps,
    )
    log(f"  smartrec {kind} {params}: recall {row.recall:.4f}, {qps:,.0f} q/s, {row.speedup:.1f}x")
    return row


# --------------------------------------------------------------------------- report
def recommendation(rows: list[Row]) -> list[str]:
    """The fastest configuration of each library at recall >= target, and the winner."""
    lines: list[str] = []
    best: dict[str, Row] = {}
    for lib in sorted({r.library for r in rows}):
        ok = [r for r in rows if r.library == lib and r.recall >= RECALL_TARGET]
        if not ok:
            lines.append(f"{lib}: no configuration reached recall@10 >= {RECALL_TARGET}")
            continue
        r = best[lib] = max(ok, key=lambda r: r.qps)
        lines.append(
            f"{lib}: cheapest at recall@10 >= {RECALL_TARGET}: {r.index} {r.space} {r.params} "
            f"(recall {r.recall:.3f}, {r.qps:,.0f} q/s = {r.speedup:.0f}x exact, "
            f"{r.memory_mib:,.0f} MiB, build {r.build_s:.0f} s on {r.build_threads} thread(s)); "
            f"{'meets' if r.meets else 'misses'} the {SPEEDUP_TARGET:.0f}x target"
        )
    if len(best) >= 2:
        w, o = sorted(best.values(), key=lambda r: -r.qps)[:2]
        lines.append(
            f"Recommendation: {w.library} ({w.index} {w.space} {w.params}): {w.qps / o.qps:.1f}x "
            f"the queries/s of {o.library}'s best ({o.index} {o.space} {o.params}) at recall@10 "
            f">= {RECALL_TARGET}, one thread, one query at a time."
        )
    elif best:
        (w,) = best.values()
        lines.append(
            f"Recommendation: {w.library} ({w.index} {w.space} {w.params}), the only library "
            f"to reach recall@10 >= {RECALL_TARGET}."
        )
    else:
        lines.append("Recommendation: none; no configuration reached the recall target.")
    return lines


def table_rows(rows: list[Row]) -> list[list[str]]:
    """Table cells of the result rows."""
    out = []
    for r in rows:
        build = f"{r.build_s:.1f}" + (f" ({r.build_threads}t)" if r.build_threads > 1 else "")
        out.append(
            [
                f"{r.library} {r.index}",
                r.space,
                r.params,
                build,
                f"{r.memory_mib:,.0f}",
                f"{r.recall:.4f}",
                f"{r.qps:,.0f}",
                f"{r.us_per_query:,.0f}",
                f"{r.speedup:,.1f}x",
                "yes" if r.meets else "",
            ]
        )
    return out


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--exact-queries",
        type=int,
        default=100,
        help="queries timed one at a time for the exact baseline (default 100)",
    )
    p.add_argument(
        "--build-threads",
        type=int,
        default=2,
        help="threads for index builds (queries always use 1); default 2",
    )
    p.add_argument(
        "--candidates",
        type=str_list,
        default="faiss-hnsw,faiss-ivf,usearch",
        help="comma list of faiss-hnsw, faiss-ivf, usearch",
    )
    p.add_argument(
        "--spaces",
        type=str_list,
        default="ip,aug",
        help="ip (vectors as they are) and/or aug (MIPS reduced to L2)",
    )
    p.add_argument(
        "--hnsw-m",
        type=int_list,
        default="16,32",
        help="faiss HNSW M and usearch connectivity values (default 16,32)",
    )
    p.add_argument(
        "--ef-construction",
        type=int,
        default=64,
        help="faiss efConstruction and usearch expansion_add (default 64)",
    )
    p.add_argument(
        "--ef",
        type=int_list,
        default="16,32,64,128,256,512,1024",
        help="efSearch / expansion_search sweep",
    )
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (default 4 * sqrt(items))")
    p.add_argument("--ivf-train", type=int, default=40, help="IVF training items per list")
    p.add_argument("--nprobe", type=int_list, default="1,2,4,8,16,32,64,128,256")
    p.add_argument(
        "--usearch-dtypes",
        type=str_list,
        default="f32,f16,i8",
        help="usearch storage: f32 at every --hnsw-m, others at the first; "
        "i8 only in the aug space",
    )
    p.add_argument(
        "--stop-recall",
        type=float,
        default=0.995,
        help="end a sweep once recall@10 reaches this (default 0.995)",
    )
    p.add_argument(
        "--min-speedup",
        type=float,
        default=5.0,
        help="end a sweep once the speed-up falls below this (default 5)",
    )
    p.add_argument(
        "--skip",
        type=str_list,
        default="",
        help="comma list of glob patterns of builds to leave out, e.g. '*/ip/M16*' "
        "(keys: faiss-hnsw/SPACE/M16, faiss-ivf/SPACE, usearch/SPACE/M16/f32)",
    )
    p.add_argument(
        "--shipped",
        action="store_true",
        help="also measure smartrec.pipeline.ann.VectorIndex with its default config",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    unknown = set(args.spaces) - set(SPACES)
    if unknown:
        p.error(f"unknown --spaces {sorted(unknown)}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[Bench], list[Row]]]]:
    """Every configured index build as (key, run); keys look like ``usearch/aug/M16/f32``."""
    nlist = args.nlist or round(4 * math.sqrt(args.items))
    efc, efs = args.ef_construction, args.ef
    builds: list[tuple[str, Callable[[Bench], list[Row]]]] = []
    for space in args.spaces:
        if "faiss-hnsw" in args.candidates:
            for m in args.hnsw_m:
                run = functools.partial(faiss_hnsw, space=space, m=m, ef_construction=efc, efs=efs)
                builds.append((f"faiss-hnsw/{space}/M{m}", run))
        if "faiss-ivf" in args.candidates:
            run = functools.partial(
                faiss_ivf,
                space=space,
                nlist=nlist,
                train_per_list=args.ivf_train,
                nprobes=args.nprobe,
            )
            builds.append((f"faiss-ivf/{space}", run))
        if "usearch" in args.candidates:
            for dtype in args.usearch_dtypes:
                if dtype == "i8" and space == "ip":
                    continue  # i8 storage normalises: cosine, not inner product
                for m in args.hnsw_m if dtype == "f32" else args.hnsw_m[:1]:
                    run = functools.partial(
                        usearch_hnsw,
                        space=space,
                        connectivity=m,
                        dtype=dtype,
                        expansion_add=efc,
                        efs=efs,
                    )
                    builds.append((f"usearch/{space}/M{m}/{dtype}", run))
    return builds


def run_candidates(b: Bench, builds: list[tuple[str, Callable[[Bench], list[Row]]]]) -> list[Row]:
    """Build and measure each planned index, one in memory at a time."""
    rows: list[Row] = []
    for _key, run in builds:
        rows += run(b)
        gc.collect()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON)."""
    args = parse_args(argv)
    try:
        import faiss

        usearch_version = "not used"
        if "usearch" in args.candidates:
            import usearch

            usearch_version = usearch.__version__
    except ModuleNotFoundError as exc:
        print(
            f"{exc.name} is not installed: pip install -e '.[ann]' (faiss-cpu and usearch)",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    note = machine_note()
    builds: list[tuple[str, Callable[[Bench], list[Row]]]] = []
    skipped: list[str] = []
    for key, run in plan(args):
        if any(fnmatch.fnmatchcase(key, pat) for pat in args.skip):
            skipped.append(key)
        else:
            builds.append((key, run))
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1):
        log(f"data: {args.items:,} items x {args.dim}, {args.queries:,} queries (seed {args.seed})")
        t0 = time.perf_counter()
        items, queries = make_data(args.items, args.queries, args.dim, args.seed)
        data_s = time.perf_counter() - t0
        norms = np.linalg.norm(items, axis=1)

        log("exact search, batched")
        truth, batched_s = exact_batched(items, queries, args.k)
        n_one = min(args.exact_queries, len(queries))
        log(f"exact search, {n_one} queries one at a time")
        one, one_s = run_one_at_a_time(exact_one(items, args.k), queries[:n_one], args.k, 3)
        exact = {
            "one_at_a_time_qps": n_one / one_s,
            "one_at_a_time_queries": n_one,
            "batched_qps": len(queries) / batched_s,
            "batch": 64,
            "memory_mib": items.nbytes / 2**20,
            "one_vs_batched_agreement": recall(one, truth[:n_one]),
        }
        b = Bench(
            items,
            queries,
            truth,
            args.k,
            args.build_threads,
            exact["one_at_a_time_qps"],
            args.stop_recall,
            args.min_speedup,
        )
        rows = run_candidates(b, builds)
        ours = shipped(b) if args.shipped else None
        threads_at_end = thread_report()
    total_s = time.perf_counter() - started
    verdict = recommendation(rows) if rows else []  # none with --candidates ''
    p1, p50, p99 = np.percentile(norms, [1, 50, 99])
    distinct = len(np.unique(truth))

    if args.json:
        doc = {
            "settings": vars(args),
            "versions": {
                "faiss": faiss.__version__,
                "usearch": usearch_version,
                "numpy": np.__version__,
            },
            "machine": note,
            "data": {
                "seconds": data_s,
                "item_norm_p1_p50_p99": [p1, p50, p99],
                "item_norm_max": float(norms.max()),
                "distinct_items_in_exact_top_k": distinct,
            },
            "exact": exact,
            "builds": [key for key, _ in builds],
            "skipped": skipped,
            "rows": [asdict(r) | {"meets": r.meets} for r in rows],
            "recommendation": verdict,
            "shipped": None if ours is None else asdict(ours) | {"meets": ours.meets},
            "total_s": total_s,
        }
        print(json.dumps(doc, indent=2))
        return 0

    eq = exact["one_at_a_time_qps"]
    print(
        f"ANN for maximum inner product: {args.items:,} items x {args.dim} dims, "
        f"{args.queries:,} queries, top {args.k}, seed {args.seed}"
    )
    print(f"faiss {faiss.__version__}, usearch {usearch_version}, numpy {np.__version__}; {note}")
    print(
        f"data: item norm p1/p50/p99/max {p1:.3f}/{p50:.3f}/{p99:.3f}/{norms.max():.3f}; "
        f"{distinct:,} distinct items in the {args.queries:,} exact top-{args.k} lists; "
        f"made in {data_s:.1f} s"
    )
    print(
        f"threads: every query timing on 1 (at the end: {threads_at_end}); index builds on "
        f"{args.build_threads} (marked 'Nt'); efConstruction = expansion_add = "
        f"{args.ef_construction}"
    )
    print(
        f"exact (numpy, 1 thread): one query at a time {eq:,.1f} q/s ({1e3 / eq:.1f} ms, "
        f"{n_one} queries) = the speed-up reference; batched (64 per matmul) "
        f"{exact['batched_qps']:,.1f} q/s; the two agree on "
        f"{exact['one_vs_batched_agreement']:.4f} of the top {args.k}"
    )
    print(
        "spaces: ip = inner product on the vectors; aug = MIPS reduced to L2 (items + "
        "sqrt(max|x|^2 - |x|^2), queries + 0)"
    )
    print(
        "MiB: vectors + graph or lists (faiss from its arrays, usearch its serialized length; "
        "usearch's allocator reserves up to ~2x that)"
    )
    print(f"builds: {', '.join(key for key, _ in builds)}")
    if skipped:
        print(f"not measured (--skip): {', '.join(skipped)}")
    print()
    head = [
        "index",
        "space",
        "search param",
        "build s",
        "MiB",
        "recall@10",
        "q/s",
        "us/q",
        "speed-up",
        "target",
    ]
    exact_row = [
        "numpy exact (one at a time)",
        "ip",
        "-",
        "-",
        f"{exact['memory_mib']:,.0f}",
        "1.0000",
        f"{eq:,.1f}",
        f"{1e6 / eq:,.0f}",
        "1.0x",
        "",
    ]
    print(table(head, [exact_row, *table_rows(rows + ([ours] if ours else []))]))
    print()
    print(
        f"target: recall@10 >= {RECALL_TARGET} at >= {SPEEDUP_TARGET:.0f}x exact one at a time "
        f"(sweeps end at recall >= {args.stop_recall} or speed-up < {args.min_speedup}x)"
    )
    for line in verdict:
        print(line)
    if ours is not None:
        print(
            f"shipped: smartrec.pipeline.ann.VectorIndex, default config ({ours.index} "
            f"{ours.params}): recall@10 {ours.recall:.3f}, {ours.qps:,.0f} q/s one search() call "
            f"at a time on 1 thread = {ours.speedup:.0f}x exact; "
            f"{'meets' if ours.meets else 'misses'} the target"
        )
    print(f"total {total_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
