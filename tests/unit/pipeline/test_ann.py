"""VectorIndex: exact and IVF maximum inner product search, filters, threads, persistence."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from smartrec.errors import ModelError
from smartrec.pipeline.ann import OVERFETCH_MAX_EXCLUDE, AnnConfig, VectorIndex

K = 10


def clustered(n_items: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries from shared taste clusters, item norms log-normal (as factors are)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim))

    def draw(n: int, sigma: float) -> np.ndarray:
        v = centres[rng.integers(len(centres), size=n)] + 0.7 * rng.standard_normal((n, dim))
        v *= (np.exp(sigma * rng.standard_normal(n)) / np.linalg.norm(v, axis=1))[:, None]
        return v.astype(np.float32)

    return draw(n_items, 0.5), draw(n_queries, 0.3)


#: float64 copies of the (module-lived) item arrays, with the array itself: an id is reused
#: once its array is freed (another module fixture's, of another width, in random order).
_AS_F64: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def brute(
    items: np.ndarray, q: np.ndarray, k: int, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """numpy exact top k (ids, scores) of one query, optionally among eligible ids."""
    held = _AS_F64.get(id(items))
    if held is None or held[0] is not items:
        held = _AS_F64[id(items)] = (items, items.astype(np.float64))
    scores = held[1] @ q.astype(np.float64)
    ids = np.arange(len(items)) if eligible is None else np.asarray(eligible)
    best = ids[np.argsort(-scores[ids], kind="stable")[:k]]
    return best, scores[best]


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    return clustered(3_000, 40, 16, seed=1)


@pytest.fixture(scope="module")
def exact_index(small: tuple[np.ndarray, np.ndarray]) -> VectorIndex:
    return VectorIndex.build(small[0])


@pytest.fixture(scope="module")
def large() -> tuple[np.ndarray, np.ndarray]:
    return clustered(60_000, 200, 32, seed=2)


@pytest.fixture(scope="module")
def ivf_index(large: tuple[np.ndarray, np.ndarray]) -> VectorIndex:
    # the shipped defaults (nlist round(4 sqrt(n)) = 980, nprobe 32) but for exact_below; two
    # build threads whatever the machine, so that k-means (and the recall) is reproducible
    return VectorIndex.build(large[0], AnnConfig(exact_below=10_000, build_threads=2))


# --------------------------------------------------------------------------- exact mode
def test_exact_mode_matches_numpy_brute_force(
    small: tuple[np.ndarray, np.ndarray], exact_index: VectorIndex
) -> None:
    items, queries = small
    assert exact_index.exact and exact_index.nlist is None
    assert (exact_index.n_items, exact_index.dim) == items.shape
    for q in queries:
        ids, scores = exact_index.search(q, K)
        want_ids, want_scores = brute(items, q, K)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
        assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_exact_mode_pads_when_k_exceeds_items() -> None:
    items, queries = clustered(5, 1, 8, seed=3)
    ids, scores = VectorIndex.build(items).search(queries[0], 8)
    assert sorted(ids[:5].tolist()) == list(range(5))
    assert (ids[5:] == -1).all() and np.isneginf(scores[5:]).all()
    assert (np.diff(scores[:5]) <= 0).all()


# --------------------------------------------------------------------------- IVF mode
def test_ivf_recall_at_10(large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex) -> None:
    items, queries = large
    assert not ivf_index.exact and ivf_index.nlist == 980
    found, _ = ivf_index.search(queries, K)
    scores = queries @ items.T  # one matrix product: 200 brute-force calls are slow on 2 cores
    truth = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    assert hits / (len(queries) * K) >= 0.95


def test_scores_are_true_inner_products_best_first(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex
) -> None:
    items, queries = large
    ids, scores = ivf_index.search(queries, K)
    assert (ids >= 0).all()
    true = np.einsum("bkd,bd->bk", items[ids].astype(np.float64), queries.astype(np.float64))
    np.testing.assert_allclose(scores, true, rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_batch_equals_one_at_a_time(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex
) -> None:
    _, queries = large
    batch_ids, batch_scores = ivf_index.search(queries[:30], K)
    for i, q in enumerate(queries[:30]):
        ids, scores = ivf_index.search(q, K)
        np.testing.assert_array_equal(ids, batch_ids[i])
        np.testing.assert_allclose(scores, batch_scores[i], rtol=1e-6)


def test_auto_nlist_is_capped_by_training_vectors() -> None:
    items, queries = clustered(4_000, 5, 8, seed=4)
    index = VectorIndex.build(items, AnnConfig(exact_below=0, train_sample=2_000))
    assert index.nlist == 2_000 // 39  # round(4 sqrt(4000)) = 253 lists would be undertrained
    ids, _ = index.search(queries[0], K)
    assert (ids >= 0).all()


# --------------------------------------------------------------------------- filters
@pytest.mark.parametrize("mode", ["exact", "ivf"])
@pytest.mark.parametrize("n_excluded", [3, OVERFETCH_MAX_EXCLUDE + 500])
def test_exclude_is_honoured_and_results_are_full(
    mode: str,
    n_excluded: int,
    small: tuple[np.ndarray, np.ndarray],
    exact_index: VectorIndex,
    large: tuple[np.ndarray, np.ndarray],
    ivf_index: VectorIndex,
) -> None:
    items, queries = small if mode == "exact" else large
    index = exact_index if mode == "exact" else ivf_index
    for q in queries[:20]:
        top = brute(items, q, n_excluded)[0]  # the best items: exclusion must bite
        ids, scores = index.search(q, K, exclude=top)
        assert (ids >= 0).all() and not np.isin(ids, top).any()
        assert np.isfinite(scores).all()
    exclude = np.array([-5, 0, 0, 1, len(items) + 3])  # duplicates and strays are harmless
    ids, _ = index.search(queries[0], K, exclude=exclude)
    assert (ids >= 0).all() and not np.isin(ids, [0, 1]).any()


@pytest.mark.parametrize("mode", ["exact", "ivf"])
@pytest.mark.parametrize("share", [0.5, 0.01])
def test_allowed_is_honoured_and_results_are_full(
    mode: str,
    share: float,
    small: tuple[np.ndarray, np.ndarray],
    exact_index: VectorIndex,
    large: tuple[np.ndarray, np.ndarray],
    ivf_index: VectorIndex,
) -> None:
    items, queries = small if mode == "exact" else large
    index = exact_index if mode == "exact" else ivf_index
    allowed = np.random.default_rng(5).random(len(items)) < share
    exclude = np.flatnonzero(allowed)[:5]
    ids, scores = index.search(queries[:20], K, exclude=exclude, allowed=allowed)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    assert allowed[ids].all() and not np.isin(ids, exclude).any()
    if mode == "exact":
        eligible = np.setdiff1d(np.flatnonzero(allowed), exclude)
        for q, row in zip(queries[:20], ids, strict=True):
            np.testing.assert_array_equal(row, brute(items, q, K, eligible)[0])


class Spy:
    """Counts calls of one VectorIndex method (patched on the instance)."""

    def __init__(self, index: VectorIndex, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = getattr(index, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(index, name, spy)


def test_rare_allowed_items_are_scored_exactly(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few eligible items: scoring them alone beats a wide scan, and is exact."""
    items, queries = large
    allowed = np.zeros(len(items), dtype=bool)
    allowed[np.random.default_rng(6).choice(len(items), 40, replace=False)] = True
    scanned = Spy(ivf_index, "_candidates", monkeypatch)
    for q in queries[:20]:
        ids, scores = ivf_index.search(q, K, allowed=allowed)
        want_ids, want_scores = brute(items, q, K, np.flatnonzero(allowed))
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert scanned.calls == 0

    few = np.flatnonzero(allowed)[:3]
    only = np.zeros(len(items), dtype=bool)
    only[few] = True
    ids, scores = ivf_index.search(queries[0], K, allowed=only)
    assert sorted(ids[:3].tolist()) == sorted(few.tolist())
    assert (ids[3:] == -1).all() and np.isneginf(scores[3:]).all()


