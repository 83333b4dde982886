"""The recommendation algorithms on tiny datasets whose answers are known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.domain import IdMap, Interactions
from smartrec.errors import ModelError
from smartrec.models import Recommender, algorithm_names, create, get_algorithm
from smartrec.models import itemknn as itemknn_module
from smartrec.models.ease import EASE, spd_inverse
from smartrec.models.factor import ALS, BPR
from smartrec.models.itemknn import ItemKNN, cosine_topk
from smartrec.models.popularity import Popularity

DAY = 86_400.0
#: 2001-09-09: far in the past, so a model that decayed against the wall clock would score ~0.
T0 = 1_000_000_000.0

#: Small, fast settings that still learn the two-group structure reliably.
PARAMS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"k": 10, "shrink": 1.0},
    "ease": {"l2": 1.0},
    "als": {"factors": 8, "regularization": 0.1, "iterations": 20},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 300},
}
PERSONAL = ["itemknn", "ease", "als", "bpr"]


def events(pairs: list[tuple[int, int]], weights: list[float] | None = None) -> Interactions:
    """Interactions from (user, item) index pairs; ids 'u<n>'/'i<n>' map to index n."""
    n_users = max(u for u, _ in pairs) + 1
    n_items = max(i for _, i in pairs) + 1
    return Interactions.from_events(
        [f"u{u}" for u, _ in pairs],
        [f"i{i}" for _, i in pairs],
        weights if weights is not None else [1.0] * len(pairs),
        users=IdMap(f"u{u}" for u in range(n_users)),
        items=IdMap(f"i{i}" for i in range(n_items)),
    )


def two_groups() -> Interactions:
    """Users 0-3 like items 0-2, users 4-7 like items 3-5; users 0 and 4 lack their third item."""
    pairs = [(0, 0), (0, 1), (4, 3), (4, 4)]
    pairs += [(u, i) for u in (1, 2, 3) for i in (0, 1, 2)]
    pairs += [(u, i) for u in (5, 6, 7) for i in (3, 4, 5)]
    return events(pairs)


def row(items: list[int], n_items: int, values: list[float] | None = None) -> sp.csr_matrix:
    vals = values if values is not None else [1.0] * len(items)
    return sp.csr_matrix(
        (np.asarray(vals, dtype=np.float32), ([0] * len(items), items)), shape=(1, n_items)
    )


@pytest.fixture(scope="module")
def groups() -> Interactions:
    return two_groups()


@pytest.fixture(scope="module")
def fitted(groups: Interactions) -> dict[str, Recommender]:
    return {name: create(name, **PARAMS[name]).fit(groups) for name in algorithm_names()}


# ----------------------------------------------------------------------------- registry, params
def test_registry_names_match_classes() -> None:
    assert set(algorithm_names()) == {"popularity", "itemknn", "ease", "als", "bpr"}
    for name in algorithm_names():
        assert get_algorithm(name).name == name


@pytest.mark.parametrize("name", ["popularity", "itemknn", "ease", "als", "bpr"])
def test_unknown_param_raises(name: str) -> None:
    with pytest.raises(ModelError, match="unknown parameter"):
        create(name, no_such_param=1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("popularity", {"half_life_days": 0}),
        ("popularity", {"window_days": -1.0}),
        ("itemknn", {"k": 0}),
        ("itemknn", {"shrink": -1.0}),
        ("ease", {"l2": 0.0}),
        ("als", {"factors": 0}),
        ("bpr", {"iterations": 0}),
    ],
)
def test_bad_param_values_raise(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ModelError):
        create(name, **params)


# ----------------------------------------------------------------------------- personal models
@pytest.mark.parametrize("name", PERSONAL)
def test_group_taste_first_for_unknown_user(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    ui = row([0, 1], model.n_items)
    ids, scores = model.recommend(ui, n=4, exclude=ui)
    assert ids[0, 0] == 2, (name, ids, scores)
    assert 0 not in ids and 1 not in ids


@pytest.mark.parametrize("name", PERSONAL)
def test_group_taste_first_for_known_user(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    for user, seen, expected in ((0, [0, 1], 2), (4, [3, 4], 5)):
        ui = row(seen, model.n_items)
        ids, _ = model.recommend(ui, n=1, users=np.array([user]), exclude=ui)
        assert ids[0, 0] == expected, (name, user, ids)


@pytest.mark.parametrize("name", PERSONAL)
def test_similar_items_stay_in_group(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    ids, scores = model.similar_items(np.array([0, 4]), n=2)
    assert set(ids[0]) == {1, 2}, (name, ids, scores)
    assert set(ids[1]) == {3, 5}, (name, ids, scores)
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_fold_in_of_empty_row_scores_zero(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    empty = sp.csr_matrix((2, model.n_items), dtype=np.float32)
    assert np.array_equal(model.score(empty), np.zeros((2, model.n_items), dtype=np.float32))


def test_mixed_batch_uses_factors_for_known_and_fold_in_for_unknown(
    fitted: dict[str, Recommender],
) -> None:
    model = fitted["als"]
    assert isinstance(model, ALS)
    ui = sp.vstack([row([0, 1], model.n_items), row([3, 4], model.n_items)]).tocsr()
    scores = model.score(ui, np.array([0, -1]))
    np.testing.assert_allclose(scores[0], model.user_factors[0] @ model.item_factors.T, atol=1e-6)
    assert np.argmax(np.where(np.isin(np.arange(6), [3, 4]), -np.inf, scores[1])) == 5


def test_als_fold_in_is_implicits_exact_user_solve(groups: Interactions) -> None:
    """Same as implicit's own Cholesky user solve, incl. its confidence (alpha * r)."""
    import implicit.cpu.als

    model = ALS(factors=4, alpha=3.0, regularization=0.2, iterations=5).fit(groups)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit warns about threaded BLAS otherwise
        reference = implicit.cpu.als.AlternatingLeastSquares(
            factors=4, regularization=0.2, alpha=3.0
        )
    reference.user_factors = model.user_factors.copy()
    reference.item_factors = model.item_factors.copy()
    ui = sp.csr_matrix(np.array([[2.0, 1.0, 0, 0, 0, 0], [0, 0, 0, 0.5, 0, 4.0]], np.float32))
    expected = reference.recalculate_user(np.arange(2), ui)
    np.testing.assert_allclose(model._fold_in(ui), expected, rtol=1e-4, atol=1e-5)


