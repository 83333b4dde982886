"""The one small interface every algorithm implements (after implicit's recommender_base).

Verbs: ``fit`` / ``score`` / ``recommend`` / ``similar_items`` / ``save`` / ``load``. Everything is
batch-first and works on internal indices; the id maps live in :class:`Interactions` and in the
model bundle, not here. Models save as ``model.npz`` (arrays) + ``model.json`` (params, meta):
never pickle, so a model file cannot run code when loaded.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.errors import ModelError, NotFittedError

MODEL_NPZ = "model.npz"
MODEL_JSON = "model.json"


class Recommender(ABC):
    """Base class. Subclasses implement ``_fit``, ``_score`` and the array state hooks."""

    #: Registry name, e.g. ``"ease"``.
    name: ClassVar[str] = ""
    #: Whether ``similar_items`` is meaningful for this model.
    supports_similar: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        defaults = self.default_params()
        unknown = set(params) - set(defaults)
        if unknown:
            raise ModelError(
                f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(defaults)}"
            )
        self.params: dict[str, Any] = {
            **defaults,
            **{k: _coerce(self.name, k, defaults[k], v) for k, v in params.items()},
        }
        self.n_users = 0
        self.n_items = 0
        self.fitted = False

    # ----------------------------------------------------------------- to implement
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {}

    @abstractmethod
    def _fit(self, data: Interactions) -> None: ...

    @abstractmethod
    def _score(self, user_items: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores, shape (batch, n_items). ``users`` holds -1 for unknown users."""

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """Dense float32 item-item scores, shape (len(items), n_items)."""
        raise ModelError(f"{self.name} does not support similar items")

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """How much each source item lifts each target's score (len(sources) x len(targets)).

        Explanations ("because you watched X") need only these few pairs; models override this
        to avoid materialising full item rows on large catalogues.
        """
        self._check()
        return np.asarray(self._similar_scores(np.asarray(sources)), dtype=np.float32)[:, targets]

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Arrays to save in the npz file."""

    @abstractmethod
    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...

    # ----------------------------------------------------------------- public verbs
    def fit(self, data: Interactions) -> Self:
        if data.n_users == 0 or data.n_items == 0:
            raise ModelError(f"{self.name}: cannot fit on empty data")
        self.n_users = data.n_users
        self.n_items = data.n_items
        self._fit(data)
        self.fitted = True
        return self

    def _check(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{self.name} is not fitted")

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Scores for a batch of users given their interaction rows (batch x n_items)."""
        self._check()
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        if user_items.shape[1] != self.n_items:
            raise ModelError(
                f"user_items has {user_items.shape[1]} columns, model has {self.n_items} items"
            )
        if users is None:
            users = np.full(user_items.shape[0], -1, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        users = np.where(users >= self.n_users, -1, users)
        return np.asarray(self._score(user_items, users), dtype=np.float32)

    def recommend(
        self,
        user_items: sp.csr_matrix,
        n: int,
        users: np.ndarray | None = None,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores per row, best first.

        ``exclude`` (batch x n_items, nonzero = excluded) removes seen items; ``allowed`` is an
        optional boolean mask over items (category filters, availability). Rows with fewer than
        ``n`` eligible items are padded with index -1 and score -inf.
        """
        scores = self.score(user_items, users)
        return top_n(scores, n, exclude=exclude, allowed=allowed)

    def similar_items(
        self, items: np.ndarray, n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items most similar to each of ``items`` (the item itself excluded)."""
        self._check()
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(self._similar_scores(items), dtype=np.float32).copy()
        scores[np.arange(len(items)), items] = -np.inf
        return top_n(scores, n, allowed=allowed)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        self._check()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = self._arrays()  # Any: numpy's stub types **kwds as bool
        np.savez_compressed(path / MODEL_NPZ, **arrays)
        meta = {
            "algorithm": self.name,
            "params": self.params,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "format": 1,
        }
        (path / MODEL_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Load any saved model; dispatches on the algorithm named in ``model.json``."""
        from smartrec.models import get_algorithm

        path = Path(directory)
        try:
            meta = json.loads((path / MODEL_JSON).read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"no {MODEL_JSON} in {path}") from exc
        klass = get_algorithm(meta["algorithm"])
        if cls is not Recommender and klass is not cls:
            raise ModelError(f"{path} holds a {meta['algorithm']} model, not {cls.name}")
        model = klass(**meta["params"])
        model.n_users = int(meta["n_users"])
        model.n_items = int(meta["n_items"])
        with np.load(path / MODEL_NPZ, allow_pickle=False) as npz:
            model._set_arrays({k: npz[k] for k in npz.files})
        model.fitted = True
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _coerce(model: str, key: str, default: Any, value: Any) -> Any:
    """Params from env vars or MLflow arrive as strings: give them the default's type."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ModelError(
            f"{model}: parameter {key}={value!r} is not a valid {type(default).__name__}"
        ) from None
    return value


def top_n(
    scores: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n with masking; argpartition keeps it O(items) per row."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if scores.ndim != 2:
        raise ValueError("scores must be 2-D")
    batch, n_items = scores.shape
    if exclude is not None:
        ex = sp.coo_matrix(exclude)
        scores[ex.row, ex.col] = -np.inf
    if allowed is not None:
        scores[:, ~np.asarray(allowed, dtype=bool)] = -np.inf
    n = max(0, min(int(n), n_items))
    if n == 0:
        return np.zeros((batch, 0), dtype=np.int64), np.zeros((batch, 0), dtype=np.float32)
    if n < n_items:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(n_items), (batch, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1)
    ids[~np.isfinite(top)] = -1
    return ids, top
