"""Score a LightGBM model fast: the same numbers as ``Booster.predict``, in a fraction of the time.

Why: the ranker is called once per request on a few hundred candidate rows, and LightGBM's own
``predict`` walks every (row, tree) pair in C++ behind a per-call setup cost: ~3.5 ms for 300
rows on the default ranker (300 trees of 15 leaves), the largest stage of a request without a
feed. ``benchmarks/ranker_predict.py`` measures the alternatives on the real ranker.

:class:`ForestPredictor` is a pure-numpy QuickScorer (Lucchese et al., SIGIR 2015): each
internal node is a bit mask of the leaves (left to right) that stay reachable when its test is
false; a row's exit leaf in a tree is the lowest bit left after AND-ing the masks of its false
nodes. The false nodes of one feature are a prefix of that feature's sorted thresholds, so their
AND is a table row picked by one ``searchsorted`` per feature: a prediction is a gather of
(features x trees) masks per row, an AND-reduce, the lowest bit and a gather of leaf values,
with no Python loop over trees or rows. LightGBM's decision rules are followed exactly: values
within ``kZeroThreshold`` of zero are zero, NaN is 0 for missing type None, the default
direction for Zero (on zero) and NaN (on NaN).

Not a library, because the libraries measured no better here (``benchmarks/ranker_predict.py``
on the real ranker, 300 rows, CPU time, a busy 2-core machine): ``treelite`` 4.8 + ``tl2cgen``
1.0 compiled with gcc -O3 are exact but only ~1.5x faster than LightGBM (this evaluator 1.9-2.2x
in CPU time), and compiling takes 8-17 s at load and needs a compiler; ``lleaves`` does not
install beside this project's llvmlite; ``hummingbird-ml`` needs torch.

Models this evaluator does not cover (categorical splits, linear trees, several classes, random
forest averaging, objectives other than identity or sigmoid outputs, more than 64 leaves, huge
tables) fall back to LightGBM's ``predict``: :func:`ranker_predictor` never refuses a booster.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "PREDICTOR_ENV",
    "ForestPredictor",
    "HybridPredictor",
    "LightGBMPredictor",
    "Predictor",
    "UnsupportedModel",
    "predictor_for",
    "ranker_predictor",
]

log = logging.getLogger(__name__)

#: "auto" (default: the numpy evaluator when it covers the model) or "lightgbm" (always
#: LightGBM's own predict, e.g. to compare or to rule this module out).
PREDICTOR_ENV = "SMARTREC_RANKER_PREDICTOR"

#: LightGBM's kZeroThreshold (a float32 1e-35): dense inputs within it are zero.
_ZERO = float(np.float32(1e-35))
#: Beyond this the (thresholds x trees) mask tables are not worth their memory.
_MAX_TABLE_BYTES = 256 * 2**20
#: Rows per block: keeps the (rows x features x trees) gather in cache.
_BLOCK_ROWS = 512
#: Below this many rows LightGBM's own predict is the faster (benchmarks/ranker_predict.py:
#: 0.14 vs 0.36 ms for 1 row, even at 30 rows).
SMALL_ROWS = 24


class UnsupportedModel(ValueError):
    """The model uses something :class:`ForestPredictor` does not evaluate."""


class Predictor(Protocol):
    def predict(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LightGBMPredictor:
    """LightGBM's own predict, one thread (its pool costs more than it saves at this size)."""

    booster: Any  # lightgbm.Booster

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if "left_child" in n:
            stack.extend((n["right_child"], n["left_child"]))


def _transform(objective: str) -> float | None:
    """None: raw scores are the output; a float: the sigmoid's scale (binary objectives)."""
    name, *args = objective.split()
    if name in {"lambdarank", "rank_xendcg", "regression", "regression_l1", "huber", "fair"}:
        return None
    if name == "binary":
        for arg in args:
            if arg.startswith("sigmoid:"):
                return float(arg.split(":", 1)[1])
        return 1.0
    raise UnsupportedModel(f"objective {objective!r} (its output transform is not covered)")