def test_bpr_keeps_bias_column_convention(fitted: dict[str, Recommender]) -> None:
    model = fitted["bpr"]
    assert isinstance(model, BPR)
    factors = PARAMS["bpr"]["factors"]
    assert model.item_factors.shape == (6, factors + 1)
    assert model.user_factors.shape == (8, factors + 1)
    np.testing.assert_array_equal(model.user_factors[:, -1], 1.0)
    folded = model._fold_in(row([0, 1], 6))
    assert folded.shape == (1, factors + 1) and folded[0, -1] == 1.0


def test_factor_use_gpu_without_cuda_raises(groups: Interactions) -> None:
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("CUDA is available here")
    for klass in (ALS, BPR):
        with pytest.raises(ModelError, match="CUDA"):
            klass(use_gpu=True, iterations=1).fit(groups)


# ----------------------------------------------------------------------------- popularity
def popularity_data() -> Interactions:
    """Item a: 3 events (newest at T0), b: 2 events weight 2 and 5 (old), c: one dislike."""
    users = ["u1", "u2", "u3", "u1", "u2", "u3", "u1"]
    items = ["a", "a", "a", "b", "b", "c", "c"]
    weights = [1.0, 1.0, 1.0, 2.0, 5.0, -1.0, 0.0]
    times = [T0, T0 - DAY, T0 - 2 * DAY, T0 - 3 * DAY, T0 - 1 * DAY, T0, T0]
    return Interactions.from_events(users, items, weights, times)


def test_popularity_counts() -> None:
    model = Popularity().fit(popularity_data())
    np.testing.assert_array_equal(model.score(row([], 3))[0], [3.0, 2.0, 0.0])
    weighted = Popularity(use_weights=True).fit(popularity_data())
    np.testing.assert_array_equal(weighted.score(row([], 3))[0], [3.0, 7.0, 0.0])


def test_popularity_decay_is_relative_to_newest_event_not_now() -> None:
    model = Popularity(half_life_days=1.0).fit(popularity_data())
    assert model.reference_time == T0
    # a: ages 0, 1, 2 days -> 1 + 1/2 + 1/4;  b: ages 3, 1 days -> 1/8 + 1/2
    np.testing.assert_allclose(model.score(row([], 3))[0], [1.75, 0.625, 0.0], rtol=1e-6)
    weighted = Popularity(half_life_days=2.0, use_weights=True).fit(popularity_data())
    b = 2.0 * 0.5 ** (3 / 2) + 5.0 * 0.5 ** (1 / 2)
    a = 1.0 + 0.5 ** (1 / 2) + 0.5
    np.testing.assert_allclose(weighted.score(row([], 3))[0], [a, b, 0.0], rtol=1e-6)


