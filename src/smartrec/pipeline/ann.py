"""Maximum inner product search over item vectors: the index behind the embedding retriever.

Below ``AnnConfig.exact_below`` items the search is exhaustive, hence exact and build-free:
faiss's brute-force inner-product kernel over the numpy vectors, on one thread. numpy's own
matrix-vector product is no faster pinned to one thread (0.26-0.42 ms a query at 50,000 x 64
against 0.23-0.32 ms) and cannot be pinned per call: it runs on OpenBLAS's process-wide pool
(0.6-1.0 ms a query on a busy 2-core machine). Above it, a faiss ``IndexIVFFlat``
over the reduction of maximum inner product to L2 that ``benchmarks/ann.py`` chose
(BENCHMARKS.md §5): every item gets an extra coordinate ``sqrt(max|x|^2 - |x|^2)`` and every
query a 0, so that the L2 order of the augmented vectors is the inner-product order of the
originals (inner-product IVF on the plain vectors stalled at 0.70 recall@10 there). The scores
returned are always true inner products, recomputed from the item vectors, best first.

Filtering (times a query at 1M x 64, nlist 4000, nprobe 32, one thread, on a busy 2-core
machine; recall@10 against the exact top 10 under the same filter):

- ``allowed`` (a boolean mask over the items) becomes a faiss ``IDSelectorBitmap`` in the
  per-call search parameters, so the scan of the probed lists skips disallowed items.
  Over-fetching instead cannot know how far to go (about k / share allowed) and was slower on
  rare masks (1% allowed: 126 us with the bitmap, 30-50 us of it packing the mask, against
  271 us over-fetching 3,000; 0.1%: 191 against 1,768 us). A filter thins out every list, so
  recall fell at nprobe 32 (0.84 with 10% allowed, 0.54 with 1%): the probe widens to
  ``nprobe / sqrt(share eligible)`` lists, which kept 0.97-0.99 for 5-50% allowed at
  60-95 us in faiss (``nprobe / share``, meeting as many eligible items as an unfiltered
  search, overshot: 0.997-1.0 at up to 12 times the time). When scoring the eligible items
  alone costs less than that scan (:data:`EXACT_ITEM_COST`; with the defaults, under about
  1.6% eligible) they are scored exactly instead, with faiss's ``knn_inner_products_by_idx``
  (no copy of the vectors). Through :meth:`VectorIndex.search`: recall@10 0.97-1.0 at
  150-380 us for 50% down to 0.1% allowed (unfiltered: 0.964 at 60 us).
- ``exclude`` (item indices, typically a user's few seen items): up to
  :data:`OVERFETCH_MAX_EXCLUDE` ids, fetch ``k + len(exclude)`` and drop them, which needs no
  per-call bitmap of n bits (10 ids: 41 against 52 us); more ids go into a bitmap with their
  bits cleared (1,000 ids: 58 against 140 us; 10,000: 118 against 477 us). With ``allowed``,
  excluded ids are just cleared from its bitmap.
- When fewer than ``min(k, eligible items)`` results survive (eligible items plentiful but far
  from the query, as a category filter can make them), that query falls back to an exact
  search over the eligible items, so a result is never short when enough items are eligible.

The exact mode follows the same rules, its "scan" being all the items.

Threads: the OpenMP thread count (``omp_set_num_threads``) is a per-thread setting (the
nthreads-var ICV; checked with the libgomp that faiss-cpu bundles, and tested): it changes the
count for the calling thread only, and threads started later begin from the process default.
``search`` sets the calling thread's count to 1 for a single query (faiss would otherwise spread
one brute-force query over all cores: 0.7-2 ms instead of 0.23-0.32 ms at 50,000 x 64 on a
busy 2-core machine) or ``batch_threads`` for a batch, and restores it before returning, so no
other thread sees a change. numpy's BLAS, whose OpenBLAS pool is process-wide, is never used while
searching. faiss releases the GIL, its indexes are only read while searching and the search
parameters are built per call, so several threads may search one index at the same time.

Memory: the numpy vectors (not copied by :meth:`VectorIndex.build` when already float32 and
C-contiguous, so they can be shared with the factor model) plus, in IVF mode, the index's own
augmented copy: about twice the vectors. Saved state is ``ann.npz`` (the vectors, or the
serialised faiss index as uint8) and ``ann.json``; never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from smartrec.errors import ModelError

if TYPE_CHECKING:
    import faiss

ANN_NPZ = "ann.npz"
ANN_JSON = "ann.json"
FORMAT = 1
#: Up to this many excluded ids are over-fetched and dropped; more go into a bitmap selector.
OVERFETCH_MAX_EXCLUDE = 128
#: Scoring one eligible item by id costs about this many IVF entries scanned (gather, cache
#: misses): below that ratio a filtered search scores the eligible items alone, exactly.
EXACT_ITEM_COST = 4
#: A query whose probed lists held fewer than k eligible items probes this many times more
#: lists before it falls back to scoring every eligible item.
SHORT_WIDEN = 8
#: Each coarse list should get at least this many training vectors (faiss warns below 39).
MIN_TRAIN_PER_LIST = 39
#: Rows augmented and added to the IVF index per call, to bound the temporary copy.
_ADD_CHUNK = 1 << 16
_EMPTY_IDS = np.empty(0, dtype=np.int64)


class AnnConfig(BaseModel):
    """How to build and search a :class:`VectorIndex`; defaults are the benchmarked setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fewer items than this: exhaustive search, exact and build-free (about 0.2-0.3 ms a query
    #: at 50,000 x 64, where IVF takes 0.03 ms at 0.98 recall@10).
    exact_below: int = Field(default=50_000, ge=0)
    #: IVF coarse lists; None = round(4 sqrt(n)), capped at training vectors / 39.
    nlist: int | None = Field(default=None, ge=1)
    #: Lists scanned per query (capped at nlist): recall@10 0.968 at 1M x 64 (benchmarks/ann.py).
    nprobe: int = Field(default=32, ge=1)
    #: At most this many items (a seeded sample) train the coarse quantizer.
    train_sample: int = Field(default=160_000, ge=1)
    #: OpenMP threads for training and adding; None leaves the calling thread's setting.
    build_threads: int | None = Field(default=None, ge=1)
    #: OpenMP threads for a batch of queries; a single query always runs on one thread.
    batch_threads: int = Field(default=1, ge=1)
    #: Seed of the training sample and of k-means.
    seed: int = 1234


@contextmanager
def _omp_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenMP threads on the calling thread only, then restore it."""
    import faiss

    before = faiss.omp_get_max_threads()
    if n is None or n == before:
        yield
        return
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_untyped() -> Any:
    """faiss for calls its stubs get wrong (the wrappers' keyword and array forms)."""
    import faiss

    return faiss


def _augment(chunk: np.ndarray, max_sq: float) -> np.ndarray:
    """Rows with a last coordinate ``sqrt(max_sq - |x|^2)``: all of norm ``sqrt(max_sq)``."""
    out = np.empty((len(chunk), chunk.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = chunk
    sq = np.einsum("ij,ij->i", chunk, chunk)
    out[:, -1] = np.sqrt(np.maximum(max_sq - sq, 0.0))
    return out


def _ivf_shape(n: int, config: AnnConfig) -> tuple[int, int]:
    """(nlist, training vectors) for ``n`` items."""
    n_train = min(n, config.train_sample)
    if config.nlist is None:
        nlist = max(1, min(round(4 * math.sqrt(n)), n_train // MIN_TRAIN_PER_LIST))
    else:
        nlist = config.nlist
        if nlist > n_train:
            raise ValueError(
                f"nlist={nlist} needs at least as many training vectors; have {n_train} "
                f"(n={n}, train_sample={config.train_sample})"
            )
    return nlist, n_train


def _clear_bits(bitmap: np.ndarray, ids: np.ndarray) -> None:
    """Clear the bits of ``ids`` in a little-endian bitmap, in place."""
    np.bitwise_and.at(bitmap, ids >> 3, ~np.left_shift(1, ids & 7).astype(np.uint8))


class VectorIndex:
    """Top-k item indices by inner product with a user (query) vector; see the module docs.

    Build with :meth:`build` or :meth:`load`. Immutable afterwards, so it can be searched from
    several threads at once.
    """

    def __init__(
        self, vectors: np.ndarray, config: AnnConfig, index: faiss.IndexIVFFlat | None
    ) -> None:
        view = vectors.view()
        view.flags.writeable = False
        self._vectors = view
        self._config = config
        self._index = index
        self._plain_params = (
            None if index is None else _faiss_untyped().SearchParametersIVF(nprobe=self._nprobe)
        )

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, vectors: np.ndarray, config: AnnConfig | None = None) -> VectorIndex:
        """Index ``vectors`` (n, d); not copied when already float32 and C-contiguous.

        The caller must not modify them afterwards: scores are read from them.
        """
        import faiss

        config = config or AnnConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
            raise ValueError(f"vectors must be a non-empty (n, d) array, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        n, d = vectors.shape
        if n < config.exact_below:
            return cls(vectors, config, None)

        # Zero vectors (items a factor model never saw an event of: ALS leaves them at 0) score
        # 0 for every query, and indexed they all map to one point: k-means then collapses
        # centroids onto it (at 1M items with 60 % of them unseen, 2,516 of 4,000 lists came
        # out empty and one held 605k items), so queries probed empty lists, came back short
        # and fell back to exact search. They are left out of the IVF index; a query short of
        # k eligible indexed items is completed by exact search, which sees them.
        sq = np.einsum("ij,ij->i", vectors, vectors)
        nonzero = np.flatnonzero(sq > 0)
        if nonzero.size < config.exact_below:
            return cls(vectors, config, None)
        nlist, n_train = _ivf_shape(int(nonzero.size), config)
        max_sq = float(sq.max())
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist, faiss.METRIC_L2)
        index.cp.seed = config.seed
        rng = np.random.default_rng(config.seed)
        sample = (
            np.sort(rng.choice(nonzero, n_train, replace=False))
            if n_train < nonzero.size
            else nonzero
        )
        with _omp_threads(config.build_threads):
            index.train(_augment(vectors[sample], max_sq))
            for start in range(0, nonzero.size, _ADD_CHUNK):
                chunk = nonzero[start : start + _ADD_CHUNK]
                index.add_with_ids(_augment(vectors[chunk], max_sq), chunk.astype(np.int64))
        return cls(vectors, config, index)

    # ----------------------------------------------------------------- properties
    @property
    def n_items(self) -> int:
        return int(self._vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def exact(self) -> bool:
        """True when every search is exhaustive (fewer items than ``exact_below``)."""
        return self._index is None

    @property
    def config(self) -> AnnConfig:
        return self._config

    @property
    def nlist(self) -> int | None:
        """Coarse lists of the IVF index; None in exact mode."""
        return None if self._index is None else int(self._index.nlist)

    @property
    def _nprobe(self) -> int:
        return min(self._config.nprobe, self.nlist or 1)

    def __repr__(self) -> str:
        kind = "exact" if self._index is None else f"ivf nlist={self.nlist} nprobe={self._nprobe}"
        return f"VectorIndex({self.n_items} x {self.dim}, {kind})"

    # ----------------------------------------------------------------- search
    def search(
        self,
        query: np.ndarray,
        k: int,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items by inner product: (int64 ids, float32 scores), best first.

        ``query`` is one vector (d,) or a batch (b, d); the results are (k,) or (b, k), padded
        with -1 / -inf when fewer than k items are eligible. ``exclude`` (item indices; ids out
        of range are ignored) and ``allowed`` (bool mask of n_items) apply to every query.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q, single = self._queries(query)
        ex = self._exclude(exclude)
        mask = self._allowed(allowed)
        n = self.n_items

        filtered = mask is not None or ex.size > OVERFETCH_MAX_EXCLUDE  # else over-fetch
        drop = ex if ex.size and not filtered else None
        fetch = min(n, k + (drop.size if drop is not None else 0))
        nprobe = self._nprobe
        n_eligible: int | None = None
        threads = 1 if len(q) == 1 else self._config.batch_threads
        bitmap: np.ndarray | None = None
        if filtered:
            # A filter thins out every list: probe nprobe / sqrt(share eligible) lists (see the
            # module docs), unless scoring just the eligible items costs less than that scan.
            n_eligible = self._eligible_count(mask, ex)
            scanned = float(n)
            if self._index is not None:
                nlist = int(self._index.nlist)
                share = max(n_eligible, 1) / n
                nprobe = min(nlist, math.ceil(self._nprobe / math.sqrt(share)))
                scanned = int(self._index.ntotal) * nprobe / nlist
            if n_eligible * EXACT_ITEM_COST <= scanned:
                with _omp_threads(threads):
                    ids, scores = self._exact_rows(q, self._eligible_ids(mask, ex), k)
                return (ids[0], scores[0]) if single else (ids, scores)
            if mask is not None:
                bitmap = np.packbits(mask, bitorder="little")
            else:
                bitmap = np.full((n + 7) // 8, 0xFF, dtype=np.uint8)
            if ex.size:
                _clear_bits(bitmap, ex)

        # the array form keeps a reference to the bitmap for as long as the selector lives
        selector = None if bitmap is None else _faiss_untyped().IDSelectorBitmap(bitmap)
        with _omp_threads(threads):
            ids = self._candidates(q, fetch, selector, nprobe)
            if drop is not None:  # sorted and unique: a binary search beats np.isin here
                at = np.minimum(np.searchsorted(drop, ids), drop.size - 1)
                ids[drop[at] == ids] = -1
            ids, scores = self._rank(q, ids, k)
            if ids[:, -1].min() < 0:  # some row short: rows are -1 padded at the end
                if n_eligible is None:
                    n_eligible = self._eligible_count(mask, ex)
                want = min(k, n_eligible)
                short = np.flatnonzero((ids >= 0).sum(axis=1) < want)
                wider = min(int(self._index.nlist), nprobe * SHORT_WIDEN) if self._index else 0
                if short.size and wider > nprobe:
                    # The probed lists held too few items (lists are uneven): probe more lists
                    # first, a fraction of the cost of scoring every eligible item.
                    more = self._candidates(q[short], fetch, selector, wider)
                    if drop is not None:
                        at = np.minimum(np.searchsorted(drop, more), drop.size - 1)
                        more[drop[at] == more] = -1
                    ids[short], scores[short] = self._rank(q[short], more, k)
                    short = short[(ids[short] >= 0).sum(axis=1) < want]
                if short.size:
                    eligible = self._eligible_ids(mask, ex)
                    ids[short], scores[short] = self._exact_rows(q[short], eligible, k)
        if single:
            return ids[0], scores[0]
        return ids, scores

    def _queries(self, query: np.ndarray) -> tuple[np.ndarray, bool]:
        """Queries as a C-contiguous float32 (b, d) array, and whether one vector was given."""
        q = np.asarray(query, dtype=np.float32)
        single = q.ndim == 1
        if single:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query must be ({self.dim},) or (b, {self.dim}), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("query contains NaN or infinite values")
        return np.ascontiguousarray(q), single

    def _exclude(self, exclude: np.ndarray | None) -> np.ndarray:
        """Unique excluded ids within range, sorted."""
        if exclude is None:
            return _EMPTY_IDS
        ex = np.asarray(exclude).ravel()
        if ex.size == 0:
            return _EMPTY_IDS
        if not np.issubdtype(ex.dtype, np.integer):
            raise ValueError(f"exclude must hold integer item indices, got {ex.dtype}")
        ex = ex.astype(np.int64, copy=False)
        if ex.size > 1 and not (ex[1:] > ex[:-1]).all():
            ex = np.unique(ex)
        if ex[0] < 0 or ex[-1] >= self.n_items:
            ex = ex[(ex >= 0) & (ex < self.n_items)]
        return ex

    def _allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self.n_items,):
            raise ValueError(
                f"allowed must be a bool mask of shape ({self.n_items},), "
                f"got {mask.dtype} {mask.shape}"
            )
        return mask

    def _candidates(
        self, q: np.ndarray, fetch: int, selector: faiss.IDSelector | None, nprobe: int
    ) -> np.ndarray:
        """Ids (b, fetch) from the index or the brute-force kernel, -1 padded; writable."""
        import faiss

        if self._index is not None:
            x = np.zeros((len(q), self.dim + 1), dtype=np.float32)
            x[:, :-1] = q
            params = (
                self._plain_params
                if selector is None and nprobe == self._nprobe
                else _faiss_untyped().SearchParametersIVF(nprobe=nprobe, sel=selector)
            )
            _, ids = self._index.search(x, fetch, params=params)
            return ids
        dist = np.empty((len(q), fetch), dtype=np.float32)
        ids = np.empty((len(q), fetch), dtype=np.int64)
        faiss.knn_inner_product(
            faiss.swig_ptr(q),
            faiss.swig_ptr(self._vectors),
            self.dim,
            len(q),
            self.n_items,
            fetch,
            faiss.swig_ptr(dist),
            faiss.swig_ptr(ids),
            selector,
        )
        return ids

    def _rank(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """True inner products of candidate ``ids`` (-1 = none); the best k of each row."""
        if len(q) == 1:  # the serving case: 1-D steps cost a third of the 2-D ones below
            row = ids[0]
            row = row[row >= 0]
            row_scores = np.einsum("kd,d->k", self._vectors[row], q[0])
            best = np.argsort(-row_scores, kind="stable")[:k]
            if best.size == k:
                return row[best][None, :], row_scores[best][None, :]
            out_ids = np.full((1, k), -1, dtype=np.int64)
            out_scores = np.full((1, k), -np.inf, dtype=np.float32)
            out_ids[0, : best.size] = row[best]
            out_scores[0, : best.size] = row_scores[best]
            return out_ids, out_scores
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        valid = ids >= 0
        vecs = self._vectors[np.where(valid, ids, 0)]
        scores = np.einsum("bkd,bd->bk", vecs, q)  # no BLAS: numpy's pool is process-wide
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        width = order.shape[1]
        out_ids[:, :width] = np.take_along_axis(ids, order, axis=1)
        out_scores[:, :width] = np.take_along_axis(scores, order, axis=1)
        out_ids[out_scores == -np.inf] = -1
        return out_ids, out_scores

    def _eligible_count(self, mask: np.ndarray | None, ex: np.ndarray) -> int:
        if mask is None:
            return self.n_items - ex.size
        return int(np.count_nonzero(mask)) - (int(np.count_nonzero(mask[ex])) if ex.size else 0)

    def _eligible_ids(self, mask: np.ndarray | None, ex: np.ndarray) -> np.ndarray:
        keep = np.ones(self.n_items, dtype=bool) if mask is None else mask.copy()
        keep[ex] = False
        return np.flatnonzero(keep).astype(np.int64, copy=False)

    def _exact_rows(
        self, q: np.ndarray, eligible: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k of queries (b, d) among ``eligible`` ids, without copying vectors."""
        fa = _faiss_untyped()
        m = min(k, eligible.size)
        ids = np.full((len(q), max(m, 1)), -1, dtype=np.int64)
        dist = np.empty((1, max(m, 1)), dtype=np.float32)
        for r in range(len(q) if m else 0):
            row = np.ascontiguousarray(q[r : r + 1])
            fa.knn_inner_products_by_idx(
                fa.swig_ptr(row),
                fa.swig_ptr(self._vectors),
                fa.swig_ptr(eligible),
                self.dim,
                1,
                self.n_items,
                eligible.size,
                m,
                fa.swig_ptr(dist),
                fa.swig_ptr(ids[r]),
                eligible.size,
            )
        return self._rank(q, ids, k)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``ann.npz`` (vectors, or the serialised IVF index) and ``ann.json``."""
        import faiss

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = (  # Any: numpy's stub types **kwds as bool
            {"vectors": self._vectors}
            if self._index is None
            else {"index": faiss.serialize_index(self._index)}
        )
        np.savez(path / ANN_NPZ, **arrays)
        mode: Literal["exact", "ivf"] = "exact" if self._index is None else "ivf"
        meta = {
            "format": FORMAT,
            "mode": mode,
            "n_items": self.n_items,
            "dim": self.dim,
            "nlist": self.nlist,
            "config": self._config.model_dump(mode="json"),
        }
        (path / ANN_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read what :meth:`save` wrote; the IVF vectors are read back out of the index."""
        import faiss

        path = Path(directory)
        try:
            meta = json.loads((path / ANN_JSON).read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"no {ANN_JSON} in {path}") from exc
        if meta.get("format") != FORMAT or meta.get("mode") not in ("exact", "ivf"):
            raise ModelError(f"{path / ANN_JSON}: unknown format {meta.get('format')!r}")
        config = AnnConfig.model_validate(meta["config"])
        n, d = int(meta["n_items"]), int(meta["dim"])
        with np.load(path / ANN_NPZ, allow_pickle=False) as npz:
            if meta["mode"] == "exact":
                vectors = np.ascontiguousarray(npz["vectors"], dtype=np.float32)
                if vectors.shape != (n, d):
                    raise ModelError(f"{path}: vectors {vectors.shape}, expected {(n, d)}")
                return cls(vectors, config, None)
            blob = np.ascontiguousarray(npz["index"], dtype=np.uint8)
        index = faiss.deserialize_index(blob)
        if (
            not isinstance(index, faiss.IndexIVFFlat)
            or index.d != d + 1
            or index.ntotal > n
            or index.metric_type != faiss.METRIC_L2
        ):
            raise ModelError(f"{path}: the saved index does not match {ANN_JSON}")
        # Each list holds (id, raw augmented vector); items left out (zero vectors) stay 0.
        vectors = np.zeros((n, d), dtype=np.float32)
        lists = index.invlists
        if lists is None:
            raise ModelError(f"{path}: the saved index has no inverted lists")
        for lst in range(index.nlist):
            size = lists.list_size(lst)
            if size == 0:
                continue
            ids = faiss.rev_swig_ptr(lists.get_ids(lst), size).astype(np.int64)
            raw = faiss.rev_swig_ptr(lists.get_codes(lst), size * index.code_size)
            if ids.min() < 0 or ids.max() >= n:
                raise ModelError(f"{path}: the saved index holds ids outside 0..{n - 1}")
            vectors[ids] = raw.view(np.float32).reshape(size, d + 1)[:, :d]
        return cls(vectors, config, index)
