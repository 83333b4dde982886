"""Matrix factorisation models (ALS, BPR) on top of the ``implicit`` library.

``implicit`` is imported inside the methods that need it, so importing smartrec (the API, the
CLI) stays fast. Only plain float32 numpy factors are kept and saved; users unknown at training
time are folded in from their interaction rows at scoring time, so new users get personal
recommendations without a refit.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.errors import ModelError
from smartrec.models.base import Recommender

if TYPE_CHECKING:
    from implicit.recommender_base import RecommenderBase


def _to_numpy(factors: Any) -> np.ndarray:
    """implicit's GPU models hold ``implicit.gpu.Matrix`` objects; bring them back to the host."""
    if hasattr(factors, "to_numpy"):
        factors = factors.to_numpy()
    return np.ascontiguousarray(factors, dtype=np.float32)


def _check_gpu(name: str, use_gpu: bool) -> bool:
    if not use_gpu:
        return False
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        raise ModelError(
            f"{name}: use_gpu=True but CUDA is not available to implicit "
            "(no GPU, or implicit was installed without its CUDA extension / rmm)"
        )
    return True


class _FactorModel(Recommender):
    """Shared state and scoring for models with user and item factor matrices."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params["factors"]) < 1:
            raise ModelError(f"{self.name}: factors must be >= 1")
        if int(self.params["iterations"]) < 1:
            raise ModelError(f"{self.name}: iterations must be >= 1")
        if float(self.params["regularization"]) < 0:
            raise ModelError(f"{self.name}: regularization must be >= 0")
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)

    @abstractmethod
    def _make_model(self, use_gpu: bool) -> RecommenderBase:
        """The (unfitted) implicit model."""

    @abstractmethod
    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """User factors (rows x item_factors.shape[1]) for users unknown at training time."""

    def _fit(self, data: Interactions) -> None:
        from threadpoolctl import threadpool_limits

        use_gpu = _check_gpu(self.name, bool(self.params["use_gpu"]))
        # implicit runs its own thread pool; a multi-threaded BLAS underneath oversubscribes
        # the cores (implicit warns about a 10x slowdown), so pin BLAS to one thread while fitting.
        with threadpool_limits(1, "blas"):
            model = self._make_model(use_gpu)
            model.fit(sp.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        self.user_factors = _to_numpy(model.user_factors)
        self.item_factors = _to_numpy(model.item_factors)
        self._reset_cache()

    def _reset_cache(self) -> None:
        """Drop values derived from the factors (after fit or load)."""
        self._unit = None

    def user_vectors(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Query vectors whose inner product with ``item_factors`` is the score: learned rows
        for known users, folded in from their items for the others (ANN retrieval uses this)."""
        self._check()
        users = np.asarray(users, dtype=np.int64)
        users = np.where(users >= self.n_users, -1, users)
        vectors = np.zeros((user_items.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        known = users >= 0
        vectors[known] = self.user_factors[users[known]]
        unknown = np.flatnonzero(~known)
        if unknown.size:
            vectors[unknown] = self._fold_in(sp.csr_matrix(user_items[unknown], dtype=np.float32))
        return vectors

    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return self.user_vectors(user_items, users) @ self.item_factors.T

    def _unit_factors(self) -> np.ndarray:
        """Row-normalised taste factors, computed once (similar items and explanations)."""
        unit: np.ndarray | None = getattr(self, "_unit", None)
        if unit is None or unit.shape[0] != self.item_factors.shape[0]:
            factors = self._taste_factors()
            norms = np.linalg.norm(factors, axis=1)
            norms[norms == 0] = 1.0  # items never seen in training have zero factors
            unit = self._unit = (factors / norms[:, None]).astype(np.float32)
        return unit

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        unit = self._unit_factors()
        return unit[items] @ unit.T

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        self._check()
        unit = self._unit_factors()
        return np.asarray(unit[np.asarray(sources)] @ unit[np.asarray(targets)].T, dtype=np.float32)

    def _taste_factors(self) -> np.ndarray:
        """The item factor columns that describe taste (BPR drops its bias column)."""
        return self.item_factors

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._reset_cache()


class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008): weighted least squares on confidence."""

    name = "als"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._yty: np.ndarray | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "factors": 64,
            "regularization": 0.05,
            "alpha": 1.0,
            "iterations": 15,
            "random_state": 42,
            "use_gpu": False,
        }

    def _make_model(self, use_gpu: bool) -> RecommenderBase:
        import implicit.als

        return implicit.als.AlternatingLeastSquares(
            factors=int(self.params["factors"]),
            regularization=float(self.params["regularization"]),
            alpha=float(self.params["alpha"]),
            iterations=int(self.params["iterations"]),
            random_state=self.params["random_state"],
            use_gpu=use_gpu,
        )

    def _reset_cache(self) -> None:
        super()._reset_cache()
        self._yty = None

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """The exact ALS user step, as implicit solves it during training.

        implicit's confidence for an observed item is c = alpha * r (the matrix value times
        alpha), preference p = 1, and unobserved items have c = 1, p = 0, so for each user
        (Y^T Y + reg I + sum_i (c_i - 1) y_i y_i^T) x = sum_i c_i y_i.
        """
        y = self.item_factors
        if self._yty is None:
            y64 = y.astype(np.float64)
            self._yty = y64.T @ y64
        base = self._yty + float(self.params["regularization"]) * np.eye(y.shape[1])
        alpha = float(self.params["alpha"])
        out = np.zeros((user_items.shape[0], y.shape[1]), dtype=np.float32)
        for row in range(user_items.shape[0]):
            lo, hi = user_items.indptr[row], user_items.indptr[row + 1]
            idx = user_items.indices[lo:hi]
            conf = alpha * user_items.data[lo:hi].astype(np.float64)
            pos = conf > 0
            idx, conf = idx[pos], conf[pos]
            if idx.size == 0:
                continue  # nothing to go on: zero scores, the caller falls back to popularity
            yi = y[idx].astype(np.float64)
            a = base + (yi.T * (conf - 1.0)) @ yi
            b = yi.T @ conf
            out[row] = np.linalg.solve(a, b)
        return out


class BPR(_FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009): pairwise SGD on sampled negatives.

    implicit appends an item-bias column to ``item_factors`` and a constant 1.0 column to
    ``user_factors``; fold-in keeps that convention.
    """

    name = "bpr"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "factors": 64,
            "learning_rate": 0.01,
            "regularization": 0.01,
            "iterations": 100,
            "random_state": 42,
            "use_gpu": False,
        }

    def _make_model(self, use_gpu: bool) -> RecommenderBase:
        import implicit.bpr

        return implicit.bpr.BayesianPersonalizedRanking(
            factors=int(self.params["factors"]),
            learning_rate=float(self.params["learning_rate"]),
            regularization=float(self.params["regularization"]),
            iterations=int(self.params["iterations"]),
            random_state=self.params["random_state"],
            use_gpu=use_gpu,
        )

    def _taste_factors(self) -> np.ndarray:
        return self.item_factors[:, :-1]

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Ridge fit of x so that [x, 1] . y_i ~= 1 on the user's items (bias column kept at 1).

        BPR has no closed-form user step; a least-squares fit to "liked" on the user's items
        (bias included, as in scoring) points x at the taste of those items. The ridge strength is
        the mean squared norm of the item taste vectors, not ``regularization``: that one is a
        per-step SGD penalty on another scale, and on held-out tests this scale-free choice beat
        both weaker ridges (noisy, overfit to 1-3 items) and stronger ones (bias only).
        """
        v = self.item_factors[:, :-1].astype(np.float64)
        bias = self.item_factors[:, -1].astype(np.float64)
        ridge = float(np.mean(np.einsum("ij,ij->i", v, v))) if v.size else 1.0
        ridge = max(ridge, 1e-6)
        out = np.zeros((user_items.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        for row in range(user_items.shape[0]):
            lo, hi = user_items.indptr[row], user_items.indptr[row + 1]
            idx = user_items.indices[lo:hi][user_items.data[lo:hi] > 0]
            if idx.size == 0:
                continue  # zero scores: the caller falls back to popularity
            vi = v[idx]
            a = vi.T @ vi + ridge * np.eye(v.shape[1])
            b = vi.T @ (1.0 - bias[idx])
            out[row, :-1] = np.linalg.solve(a, b)
            out[row, -1] = 1.0
        return out