def test_popularity_window() -> None:
    model = Popularity(window_days=1.0).fit(popularity_data())  # t >= T0 - 1 day
    np.testing.assert_array_equal(model.score(row([], 3))[0], [2.0, 1.0, 0.0])
    both = Popularity(window_days=1.5, half_life_days=1.0, use_weights=True)
    np.testing.assert_allclose(both.fit(popularity_data()).score(row([], 3))[0], [1.5, 2.5, 0.0])


def test_popularity_same_scores_for_everyone_and_writable() -> None:
    model = Popularity().fit(popularity_data())
    scores = model.score(sp.csr_matrix((3, 3), dtype=np.float32), np.array([0, -1, 2]))
    assert scores.shape == (3, 3) and scores.flags.writeable
    assert np.all(scores == scores[0])


def test_popularity_without_event_arrays_counts_matrix() -> None:
    """Interactions built straight from a matrix carry no events: count users per item."""
    matrix = sp.csr_matrix(np.array([[2.0, 0, 1.0], [3.0, 0, 0]], dtype=np.float32))
    data = Interactions(IdMap(["a", "b"]), IdMap(["x", "y", "z"]), matrix, matrix)
    np.testing.assert_array_equal(Popularity().fit(data).scores, [2.0, 0.0, 1.0])
    np.testing.assert_array_equal(Popularity(use_weights=True).fit(data).scores, [5.0, 0.0, 1.0])


def test_popularity_has_no_similar_items() -> None:
    model = Popularity().fit(popularity_data())
    assert Popularity.supports_similar is False
    with pytest.raises(ModelError, match="similar"):
        model.similar_items(np.array([0]), n=2)


def test_recommend_exclude_and_allowed_masks() -> None:
    """Popularity order is 3, 2, 1, 0 by construction; masks and padding on top of it."""
    pairs = [(u, 3) for u in range(4)] + [(u, 2) for u in range(3)] + [(0, 1), (1, 1)] + [(0, 0)]
    model = Popularity().fit(events(pairs))
    ids, scores = model.recommend(sp.csr_matrix((1, 4), dtype=np.float32), n=4)
    assert ids.tolist() == [[3, 2, 1, 0]]
    np.testing.assert_array_equal(scores, [[4, 3, 2, 1]])
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32))
    allowed = np.array([True, True, True, True])
    allowed[1] = False
    ids, scores = model.recommend(
        sp.csr_matrix((2, 4), dtype=np.float32), n=3, exclude=exclude, allowed=allowed
    )
    assert ids.tolist() == [[2, 0, -1], [3, 0, -1]]
    assert scores[0, 2] == -np.inf and scores[1, 2] == -np.inf


# ----------------------------------------------------------------------------- EASE
EASE_X = np.array(
    [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=np.float64
)


def ease_data(values: np.ndarray) -> Interactions:
    users, items = np.nonzero(values)
    pairs = list(zip(users.tolist(), items.tolist(), strict=True))
    return events(pairs, values[users, items].tolist())


@pytest.mark.parametrize("binary", [True, False])
def test_ease_matches_numpy_closed_form(binary: bool) -> None:
    values = EASE_X * np.array([1, 2, 1, 3, 1])[:, None]  # non-binary confidences
    x = EASE_X if binary else values
    g = x.T @ x + 2.0 * np.eye(4)
    p = np.linalg.inv(g)
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    model = EASE(l2=2.0, binary=binary).fit(ease_data(values))
    assert model.weights.dtype == np.float32
    np.testing.assert_allclose(model.weights, expected, rtol=1e-5, atol=1e-6)
    ui = sp.csr_matrix(values[:2].astype(np.float32))
    np.testing.assert_allclose(model.score(ui), x[:2] @ expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model._similar_scores(np.array([2])), expected[[2]], rtol=1e-5)


def test_spd_inverse_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 5, 300):  # 300 crosses no block edge; 5000 would, but is slow here
        a = rng.random((n + 3, n))
        g = a.T @ a + np.eye(n)
        np.testing.assert_allclose(spd_inverse(g.copy()), np.linalg.inv(g), rtol=1e-8, atol=1e-10)


