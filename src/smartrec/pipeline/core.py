"""A trained multi-stage pipeline: retrievers -> features -> ranker (or score fusion).

Everything works on the model's item axis (internal indices); items added to the catalogue after
training get indices past ``n_items`` at serving time and are reached through content retrieval
only (their model scores are NaN, which LightGBM treats as missing).

Each ``[[retrievers]]`` block of the spec is an instance of the class its ``kind`` names in the
retriever registry (:mod:`smartrec.pipeline.retrievers`); this module only combines them.
Fitting (the retrievers, the ranker and its leakage-free training lists) is in
:mod:`smartrec.training.pipeline_fit` and :mod:`smartrec.training.ranker`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartrec.domain import Interactions
from smartrec.errors import ModelError
from smartrec.models import Recommender
from smartrec.pipeline.features import MISSING_Z, ItemColumns, build_features, feature_names
from smartrec.pipeline.kernels import prune_rows
from smartrec.pipeline.query import (
    COLD_EVENTS,
    Candidates,
    RecentItems,
    UserQuery,
    query_from_matrix,
)
from smartrec.pipeline.retrievers import Retriever, retriever_class
from smartrec.pipeline.retrievers.neighbours import PRUNED_ROW
from smartrec.pipeline.spec import PipelineSpec
from smartrec.pipeline.stats import ItemStats

__all__ = [
    "COLD_EVENTS",
    "MISSING_Z",
    "PIPELINE_FORMAT",
    "PRUNED_ROW",
    "Candidates",
    "ItemStats",
    "RecentItems",
    "TrainedPipeline",
    "UserQuery",
    "prune_rows",
    "query_from_matrix",
    "recommend_users",
]

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1


@dataclass
class TrainedPipeline:
    spec: PipelineSpec
    models: dict[str, Recommender]  # retriever name -> fitted model (model-backed kinds)
    stats: ItemStats
    n_items: int
    content: Any = None  # ContentIndex aligned with the item axis (then extended)
    ann: dict[str, Any] = field(default_factory=dict)  # retriever name -> VectorIndex
    ranker: Any = None  # lightgbm.Booster, None = fusion
    info: dict[str, Any] = field(default_factory=dict)
    #: Retriever name -> that retriever's own fitted state (e.g. the co-visitation matrix).
    extras: dict[str, Any] = field(default_factory=dict)
    #: (the spec they were built for, the retriever instances): rebuilt when the spec changes.
    _retrievers: tuple[PipelineSpec, list[Retriever]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _columns: ItemColumns | None = field(default=None, init=False, repr=False, compare=False)
    #: Held while the columns are rebuilt or the statistics swapped (:meth:`use_stats`).
    _stats_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    # ----------------------------------------------------------------- components
    @property
    def retrievers(self) -> list[Retriever]:
        """One :class:`Retriever` per spec block, in spec order (the candidates' columns)."""
        held = self._retrievers
        if held is None or held[0] is not self.spec:
            built = [retriever_class(r.kind)(r, self) for r in self.spec.retrievers]
            held = (self.spec, built)
            self._retrievers = held
        return held[1]

    def retriever(self, name: str) -> Retriever:
        return next(r for r in self.retrievers if r.name == name)

    def reason_sources(
        self, recent: list[int], page_items: np.ndarray, names: Sequence[str] | None = None
    ) -> dict[str, list[int | None]]:
        """Retriever name -> the history item explaining each page item (None: none), for
        :meth:`Retriever.reason`; only the retrievers in ``names`` when given."""
        wanted = None if names is None else set(names)
        return {
            r.name: r.sources(recent, page_items)
            for r in self.retrievers
            if wanted is None or r.name in wanted
        }

    @property
    def item_columns(self) -> ItemColumns:
        columns = self._columns
        if columns is None or columns.stats is not self.stats:
            with self._stats_lock:  # one build, never one from statistics being replaced
                columns = self._columns
                if columns is None or columns.stats is not self.stats:
                    columns = ItemColumns.build(self.stats)
                    self._columns = columns
        return columns

    @property
    def feature_names(self) -> list[str]:
        return feature_names([r.name for r in self.spec.retrievers], list(self.stats.window_counts))

    @property
    def uses_ranker(self) -> bool:
        return self.ranker is not None

    def use_stats(self, stats: ItemStats) -> None:
        """Serve with newer item statistics (trending counts of the live log): the feature
        columns are built first and the retrievers' orders right after, so that requests do
        not pay for them; a request in flight keeps the statistics it read."""
        columns = ItemColumns.build(stats)
        with self._stats_lock:
            self.stats = stats
            self._columns = columns
        for r in self.retrievers:
            r.warm()

    def warm(self) -> None:
        """Build the per-model serving structures now, not on the first request."""
        for r in self.retrievers:
            r.warm()
        _ = self.item_columns

    # ----------------------------------------------------------------- retrieval
    def retrieve(
        self,
        q: UserQuery,
        allowed: np.ndarray | None = None,
        items: np.ndarray | None = None,
    ) -> Candidates:
        """The union of every retriever's top-n, each candidate scored by every retriever.

        With ``items`` (the caller's own list, ``POST /v1/rankings``) those are the candidates:
        the retrievers still run, so that each item's rank in their lists is a feature.
        """
        blocked = np.asarray(q.exclude, dtype=np.int64)
        if allowed is not None and allowed.all():
            allowed = None  # nothing filtered: spare the ANN index a bitmap
        retrievers = self.retrievers
        found = [r.retrieve(q, blocked, allowed) for r in retrievers]
        tops = [top for top, _ in found]
        forced = items is not None
        if items is not None:
            items = np.asarray(items, dtype=np.int64)
        else:
            everything = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
            items = np.unique(everything)
        limit = self.spec.ranker.candidates
        if not forced and items.size > limit:
            # Keep the best-ranked: a candidate's best rank over the retrievers.
            best = np.full(items.size, np.inf)
            for top in tops:
                pos = np.searchsorted(items, top)
                np.minimum.at(best, pos, np.arange(1, len(top) + 1))
            items = items[np.argsort(best, kind="stable")[:limit]]
        m, n_r = len(items), len(retrievers)
        scores = np.full((m, n_r), np.nan, dtype=np.float32)
        ranks = np.full((m, n_r), np.nan, dtype=np.float32)
        if m:
            # Where each retriever's top items sit among the candidates (the last copy of a
            # repeated caller item, as a dict from item to position would say).
            sorter = np.argsort(items, kind="stable")
            ordered = items[sorter]
            for col, (top, scorer) in enumerate(found):
                scores[:, col] = scorer(items)
                if top.size:
                    pos = np.searchsorted(ordered, top, side="right") - 1
                    hit = (pos >= 0) & (ordered[np.maximum(pos, 0)] == top)
                    ranks[sorter[pos[hit]], col] = np.flatnonzero(hit) + 1
        return Candidates(items, scores, ranks, [r.name for r in retrievers])

    # ----------------------------------------------------------------- scoring
    def features(self, c: Candidates, q: UserQuery) -> np.ndarray:
        return build_features(c, q, self.retrievers, self.item_columns, self.n_items)

    def score(self, c: Candidates, q: UserQuery) -> tuple[np.ndarray, np.ndarray]:
        """(final scores, feature matrix) for the candidates."""
        x = self.features(c, q)
        return self._scores([x])[0], x

    def score_many(self, batch: Sequence[tuple[Candidates, UserQuery]]) -> list[np.ndarray]:
        """Final scores for many users' candidates with one ranker call (its per-call cost
        dominates at a few hundred rows): how feeds are built ahead."""
        return self._scores([self.features(c, q) for c, q in batch])

    def _scores(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        if self.ranker is None:
            col = 3 * len(self.spec.retrievers)  # "fused"
            return [x[:, col] if len(x) else np.zeros(0, dtype=np.float32) for x in xs]
        rows = [x for x in xs if len(x)]
        if not rows:
            return [np.zeros(0, dtype=np.float32) for _ in xs]
        from smartrec.pipeline.forest import predictor_for

        matrix = rows[0] if len(rows) == 1 else np.vstack(rows)
        # The numpy forest evaluator where it covers the model (exact; ~2x faster than
        # LightGBM's predict at 300 rows: benchmarks/ranker_predict.py), else LightGBM's own.
        predicted = predictor_for(self.ranker).predict(matrix)
        sizes = np.cumsum([len(x) for x in xs])[:-1]
        return list(np.split(np.asarray(predicted, dtype=np.float32), sizes))

    def recommend(
        self, q: UserQuery, n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, Candidates]:
        """Top-n (items, scores, the candidates) before business rules."""
        c = self.retrieve(q, allowed)
        s, _ = self.score(c, q)
        order = np.argsort(-s, kind="stable")[:n]
        return c.items[order], s[order], c

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for name, model in self.models.items():
            model.save(path / "models" / name)
        np.savez_compressed(path / "stats.npz", **self.stats.arrays())  # type: ignore[arg-type]
        if self.content is not None:
            self.content.save(path / "content")
        for name, index in self.ann.items():
            index.save(path / "ann" / name)
        for r in self.retrievers:
            r.save(path / "retrievers" / r.name)
        if self.ranker is not None:
            (path / "ranker.txt").write_text(self.ranker.model_to_string())
        meta = {
            "format": PIPELINE_FORMAT,
            "spec": self.spec.model_dump(mode="json"),
            "n_items": self.n_items,
            "feature_names": self.feature_names,
            "info": self.info,
        }
        (path / "pipeline.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainedPipeline:
        path = Path(directory)
        meta = json.loads((path / "pipeline.json").read_text())
        if meta.get("format") != PIPELINE_FORMAT:
            raise ModelError(f"unsupported pipeline format {meta.get('format')!r} in {path}")
        spec = PipelineSpec.model_validate(meta["spec"])
        models = {
            r.name: Recommender.load(path / "models" / r.name)
            for r in spec.retrievers
            if (path / "models" / r.name).exists()
        }
        with np.load(path / "stats.npz", allow_pickle=False) as npz:
            stats = ItemStats.from_arrays({k: npz[k] for k in npz.files})
        content = None
        if (path / "content").exists():
            from smartrec.pipeline.content import ContentIndex

            content = ContentIndex.load(path / "content")
        ann: dict[str, Any] = {}
        if (path / "ann").exists():
            from smartrec.pipeline.ann import VectorIndex

            for sub in sorted((path / "ann").iterdir()):
                ann[sub.name] = VectorIndex.load(sub)
        ranker = None
        if (path / "ranker.txt").exists():
            import lightgbm as lgb

            from smartrec.pipeline.forest import predictor_for

            ranker = lgb.Booster(model_str=(path / "ranker.txt").read_text())
            predictor_for(ranker)  # built now, not on the first request
        pipeline = cls(
            spec=spec,
            models=models,
            stats=stats,
            n_items=int(meta["n_items"]),
            content=content,
            ann=ann,
            ranker=ranker,
            info=dict(meta.get("info", {})),
        )
        for r in pipeline.retrievers:
            own = path / "retrievers" / r.name
            if own.exists():
                r.load(own)
        return pipeline


def recommend_users(
    pipeline: TrainedPipeline, data: Interactions, users: np.ndarray, k: int
) -> np.ndarray:
    """Top-k (users x k, -1 padded) from the whole pipeline, seen items excluded (offline)."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    for row, u in enumerate(users.tolist()):
        items, _, _ = pipeline.recommend(query_from_matrix(data, u), k)
        items = items[items < data.n_items]
        out[row, : len(items)] = items[:k]
    return out