class ForestPredictor:
    """LightGBM's ``predict`` (default output, all of ``best_iteration``'s trees) in numpy."""

    def __init__(self, model: dict[str, Any]) -> None:
        if model.get("num_class", 1) != 1 or model.get("num_tree_per_iteration", 1) != 1:
            raise UnsupportedModel("several classes")
        if model.get("average_output"):
            raise UnsupportedModel("random forest averaging")
        self._sigmoid = _transform(str(model.get("objective", "")))
        self.n_features = int(model["max_feature_idx"]) + 1
        trees = [t["tree_structure"] for t in model["tree_info"]]
        self.n_trees = len(trees)
        if not trees:
            raise UnsupportedModel("no trees")
        leaves_per_tree = [int(t["num_leaves"]) for t in model["tree_info"]]
        width = max(leaves_per_tree)
        if width > 64:
            raise UnsupportedModel(f"{width} leaves in a tree (64 at most)")
        bytes_ = next(b for b in (1, 2, 4, 8) if 8 * b >= width)
        self._dtype: np.dtype[np.unsignedinteger[Any]] = np.dtype(f"u{bytes_}")
        everything = np.array(2 ** (8 * bytes_) - 1, dtype=self._dtype)
        self._everything = everything
        self._values = np.zeros((self.n_trees, width), dtype=np.float64)
        # Per node: (feature, threshold, tree, false mask, missing type, default left).
        nodes: list[tuple[int, float, int, int, str, bool]] = []
        for t, root in enumerate(trees):
            order: dict[int, int] = {}  # id(leaf dict) -> its left-to-right position
            self._leaf_order(root, order, t)
            for n in _walk(root):
                if "leaf_coeff" in n or "leaf_features" in n:
                    raise UnsupportedModel("linear trees")
                if "split_feature" not in n:
                    continue
                if n.get("decision_type", "<=") != "<=":
                    raise UnsupportedModel("categorical splits")
                left = [order[id(x)] for x in _walk(n["left_child"]) if "split_feature" not in x]
                mask = int(everything)
                for pos in left:
                    mask &= ~(1 << pos)
                nodes.append(
                    (
                        int(n["split_feature"]),
                        float(n["threshold"]),
                        t,
                        mask,
                        str(n.get("missing_type", "None")),
                        bool(n.get("default_left", True)),
                    )
                )
        self._build_tables(nodes, everything)
        self._tree_offsets = np.arange(self.n_trees, dtype=np.intp) * width

    def _leaf_order(self, root: dict[str, Any], order: dict[int, int], tree: int) -> None:
        pos = 0
        stack = [root]
        while stack:  # in-order over leaves: pop left first
            n = stack.pop()
            if "split_feature" in n:
                stack.extend((n["right_child"], n["left_child"]))
                continue
            order[id(n)] = pos
            self._values[tree, pos] = float(n["leaf_value"])
            pos += 1

    def _build_tables(
        self, nodes: list[tuple[int, float, int, int, str, bool]], everything: np.ndarray
    ) -> None:
        """One table per (feature, zero-missing or not): row k = the AND of the masks of the
        nodes whose threshold is below the k-th smallest distinct one (the nodes a value above
        them sends right), then a row for NaN and one for zero."""
        groups: dict[tuple[int, bool], list[tuple[float, int, int, str, bool]]] = {}
        for f, thr, t, mask, missing, default_left in nodes:
            groups.setdefault((f, missing == "Zero"), []).append(
                (thr, t, mask, missing, default_left)
            )
        n_rows = sum(len({g[0] for g in members}) + 3 for members in groups.values())
        if n_rows * self.n_trees * self._dtype.itemsize > _MAX_TABLE_BYTES:
            raise UnsupportedModel("mask tables too large")
        table = np.full((n_rows, self.n_trees), everything, dtype=self._dtype)
        self._groups: list[tuple[int, bool, int, np.ndarray]] = []
        row = 0
        for (f, zero), members in sorted(groups.items()):
            uniq = np.unique(np.array([m[0] for m in members], dtype=np.float64))
            k = len(uniq)
            block = table[row : row + k + 3]
            for thr, t, mask, missing, default_left in members:
                m = self._dtype.type(mask)
                rank = int(np.searchsorted(uniq, thr, side="left"))
                block[rank + 1 : k + 1, t] &= m  # values above thr: false
                # NaN: treated as 0 by None, the default direction by Zero and NaN.
                nan_right = (thr < 0.0) if missing == "None" else not default_left
                if nan_right:
                    block[k + 1, t] &= m
                # Zero (only read for Zero-missing nodes): the default direction.
                if not default_left:
                    block[k + 2, t] &= m
            self._groups.append((f, zero, row, uniq))
            row += k + 3
        self._table = table
        self._features = np.array([g[0] for g in self._groups], dtype=np.intp)

    @classmethod
    def from_booster(cls, booster: Any) -> ForestPredictor:
        """From a ``lightgbm.Booster`` (its JSON dump: the trees ``predict`` uses by default)."""
        return cls(booster.dump_model())

    def _leaves(self, x: np.ndarray) -> np.ndarray:
        """(rows, trees) flat indices into the leaf values."""
        nan = np.isnan(x)
        zero = x == 0.0
        bits = np.full((len(x), self.n_trees), self._everything, dtype=self._dtype)
        part = np.empty_like(bits)
        for j, (f, zero_missing, row, uniq) in enumerate(self._groups):
            k = np.searchsorted(uniq, x[:, f], side="left")
            k += row
            k[nan[:, f]] = row + len(uniq) + 1
            if zero_missing:
                k[zero[:, f]] = row + len(uniq) + 2
            np.take(self._table, k, axis=0, out=part if j else bits)
            if j:
                bits &= part
        # The lowest set bit's position: the count of the ones below it.
        below = np.bitwise_and(bits - self._dtype.type(1), ~bits, out=bits)
        if hasattr(np, "bitwise_count"):  # numpy >= 2
            return np.bitwise_count(below) + self._tree_offsets
        _, exp = np.frexp(below.astype(np.float64) + 1.0)  # 2**count
        return (exp - 1) + self._tree_offsets

    def predict_raw(self, matrix: np.ndarray) -> np.ndarray:
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.n_features:
            raise ValueError(f"expected (rows, {self.n_features}) features, got {x.shape}")
        x = np.where(np.abs(x) <= _ZERO, 0.0, x)  # as LightGBM reads a dense row
        out = np.empty(len(x), dtype=np.float64)
        values = self._values.ravel()
        for lo in range(0, len(x), _BLOCK_ROWS):
            leaves = self._leaves(x[lo : lo + _BLOCK_ROWS])
            out[lo : lo + _BLOCK_ROWS] = values[leaves].sum(axis=1)
        return out

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        raw = self.predict_raw(matrix)
        if self._sigmoid is None:
            return raw
        return 1.0 / (1.0 + np.exp(-self._sigmoid * raw))