def test_filtered_recall_stays_high(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex
) -> None:
    """A filter thins out the probed lists; probing more of them keeps the recall up."""
    items, queries = large
    allowed = np.random.default_rng(10).random(len(items)) < 0.3
    exclude = np.arange(0, len(items), 97)
    found, _ = ivf_index.search(queries, K, exclude=exclude, allowed=allowed)
    eligible = allowed.copy()
    eligible[exclude] = False
    scores = queries @ items.T
    scores[:, ~eligible] = -np.inf
    truth = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    assert eligible[found].all()
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    assert hits / (len(queries) * K) >= 0.95


def test_short_results_fall_back_to_exact(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eligible items plentiful but all far from the query: the probed lists come up short."""
    import faiss

    items, queries = large
    q = queries[0]
    ivf: Any = ivf_index._index
    near = set(ivf.quantizer.search(np.append(q, np.float32(0))[None, :], 500)[1][0].tolist())
    allowed = np.zeros(len(items), dtype=bool)
    for lst in set(range(ivf.nlist)) - near:  # only items in the half of lists far from q
        allowed[faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), ivf.invlists.list_size(lst))] = True
    assert 0.2 < allowed.mean() < 0.8  # plenty: the index is searched, not the eligible items
    fallback = Spy(ivf_index, "_exact_rows", monkeypatch)
    ids, scores = ivf_index.search(q, K, allowed=allowed)
    assert fallback.calls == 1
    want_ids, want_scores = brute(items, q, K, np.flatnonzero(allowed))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_nothing_eligible_gives_padding(ivf_index: VectorIndex) -> None:
    q = np.ones(ivf_index.dim, dtype=np.float32)
    ids, scores = ivf_index.search(q, K, allowed=np.zeros(ivf_index.n_items, dtype=bool))
    assert (ids == -1).all() and np.isneginf(scores).all()


# --------------------------------------------------------------------------- threads
def test_concurrent_searches_match_sequential(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex
) -> None:
    _, queries = large
    allowed = np.random.default_rng(7).random(ivf_index.n_items) < 0.2

    def one(i: int) -> tuple[np.ndarray, np.ndarray]:
        exclude = np.arange(i % 7 * 50, i % 7 * 50 + 20)
        return ivf_index.search(queries[i], K, exclude=exclude, allowed=allowed if i % 2 else None)

    sequential = [one(i) for i in range(len(queries))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(one, range(len(queries))))
            for (a_ids, a_scores), (b_ids, b_scores) in zip(sequential, concurrent, strict=True):
                np.testing.assert_array_equal(a_ids, b_ids)
                np.testing.assert_array_equal(a_scores, b_scores)


def test_search_leaves_openmp_threads_alone(
    large: tuple[np.ndarray, np.ndarray], ivf_index: VectorIndex, exact_index: VectorIndex
) -> None:
    """The OpenMP count is per thread: search sets the caller's for the call, then restores it."""
    import faiss

    _, queries = large
    seen: dict[str, int] = {}

    def worker() -> None:
        faiss.omp_set_num_threads(3)
        ivf_index.search(queries[0], K)
        ivf_index.search(queries[:25], K)
        exact_index.search(np.ones(exact_index.dim, dtype=np.float32), K)
        seen["worker"] = faiss.omp_get_max_threads()

    before = faiss.omp_get_max_threads()
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == 3
    assert faiss.omp_get_max_threads() == before  # the worker's setting stayed in the worker


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("mode", ["exact", "ivf"])
def test_save_load_round_trip(
    mode: str,
    tmp_path: Path,
    small: tuple[np.ndarray, np.ndarray],
    exact_index: VectorIndex,
    large: tuple[np.ndarray, np.ndarray],
    ivf_index: VectorIndex,
) -> None:
    _, queries = small if mode == "exact" else large
    index = exact_index if mode == "exact" else ivf_index
    index.save(tmp_path / "ann")
    meta = json.loads((tmp_path / "ann" / "ann.json").read_text())
    with np.load(tmp_path / "ann" / "ann.npz", allow_pickle=False) as npz:
        assert npz.files == (["vectors"] if mode == "exact" else ["index"])
    assert meta["mode"] == mode
    loaded = VectorIndex.load(tmp_path / "ann")
    assert (loaded.n_items, loaded.dim, loaded.exact, loaded.nlist) == (
        index.n_items,
        index.dim,
        index.exact,
        index.nlist,
    )
    assert loaded.config == index.config
    allowed = np.random.default_rng(8).random(index.n_items) < 0.3
    for kwargs in ({}, {"exclude": np.arange(300)}, {"allowed": allowed}):
        a_ids, a_scores = index.search(queries, K, **kwargs)
        b_ids, b_scores = loaded.search(queries, K, **kwargs)
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_array_equal(a_scores, b_scores)


def test_load_rejects_missing_or_foreign_state(tmp_path: Path, exact_index: VectorIndex) -> None:
    with pytest.raises(ModelError):
        VectorIndex.load(tmp_path / "nothing")
    exact_index.save(tmp_path / "ann")
    meta_path = tmp_path / "ann" / "ann.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"format": 99}))
    with pytest.raises(ModelError):
        VectorIndex.load(tmp_path / "ann")
    meta_path.write_text(json.dumps(meta | {"n_items": 7}))
    with pytest.raises(ModelError):
        VectorIndex.load(tmp_path / "ann")


# --------------------------------------------------------------------------- validation
def test_bad_arguments_are_rejected(exact_index: VectorIndex) -> None:
    q = np.ones(exact_index.dim, dtype=np.float32)
    with pytest.raises(ValueError):
        exact_index.search(q, 0)
    with pytest.raises(ValueError):
        exact_index.search(np.ones(exact_index.dim + 1, dtype=np.float32), K)
    with pytest.raises(ValueError):
        exact_index.search(np.full(exact_index.dim, np.nan, dtype=np.float32), K)
    with pytest.raises(ValueError):
        exact_index.search(q, K, allowed=np.ones(exact_index.n_items, dtype=np.int8))
    with pytest.raises(ValueError):
        exact_index.search(q, K, allowed=np.ones(exact_index.n_items + 1, dtype=bool))
    with pytest.raises(ValueError):
        exact_index.search(q, K, exclude=np.array([0.5]))
    with pytest.raises(ValueError):
        VectorIndex.build(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        VectorIndex.build(np.full((3, 4), np.inf, dtype=np.float32))
    with pytest.raises(ValueError):
        VectorIndex.build(np.ones((100, 4), dtype=np.float32), AnnConfig(exact_below=0, nlist=200))
    with pytest.raises(ValidationError):
        AnnConfig(nprobe=0)
    with pytest.raises(ValidationError):
        AnnConfig(n_probe=8)  # type: ignore[call-arg]


def test_build_does_not_copy_float32_vectors_and_freezes_its_view() -> None:
    items, _ = clustered(100, 1, 4, seed=9)
    index = VectorIndex.build(items)
    assert np.shares_memory(index._vectors, items)
    with pytest.raises(ValueError):
        index._vectors[0, 0] = 1.0


def test_zero_vectors_are_left_out_of_the_ivf_lists(
    large: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """Items a factor model never saw have zero vectors; indexed, they collapse k-means onto
    one point (empty lists, short results). They stay out of the lists, and a query that
    wants more than the indexed items still gets them, scored 0, from the exact fallback."""
    items, queries = large
    vectors = items.copy()
    vectors[: int(len(vectors) * 0.6)] = 0.0  # 60 % unseen, as in the 1M-item benchmark
    index = VectorIndex.build(vectors, AnnConfig(exact_below=10_000, build_threads=2))
    ivf: Any = index._index
    assert ivf.ntotal == int((np.abs(vectors).sum(axis=1) > 0).sum())
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    assert (sizes == 0).mean() < 0.05 and sizes.max() < 0.05 * ivf.ntotal
    hits = 0
    for q in queries[:50]:
        ids, _ = index.search(q, K)
        want, _ = brute(vectors, q, K)
        hits += len(set(ids.tolist()) & set(want.tolist()))
    assert hits / (50 * K) >= 0.9
    everything, scores = index.search(queries[0], ivf.ntotal + 5)
    assert (everything >= 0).all() and np.sum(scores == 0) >= 5
    # Saved and loaded: the vectors come back out of the lists, the left-out ones as zeros.
    loaded = VectorIndex.load(index.save(tmp_path / "ann"))
    np.testing.assert_array_equal(loaded._vectors, vectors)
    for q in queries[:5]:
        np.testing.assert_array_equal(loaded.search(q, K)[0], index.search(q, K)[0])
