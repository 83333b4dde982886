"""The evaluation protocol with a tiny in-test Recommender (no dependency on the real models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.evaluation import evaluate, format_table, run_stratified_movielens
from smartrec.evaluation.protocol import split_interactions
from smartrec.models.base import Recommender
from tests.unit.test_datasets import write_grouplens


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


def _data() -> tuple[Interactions, sp.csr_matrix]:
    # 3 users, 5 items. Train: u0 saw i0; u1 saw i1; u2 saw i0, i1.
    users = np.array(["u0", "u1", "u2", "u0", "u1"], dtype=object)
    items = np.array(["i0", "i1", "i0", "i2", "i3"], dtype=object)
    train_mask = np.array([True, True, True, False, False])
    extra_u = np.array(["u2", "x"], dtype=object)  # u2 rated i1; item i4 is only known
    extra_i = np.array(["i1", "i4"], dtype=object)
    u = np.concatenate([users, extra_u])
    i = np.concatenate([items, extra_i])
    mask = np.concatenate([train_mask, [True, True]])
    return split_interactions(u, i, np.ones(len(u)), np.zeros(len(u)), mask)


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
    assert "fixed" in format_table({"k": 2, "rows": rows})


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
    assert result["dataset"] == "MovieLens 100K" and "filter_by='item'" in result["protocol"]
    with pytest.raises(ValueError):
        run_stratified_movielens(["toy"], weighting="stars", data_path=root)  # type: ignore[arg-type]