def test_spd_inverse_symmetrizes_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import smartrec.models.ease as ease_module

    monkeypatch.setattr(ease_module, "_SYMMETRIZE_BLOCK", 7)
    rng = np.random.default_rng(1)
    a = rng.random((40, 30))
    g = a.T @ a + np.eye(30)
    np.testing.assert_allclose(spd_inverse(g.copy()), np.linalg.inv(g), rtol=1e-8, atol=1e-10)


def test_ease_refuses_more_than_max_items(groups: Interactions) -> None:
    with pytest.raises(ModelError, match=r"max_items=5.*GiB.*itemknn"):
        EASE(max_items=5).fit(groups)


# ----------------------------------------------------------------------------- item-kNN
def knn_data() -> Interactions:
    """Item occurrences: i0 users 0-3, i1 users 0,1,4, i2 users 1,2, i3 user 3."""
    return events([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0), (2, 2), (3, 0), (3, 3), (4, 1)])


# Norms 2, sqrt3, sqrt2, 1; dots (0,1)=2 (0,2)=2 (0,3)=1 (1,2)=1; shrink 1:
S01 = 2 / (2 * math.sqrt(3) + 1)  # 0.4480
S02 = 2 / (2 * math.sqrt(2) + 1)  # 0.5224
S03 = 1 / (2 * 1 + 1)  # 0.3333
S12 = 1 / (math.sqrt(3) * math.sqrt(2) + 1)  # 0.2899


def test_itemknn_similarity_by_hand() -> None:
    full = ItemKNN(k=3, shrink=1.0).fit(knn_data()).similarity.toarray()
    expected = np.array(
        [[0, S01, S02, S03], [S01, 0, S12, 0], [S02, S12, 0, 0], [S03, 0, 0, 0]], dtype=np.float32
    )
    np.testing.assert_allclose(full, expected, rtol=1e-6)
    # k=1: column j keeps only j's best neighbour.
    top1 = ItemKNN(k=1, shrink=1.0).fit(knn_data()).similarity.toarray()
    expected1 = np.zeros((4, 4), dtype=np.float32)
    expected1[2, 0], expected1[0, 1], expected1[0, 2], expected1[0, 3] = S02, S01, S02, S03
    np.testing.assert_allclose(top1, expected1, rtol=1e-6)
    # k=2: column 0 drops i3 (1/3 < 0.448).
    top2 = ItemKNN(k=2, shrink=1.0).fit(knn_data()).similarity.toarray()
    expected2 = expected.copy()
    expected2[3, 0] = 0.0
    np.testing.assert_allclose(top2, expected2, rtol=1e-6)


def test_itemknn_scores_and_similar_by_hand() -> None:
    model = ItemKNN(k=1, shrink=1.0).fit(knn_data())
    # user holding i0 (+ i3): i1 and i2 have i0 as their only neighbour, i3 too.
    np.testing.assert_allclose(model.score(row([0], 4))[0], [0, S01, S02, S03], rtol=1e-6)
    np.testing.assert_allclose(model.score(row([2], 4))[0], [S02, 0, 0, 0], rtol=1e-6)
    ids, scores = model.similar_items(np.array([0, 3]), n=1)
    assert ids.tolist() == [[2], [0]]
    np.testing.assert_allclose(scores[:, 0], [S02, S03], rtol=1e-6)


def test_itemknn_binary_false_uses_confidence() -> None:
    data = events([(0, 0), (0, 1), (1, 0), (1, 1)], [2.0, 1.0, 1.0, 3.0])
    model = ItemKNN(k=5, shrink=0.0, binary=False).fit(data)
    expected = (2 * 1 + 1 * 3) / (math.sqrt(5) * math.sqrt(10))
    np.testing.assert_allclose(model.similarity.toarray()[0, 1], expected, rtol=1e-6)
    binary = ItemKNN(k=5, shrink=0.0).fit(data)
    np.testing.assert_allclose(binary.similarity.toarray()[0, 1], 1.0, rtol=1e-6)
    # binary scoring ignores the row's confidence values
    np.testing.assert_allclose(binary.score(row([0], 2, [7.0]))[0], [0.0, 1.0], rtol=1e-6)