@dataclass(frozen=True)
class HybridPredictor:
    """The numpy evaluator, but LightGBM below ``min_rows`` rows: its per-call cost is the
    lower one there (the numpy one is a few numpy calls per feature, whatever the rows)."""

    forest: ForestPredictor
    booster: Any  # lightgbm.Booster
    min_rows: int = SMALL_ROWS

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) < self.min_rows:
            return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)
        return self.forest.predict(matrix)


def ranker_predictor(booster: Any, kind: str | None = None) -> Predictor:
    """The fastest exact predictor for ``booster``: :class:`ForestPredictor` where it covers
    the model, LightGBM's own otherwise (or where ``kind`` / ``$SMARTREC_RANKER_PREDICTOR`` is
    "lightgbm"; "numpy" refuses a model it does not cover instead of falling back)."""
    kind = kind or os.environ.get(PREDICTOR_ENV) or "auto"
    if kind not in {"auto", "lightgbm", "numpy"}:
        raise ValueError(f"{PREDICTOR_ENV}={kind!r}: expected auto, numpy or lightgbm")
    if kind == "lightgbm":
        return LightGBMPredictor(booster)
    try:
        forest = ForestPredictor.from_booster(booster)
    except UnsupportedModel as exc:
        if kind == "numpy":
            raise
        log.info("ranker: LightGBM's predict (%s)", exc)
        return LightGBMPredictor(booster)
    return forest if kind == "numpy" else HybridPredictor(forest, booster)


_built: weakref.WeakKeyDictionary[Any, Predictor] = weakref.WeakKeyDictionary()


def predictor_for(booster: Any) -> Predictor:
    """:func:`ranker_predictor` built once per booster (a fitted booster is never changed;
    building takes a few hundred ms for 300 trees, so a loaded pipeline builds it at load)."""
    predictor = _built.get(booster)
    if predictor is None:
        predictor = _built[booster] = ranker_predictor(booster)
    return predictor
