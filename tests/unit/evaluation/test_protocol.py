"""The evaluation protocol with a tiny in-test Recommender (no dependency on the real models)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.domain import metrics as M
from smartrec.evaluation import (
    evaluate,
    evaluate_recommendations,
    evaluation_users,
    format_table,
    run_stratified_movielens,
    score_recommendations,
)
from smartrec.evaluation.protocol import split_interactions
from smartrec.models.base import Recommender
from tests.unit.datasets.test_datasets import write_grouplens


class FixedScores(Recommender):
    """Scores every user with the same item vector (``order``): a controllable toy model."""

    name = "fixed"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"order": None}

    def _fit(self, data: Interactions) -> None:
        order = self.params["order"]
        if order is None:  # popularity
            self.scores = np.asarray(data.binarized().sum(axis=0), dtype=np.float32).ravel()
        else:
            self.scores = np.asarray(order, dtype=np.float32)

    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.tile(self.scores, (user_items.shape[0], 1))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores = arrays["scores"]


def _data(
    item_categories: dict[str, list[str]] | None = None,
) -> tuple[Interactions, sp.csr_matrix]:
    # 3 users, 5 items. Train: u0 saw i0; u1 saw i1; u2 saw i0, i1.
    users = np.array(["u0", "u1", "u2", "u0", "u1"], dtype=object)
    items = np.array(["i0", "i1", "i0", "i2", "i3"], dtype=object)
    train_mask = np.array([True, True, True, False, False])
    extra_u = np.array(["u2", "x"], dtype=object)  # u2 rated i1; item i4 is only known
    extra_i = np.array(["i1", "i4"], dtype=object)
    u = np.concatenate([users, extra_u])
    i = np.concatenate([items, extra_i])
    mask = np.concatenate([train_mask, [True, True]])
    return split_interactions(u, i, np.ones(len(u)), np.zeros(len(u)), mask, item_categories)


def test_split_interactions_shares_axes() -> None:
    train, test = _data()
    assert test.shape == (train.n_users, train.n_items) == (4, 5)
    assert train.matrix.nnz == 5 and test.nnz == 2


def test_evaluate_excludes_seen_items_and_scores_only_test_users() -> None:
    train, test = _data()
    # item order: i2 > i3 > i0 > i1 > i4
    order = np.zeros(train.n_items, dtype=np.float32)
    for item, score in {"i2": 5, "i3": 4, "i0": 3, "i1": 2, "i4": 1}.items():
        order[train.items.get(item)] = score
    rows = evaluate({"fixed": FixedScores(order=order)}, train, test, k=2, batch_size=1)
    (row,) = rows
    # u0 (seen i0): recs [i2, i3], relevant {i2} -> hit at 1
    # u1 (seen i1): recs [i2, i3], relevant {i3} -> hit at 2
    assert row["n_users"] == 2
    assert row["precision@2"] == pytest.approx(0.5)
    assert row["recall@2"] == pytest.approx(1.0)
    assert row["map"] == pytest.approx((1.0 + 0.5) / 2)
    assert row["ndcg@2"] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    assert row["coverage"] == pytest.approx(2 / 5)
    assert row["train_seconds"] >= 0 and row["predict_seconds"] >= 0
    table = format_table({"k": 2, "rows": rows})
    assert "fixed" in table and "ild@2" in table and "novelty@2" in table
    # one recommend call serves the curves: K=1 hits only u0; K=20 pads 5 items with -1
    assert row["curves"]["precision"][1] == pytest.approx(0.5)
    assert row["curves"]["recall"][20] == pytest.approx(1.0)
    assert set(row["curves"]["ndcg"]) == {1, 3, 5, 10, 20}
    assert math.isnan(row["ild@2"])  # no item categories


CATEGORIES = {"i0": ["a"], "i1": ["a"], "i2": ["a"], "i3": ["b"], "i4": ["b"]}


def test_score_recommendations_is_consistent_with_the_metric_functions() -> None:
    train, test = _data(CATEGORIES)
    users = evaluation_users(test)
    np.testing.assert_array_equal(users, np.flatnonzero(np.diff(test.indptr) > 0))
    rel = test[users]
    i = train.items.get
    recs = np.array([[i("i2"), i("i3"), i("i4"), -1], [i("i3"), i("i0"), -1, -1]])
    row = score_recommendations("m", recs, rel, train, ks=(1, 2, 4, 8), k=2)
    want = M.ranking_metrics(recs, rel, 2, n_items=train.n_items)
    for key, value in want.items():
        assert row[key] == pytest.approx(value), key
    counts = M.item_user_counts(train.matrix)
    np.testing.assert_array_equal(counts[[i("i0"), i("i1"), i("i2")]], [2, 2, 0])
    # top-2 lists: [i2 (a), i3 (b)] -> 1, [i3 (b), i0 (a)] -> 1
    assert row["ild@2"] == pytest.approx(1.0)
    assert row["novelty@2"] == pytest.approx(M.novelty(recs, counts, train.n_users, 2))
    assert row["arp@2"] == pytest.approx((0 / 2 + 2 / 2) / 2)
    assert set(row["curves"]) == {"ndcg", "precision", "recall"}
    assert set(row["curves"]["ndcg"]) == {1, 2, 4}  # 8 > the 4 columns given: left out
    assert row["curves"]["ndcg"][2] == pytest.approx(row["ndcg@2"])
    assert len(row["popularity_bias"]) == 10 and sum(row["popularity_bias"]) == pytest.approx(1)
    assert row["n_users"] == 2 and row["model"] == "m"
    with pytest.raises(ValueError):
        score_recommendations("m", recs[:1], rel, train)


def test_evaluate_recommendations_scores_precomputed_lists_like_evaluate() -> None:
    train, test = _data(CATEGORIES)
    model = FixedScores(order=np.arange(train.n_items, dtype=np.float32)[::-1].copy())
    (row,) = evaluate({"fixed": model}, train, test, k=2)
    recs, _ = model.recommend(
        train.matrix[evaluation_users(test)], 20, exclude=train.seen[evaluation_users(test)]
    )
    other = evaluate_recommendations("pipe", recs, train, test, k=2, params={"a": 1})
    for key in ("ndcg@2", "map", "precision@2", "recall@2", "coverage", "ild@2", "novelty@2"):
        assert other[key] == pytest.approx(row[key]), key
    assert other["curves"]["ndcg"][5] == pytest.approx(row["curves"]["ndcg"][5])
    assert other["params"] == {"a": 1} and math.isnan(other["train_seconds"])
    assert "pipe" in format_table({"k": 2, "rows": [other]})
    with pytest.raises(ValueError, match="evaluation user"):
        evaluate_recommendations("pipe", recs[:1], train, test)
    with pytest.raises(ValueError, match="same id maps"):
        evaluate_recommendations("pipe", recs, train, sp.csr_matrix((2, 2)))


def test_evaluate_rejects_misaligned_relevance() -> None:
    train, _ = _data()
    with pytest.raises(ValueError, match="same id maps"):
        evaluate({"fixed": FixedScores()}, train, sp.csr_matrix((2, 2)))


def test_run_stratified_movielens_on_a_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smartrec.models

    rng = np.random.default_rng(0)
    ratings = [
        (str(u), str(i), int(rng.integers(1, 6)), 880000000 + n)
        for n, (u, i) in enumerate((u, i) for u in (196, 186, 22) for i in (242, 302, 377))
    ]
    root = write_grouplens(tmp_path / "ml", ratings)
    created: list[tuple[str, dict[str, object]]] = []

    def fake_create(name: str, **params: object) -> Recommender:
        created.append((name, params))
        return FixedScores()

    monkeypatch.setattr(smartrec.models, "create", fake_create)
    result = run_stratified_movielens(
        ["ease", "toy"], params={"toy": {"order": None}}, data_path=root, allow_download=False
    )
    assert [n for n, _ in created] == ["ease", "toy"]
    assert created[0][1] == {"l2": 500.0}  # PROTOCOL_PARAMS applied
    assert created[1][1] == {"order": None}
    # 3 items x 3 ratings: round(2.25) = 2 train rows each
    assert (result["n_train"], result["n_test"]) == (6, 3)
    assert [r["model"] for r in result["rows"]] == ["ease", "toy"]
    assert result["ks"] == [1, 3, 5, 10, 20]
    assert {"curves", "popularity_bias", "ild@10", "novelty@10", "arp@10"} <= set(result["rows"][0])
    assert not math.isnan(result["rows"][0]["ild@10"])  # genres feed ILD
    assert result["dataset"] == "MovieLens 100K" and "filter_by='item'" in result["protocol"]
    with pytest.raises(ValueError):
        run_stratified_movielens(["toy"], weighting="stars", data_path=root)  # type: ignore[arg-type]