def brute_force_topk(x: sp.csr_matrix, k: int, shrink: float) -> np.ndarray:
    dense = x.toarray().astype(np.float64)
    dots = dense.T @ dense
    norms = np.sqrt(np.diag(dots))
    sim = dots / (np.outer(norms, norms) + shrink)
    np.fill_diagonal(sim, 0.0)
    out = np.zeros_like(sim)
    for j in range(sim.shape[1]):
        best = np.argsort(-sim[:, j], kind="stable")[:k]
        out[best, j] = sim[best, j]
    return out


@pytest.mark.parametrize("dense_fraction", [0.0, 2.0])  # always dense / always sparse ranking
@pytest.mark.parametrize("block_entries", [45 * 4, 1 << 24])  # 4-column blocks / one block
def test_itemknn_topk_paths_match_brute_force(
    monkeypatch: pytest.MonkeyPatch, dense_fraction: float, block_entries: int
) -> None:
    monkeypatch.setattr(itemknn_module, "DENSE_FRACTION", dense_fraction)
    monkeypatch.setattr(itemknn_module, "BLOCK_ENTRIES", block_entries)
    rng = np.random.default_rng(3)
    # Real-valued confidences: no ties at the k-th place, so the kept set is unique.
    x = sp.random(60, 45, density=0.15, random_state=3, format="csr", dtype=np.float32)
    x.data[:] = rng.uniform(0.5, 3.0, size=x.nnz).astype(np.float32)
    s = cosine_topk(x, 5, 2.0)
    np.testing.assert_allclose(s.toarray(), brute_force_topk(x, 5, 2.0), rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(s.tocsc().indptr) <= 5)  # at most k neighbours per target column
    assert s.diagonal().sum() == 0 and s.dtype == np.float32


def test_itemknn_single_item() -> None:
    model = ItemKNN().fit(events([(0, 0), (1, 0)]))
    assert model.similarity.shape == (1, 1) and model.similarity.nnz == 0
    np.testing.assert_array_equal(model.score(row([0], 1)), [[0.0]])


# ----------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("name", ["popularity", "itemknn", "ease", "als", "bpr"])
def test_save_load_round_trip(fitted: dict[str, Recommender], name: str, tmp_path: Path) -> None:
    model = fitted[name]
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.npz"]
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object
        if name == "popularity":
            assert "reference_time" in npz.files
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["algorithm"] == name and meta["params"] == model.params

    loaded = Recommender.load(tmp_path)
    assert type(loaded) is type(model) and loaded.params == model.params
    ui = sp.vstack([row([0, 1], 6), row([3], 6), row([0, 4, 5], 6)]).tocsr()
    users = np.array([0, -1, 6])
    np.testing.assert_array_equal(loaded.score(ui, users), model.score(ui, users))
    np.testing.assert_array_equal(loaded.score(ui), model.score(ui))
    if model.supports_similar:
        items = np.array([0, 3, 5])
        np.testing.assert_array_equal(
            loaded.similar_items(items, n=3)[0], model.similar_items(items, n=3)[0]
        )
    assert type(model).load(tmp_path).params == model.params


@pytest.mark.parametrize("name", ["itemknn", "ease", "als", "bpr"])
def test_contributions_match_full_item_rows(name: str) -> None:
    """The explanation shortcut agrees with the model's own item-to-item scores."""
    from smartrec.models import create

    rng = np.random.default_rng(3)
    users = rng.integers(0, 30, 400).astype(str)
    items = rng.integers(0, 25, 400).astype(str)
    data = Interactions.from_events(users, items, np.ones(400), np.arange(400.0))
    model = create(name, **({"iterations": 3} if name in ("als", "bpr") else {})).fit(data)
    # Unsorted, with a repeat: the serving path passes candidates in ranking order.
    sources, targets = np.array([0, 3, 7]), np.array([9, 1, 5, 2, 1])
    got = model.contributions(sources, targets)
    assert got.shape == (3, 5)
    if name == "itemknn":
        want = model.similarity[sources][:, targets].toarray()  # type: ignore[attr-defined]
    else:
        want = model._similar_scores(sources)[:, targets]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_string_params_are_coerced_to_the_default_type() -> None:
    from smartrec.models import create

    model = create("ease", l2="250", binary="false", max_items="10")
    assert model.params == {"l2": 250.0, "binary": False, "max_items": 10}
    with pytest.raises(ModelError, match="not a valid bool"):
        create("ease", binary="maybe")
