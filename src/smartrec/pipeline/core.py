"""A trained multi-stage pipeline: retrievers -> features -> ranker (or score fusion).

Everything works on the model's item axis (internal indices); items added to the catalogue after
training get indices past ``n_items`` at serving time and are reached through content retrieval
only (their model scores are NaN, which LightGBM treats as missing).

Training the ranker without leakage: the retrievers and every feature are computed from the
*past* events only, and the labels are the items each user touched in the *later* window (the
newest ``label_fraction`` of events). :func:`ranker_dataset` takes the two parts as separate
objects, so the features cannot see the labels' window; a test swaps the later window for random
events and checks that the features do not move.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from smartrec.domain import CatalogItem, Interactions
from smartrec.errors import ModelError
from smartrec.models import Recommender, create
from smartrec.pipeline.spec import PipelineSpec, RetrieverConfig, window_seconds

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1
#: Items with fewer events than this are "cold": the content retriever's scope.
COLD_EVENTS = 5
#: Standardised score given to a candidate a retriever cannot score (fusion only).
MISSING_Z = -3.0
Progress = Callable[[str], None]


# --------------------------------------------------------------------------- statistics
@dataclass
class ItemStats:
    """Per-item numbers the features need, aligned with the model's item axis."""

    counts: np.ndarray  # distinct users with a positive event
    window_counts: dict[str, np.ndarray]  # window -> events in the window before reference
    first_seen: np.ndarray  # epoch seconds of the first event (NaN: never)
    published: np.ndarray  # epoch seconds (NaN: unknown)
    categories: sp.csr_matrix  # items x categories, one-hot
    category_names: list[str]
    reference_time: float

    @classmethod
    def build(
        cls, data: Interactions, windows: Sequence[str], published: np.ndarray | None = None
    ) -> ItemStats:
        n = data.n_items
        counts = np.asarray(data.binarized().sum(axis=0)).ravel().astype(np.float32)
        ref = data.reference_time
        positive = data.event_weights > 0
        window_counts = {}
        for w in windows:
            m = positive & (data.event_times >= ref - window_seconds(w))
            window_counts[w] = np.bincount(data.event_items[m], minlength=n).astype(np.float32)
        first = np.full(n, np.inf)
        np.minimum.at(first, data.event_items, data.event_times)
        first[~np.isfinite(first)] = np.nan
        cats = data.item_categories or [[] for _ in range(n)]
        names = sorted({c for cs in cats for c in cs})
        index = {c: j for j, c in enumerate(names)}
        rows = [i for i, cs in enumerate(cats) for _ in cs]
        cols = [index[c] for cs in cats for c in cs]
        onehot = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(names))
        )
        onehot.data[:] = 1.0
        pub = np.full(n, np.nan) if published is None else np.asarray(published, dtype=np.float64)
        return cls(counts, window_counts, first, pub, onehot, names, ref)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "counts": self.counts,
            "first_seen": self.first_seen,
            "published": self.published,
            "cat_data": self.categories.data,
            "cat_indices": self.categories.indices,
            "cat_indptr": self.categories.indptr,
            "cat_names": np.asarray(self.category_names, dtype=str),
            "reference_time": np.asarray(self.reference_time),
        }
        for w, arr in self.window_counts.items():
            out[f"window_{w}"] = arr
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ItemStats:
        n = len(a["counts"])
        names = [str(x) for x in a["cat_names"].tolist()]
        cats = sp.csr_matrix(
            (a["cat_data"], a["cat_indices"], a["cat_indptr"]), shape=(n, len(names))
        )
        windows = {k[len("window_") :]: v for k, v in a.items() if k.startswith("window_")}
        return cls(
            a["counts"],
            windows,
            a["first_seen"],
            a["published"],
            cats,
            names,
            float(a["reference_time"]),
        )


# --------------------------------------------------------------------------- requests
@dataclass
class UserQuery:
    """One user's request, on the model's item axis."""

    conf: sp.csr_matrix  # 1 x n_items confidence (positive events)
    user: int  # model user index, -1 when unknown
    recent: list[int]  # known history items, newest first
    exclude: np.ndarray  # item indices never to return (seen, negative feedback)
    now: float | None = None  # epoch seconds for item age (None: the training reference)


@dataclass
class Candidates:
    items: np.ndarray  # (m,) item indices (may exceed n_items for items newer than the model)
    scores: np.ndarray  # (m, R) raw retriever scores, NaN when a retriever cannot score it
    ranks: np.ndarray  # (m, R) 1-based rank in the retriever's own list, NaN when absent
    names: list[str]  # retriever names, the R columns

    def __len__(self) -> int:
        return len(self.items)

    def found_by(self, j: int) -> list[int]:
        """Columns of the retrievers that found candidate ``j`` (NaN rank: not found)."""
        return [b for b, r in enumerate(self.ranks[j].tolist()) if r == r]


def _z(values: np.ndarray) -> np.ndarray:
    """Standardise over the finite values; missing ones get MISSING_Z."""
    out = np.full(values.shape, MISSING_Z, dtype=np.float32)
    ok = np.isfinite(values)
    if ok.sum() >= 1:
        v = values[ok]
        sd = float(v.std())
        out[ok] = (v - float(v.mean())) / (sd if sd > 1e-9 else 1.0)
    return out


def _top(scores: np.ndarray, n: int, blocked: np.ndarray | None) -> np.ndarray:
    """Indices of the n best finite scores, best first (``blocked`` indices skipped)."""
    s = np.asarray(scores, dtype=np.float32)
    if blocked is not None and blocked.size:
        s = s.copy()
        s[blocked[blocked < len(s)]] = -np.inf
    n = min(n, len(s))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s))
    part = part[np.isfinite(s[part])]
    return part[np.argsort(-s[part], kind="stable")].astype(np.int64)


# --------------------------------------------------------------------------- the pipeline
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

    # ----------------------------------------------------------------- features
    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for r in self.spec.retrievers:
            names += [f"{r.name}.score", f"{r.name}.z", f"{r.name}.rank"]
        names += ["fused", "pop.all"]
        names += [f"pop.{w}" for w in self.stats.window_counts]
        names += ["item.age_days", "user.activity", "user.cat_max", "user.cat_mean", "recent.sim"]
        return names

    @property
    def uses_ranker(self) -> bool:
        return self.ranker is not None

    # ----------------------------------------------------------------- retrieval
    def _retrieve_one(
        self,
        r: RetrieverConfig,
        q: UserQuery,
        blocked: np.ndarray,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """(the retriever's top-n, a function scoring any candidate indices)."""
        n_model = self.n_items
        if r.kind == "embedding":
            model = self.models[r.name]
            if q.user < 0 and q.conf.nnz == 0:
                return np.zeros(0, dtype=np.int64), _nan_scorer
            vec = model.user_vectors(q.conf, np.array([q.user]))[0]  # type: ignore[attr-defined]
            factors = model.item_factors  # type: ignore[attr-defined]
            index = self.ann.get(r.name)
            mask = None if allowed is None else allowed[:n_model]
            if index is not None:
                ids, _ = index.search(vec, r.n, exclude=blocked[blocked < n_model], allowed=mask)
                top = ids[ids >= 0].astype(np.int64)
            else:
                s = factors @ vec
                if mask is not None:
                    s = np.where(mask, s, -np.inf)
                top = _top(s, r.n, blocked)

            def score(idx: np.ndarray) -> np.ndarray:
                out = np.full(len(idx), np.nan, dtype=np.float32)
                ok = idx < n_model
                out[ok] = factors[idx[ok]] @ vec
                return out

            return top, score
        if r.kind == "neighbours":
            model = self.models[r.name]
            recent = q.recent[: r.recent]
            if not recent:
                return np.zeros(0, dtype=np.int64), _nan_scorer
            row = _restrict(q.conf, recent)
            if row.nnz == 0:
                return np.zeros(0, dtype=np.int64), _nan_scorer
            similarity = getattr(model, "similarity", None)
            if sp.issparse(similarity):
                pruned, transposed = self._knn_views(r.name, similarity)
                return _sparse_neighbours(model, pruned, transposed, row, r.n, blocked, allowed)
            full = model.score(row, np.array([-1]))[0]
            masked = full if allowed is None else np.where(allowed[:n_model], full, -np.inf)
            top = _top(np.where(masked > 0, masked, -np.inf), r.n, blocked)
            return top, _array_scorer(full)
        if r.kind == "popular":
            order = self._popular_order(r.windows[0])
            top = _first_allowed(order, r.n, blocked, allowed)
            return top, _array_scorer(self._log_counts(r.windows[0]))
        # content
        index = self.content
        if index is None or not q.recent:
            return np.zeros(0, dtype=np.int64), _nan_scorer
        query = _content_query(index, q.recent[: r.recent])
        if query is None:
            return np.zeros(0, dtype=np.int64), _nan_scorer
        matrix = index.matrix
        total = matrix.shape[0]
        if r.scope == "cold":
            scope, postings = self._cold_scope(index, r.scope_limit)
            extra = np.arange(n_model, total)  # items newer than the model: few
            if postings is not None:
                scope, s_scope = _inverted_scores(postings, scope, query)
            else:
                s_scope = _dot(matrix[scope], None, query) if scope.size else np.zeros(0)
            if extra.size:
                scope = np.concatenate([scope, extra])
                s_scope = np.concatenate([s_scope, _dot(matrix, extra, query)])
        else:
            scope = np.arange(total)
            s_scope = _dot(matrix, None, query)
        ok = s_scope > 0
        if allowed is not None:
            # Items newer than the mask (added while this request ran) count as not allowed.
            inside = scope < len(allowed)
            ok &= inside & allowed[np.where(inside, scope, 0)]
        scope, s_scope = scope[ok], s_scope[ok]
        order = _top(s_scope, r.n + len(blocked), None)
        top = scope[order]
        if blocked.size:
            top = top[~np.isin(top, blocked)]
        top = top[: r.n]

        def content_score(idx: np.ndarray) -> np.ndarray:
            out = np.full(len(idx), np.nan, dtype=np.float32)
            ok = idx < total
            out[ok] = _dot(matrix, idx[ok], query)
            return out

        return top, content_score

    def _knn_views(self, name: str, similarity: sp.csr_matrix) -> tuple[Any, Any]:
        """(rows pruned for retrieval, the transpose for exact scores), built once per model."""
        cache = self.__dict__.setdefault("_cache_knn", {})
        views = cache.get(name)
        if views is None or views[0] is not similarity:
            views = (similarity, prune_rows(similarity, PRUNED_ROW), sp.csr_matrix(similarity.T))
            cache[name] = views
        return views[1], views[2]

    def warm(self) -> None:
        """Build the per-model serving structures now, not on the first request."""
        for r in self.spec.retrievers:
            similarity = getattr(self.models.get(r.name), "similarity", None)
            if r.kind == "neighbours" and sp.issparse(similarity):
                self._knn_views(r.name, similarity)
        for r in self.spec.retrievers:
            if r.kind == "content" and r.scope == "cold" and self.content is not None:
                self._cold_scope(self.content, r.scope_limit)

    def _cold_scope(self, index: Any, limit: int) -> tuple[np.ndarray, Any]:
        """The newest ``limit`` model items with few events, and an inverted index (terms x
        those items) of their content rows when the vectors are sparse; computed once per
        content index."""
        cache = self.__dict__.get("_cache_cold")
        if cache is None or cache[0] is not index.matrix or cache[3] != limit:
            scope = np.flatnonzero(self.stats.counts < COLD_EVENTS)
            scope = scope[scope < index.matrix.shape[0]]
            if len(scope) > limit:
                born = np.where(
                    np.isnan(self.stats.published[scope]),
                    self.stats.first_seen[scope],
                    self.stats.published[scope],
                )
                born = np.nan_to_num(born, nan=-np.inf)
                newest = np.lexsort((scope, born))[-limit:]  # ties: later on the axis = newer
                scope = np.sort(scope[newest])
            postings = None
            if sp.issparse(index.matrix):
                postings = sp.csr_matrix(index.matrix[scope].T)  # row t: items with term t
            cache = (index.matrix, scope, postings, limit)
            self.__dict__["_cache_cold"] = cache
        return cache[1], cache[2]

    def _log_counts(self, window: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_cache_log_counts", {})
        if window not in cache:
            cache[window] = np.log1p(self.stats.window_counts.get(window, self.stats.counts))
        out: np.ndarray = cache[window]
        return out

    def _popular_order(self, window: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_cache_orders", {})
        if window not in cache:
            counts = self.stats.window_counts.get(window, self.stats.counts)
            # Ties (e.g. zero events in the window) broken by all-time popularity.
            cache[window] = np.lexsort((-self.stats.counts, -counts))
        order: np.ndarray = cache[window]
        return order

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
        tops: list[np.ndarray] = []
        scorers: list[Callable[[np.ndarray], np.ndarray]] = []
        for r in self.spec.retrievers:
            top, scorer = self._retrieve_one(r, q, blocked, allowed)
            tops.append(top)
            scorers.append(scorer)
        forced = items is not None
        if items is not None:
            items = np.asarray(items, dtype=np.int64)
        else:
            everything = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
            items = np.unique(everything)
        if not forced and items.size > self.spec.ranker.candidates:
            # Keep the best-ranked: a candidate's best rank over the retrievers.
            best = np.full(items.size, np.inf)
            for top in tops:
                pos = np.searchsorted(items, top)
                np.minimum.at(best, pos, np.arange(1, len(top) + 1))
            items = items[np.argsort(best, kind="stable")[: self.spec.ranker.candidates]]
        m, n_r = len(items), len(self.spec.retrievers)
        scores = np.full((m, n_r), np.nan, dtype=np.float32)
        ranks = np.full((m, n_r), np.nan, dtype=np.float32)
        lookup = {int(i): j for j, i in enumerate(items.tolist())}
        for c, (top, scorer) in enumerate(zip(tops, scorers, strict=True)):
            if m:
                scores[:, c] = scorer(items)
            for rank, i in enumerate(top.tolist(), start=1):
                j = lookup.get(i)
                if j is not None:
                    ranks[j, c] = rank
        return Candidates(items, scores, ranks, [r.name for r in self.spec.retrievers])

    # ----------------------------------------------------------------- scoring
    def features(self, c: Candidates, q: UserQuery) -> np.ndarray:
        m = len(c)
        n_model = self.n_items
        items = c.items
        inside = items < n_model
        idx = np.where(inside, items, 0)
        cols: list[np.ndarray] = []
        fused = np.zeros(m, dtype=np.float32)
        for j, r in enumerate(self.spec.retrievers):
            z = _z(c.scores[:, j])
            fused += r.weight * z
            cols += [c.scores[:, j], z, np.log1p(c.ranks[:, j])]
        cols.append(fused)
        st = self.stats

        def item_col(arr: np.ndarray) -> np.ndarray:
            return np.where(inside, arr[idx], np.nan).astype(np.float32)

        cols.append(np.log1p(item_col(st.counts)))
        cols += [np.log1p(item_col(a)) for a in st.window_counts.values()]
        now = q.now if q.now is not None else st.reference_time
        born = np.where(
            np.isnan(item_col(st.published)), item_col(st.first_seen), item_col(st.published)
        )
        cols.append(((now - born) / 86400.0).astype(np.float32))
        n_hist = len(q.recent)
        cols.append(np.full(m, np.log1p(n_hist), dtype=np.float32))
        # User-category affinity: the share of the user's items in each candidate category.
        cat_max = np.full(m, np.nan, dtype=np.float32)
        cat_mean = np.full(m, np.nan, dtype=np.float32)
        if n_hist and st.categories.shape[1]:
            hist = np.asarray(q.recent, dtype=np.int64)
            prof = np.asarray(st.categories[hist].sum(axis=0)).ravel() / n_hist
            cand_cats = st.categories[idx]
            weighted = cand_cats.multiply(prof[None, :]).tocsr()
            ncat = np.diff(cand_cats.indptr)
            sums = np.asarray(weighted.sum(axis=1)).ravel()
            maxes = np.asarray(weighted.max(axis=1).toarray()).ravel()
            has = inside & (ncat > 0)
            cat_max[has] = maxes[has]
            cat_mean[has] = sums[has] / ncat[has]
        cols += [cat_max, cat_mean]
        # Recency of related interactions: how strongly the 5 newest items point at it.
        recent_sim = np.full(m, np.nan, dtype=np.float32)
        neighbours = next((r for r in self.spec.retrievers if r.kind == "neighbours"), None)
        if neighbours is not None and q.recent and inside.any():
            model = self.models[neighbours.name]
            src = np.asarray(q.recent[:5], dtype=np.int64)
            contrib = model.contributions(src, idx[inside])
            recent_sim[inside] = np.asarray(contrib).sum(axis=0)
        cols.append(recent_sim)
        return np.column_stack(cols).astype(np.float32) if m else np.zeros((0, len(cols)))

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
            col = self.feature_names.index("fused")
            return [x[:, col] if len(x) else np.zeros(0, dtype=np.float32) for x in xs]
        rows = [x for x in xs if len(x)]
        if not rows:
            return [np.zeros(0, dtype=np.float32) for _ in xs]
        predicted = self.ranker.predict(np.vstack(rows), num_threads=1)
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

            ranker = lgb.Booster(model_str=(path / "ranker.txt").read_text())
        return cls(
            spec=spec,
            models=models,
            stats=stats,
            n_items=int(meta["n_items"]),
            content=content,
            ann=ann,
            ranker=ranker,
            info=dict(meta.get("info", {})),
        )


# --------------------------------------------------------------------------- helpers
def _nan_scorer(idx: np.ndarray) -> np.ndarray:
    return np.full(len(idx), np.nan, dtype=np.float32)


def _array_scorer(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    n = len(values)

    def score(idx: np.ndarray) -> np.ndarray:
        out = np.full(len(idx), np.nan, dtype=np.float32)
        ok = idx < n
        out[ok] = values[idx[ok]]
        return out

    return score


def _restrict(conf: sp.csr_matrix, items: list[int]) -> sp.csr_matrix:
    """The confidence row limited to the given items."""
    keep = np.isin(conf.indices, np.asarray(items, dtype=conf.indices.dtype))
    return sp.csr_matrix(
        (conf.data[keep], conf.indices[keep], np.array([0, int(keep.sum())])), shape=conf.shape
    )


def _first_allowed(
    order: np.ndarray,
    n: int,
    blocked: np.ndarray,
    allowed: np.ndarray | None,
) -> np.ndarray:
    """The first n items of a popularity order that are allowed and not blocked.

    Looks at a short head of the order first (vectorised), widening it only when too many
    items in it are excluded: the whole order is a million items on a large catalogue.
    """
    head = n + len(blocked) + 64
    while True:
        part = order[:head]
        keep = ~np.isin(part, blocked) if blocked.size else np.ones(len(part), dtype=bool)
        if allowed is not None:
            inside = part < len(allowed)
            keep &= inside & allowed[np.where(inside, part, 0)]
        found = part[keep]
        if len(found) >= n or head >= len(order):
            return found[:n].astype(np.int64)
        head *= 4


#: Retrieval reads at most this many of each history item's strongest neighbours. A popular
#: item is among the top-k of thousands of others, so its row of the item-kNN matrix is long;
#: the candidates' exact scores come from the full matrix all the same (``_exact_scorer``).
PRUNED_ROW = 200


def prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """The ``keep`` largest entries of every row (rows already that short are left whole)."""
    matrix = sp.csr_matrix(matrix)
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or int(lengths.max()) <= keep:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((-matrix.data, rows))  # by row, largest first
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    kept = order[rank < keep]
    kept.sort()  # back to CSR order: by row, then column as stored
    pruned = sp.csr_matrix(
        (matrix.data[kept], matrix.indices[kept], np.r_[0, np.cumsum(np.minimum(lengths, keep))]),
        shape=matrix.shape,
    )
    return pruned


def _sparse_neighbours(
    model: Recommender,
    pruned: sp.csr_matrix,
    transposed: sp.csr_matrix,
    row: sp.csr_matrix,
    n: int,
    blocked: np.ndarray,
    allowed: np.ndarray | None,
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Item-kNN without catalogue-sized work: candidates from the history items' strongest
    neighbours (``pruned`` rows of S), exact scores from S's columns (rows of ``transposed``)."""
    weights = row.data.astype(np.float32)
    if model.params.get("binary", True):
        weights = (weights > 0).astype(np.float32)
    hist = row.indices.astype(np.int64)  # sorted (CSR)
    block = pruned[hist]
    counts = np.diff(block.indptr)
    cols, inverse = np.unique(block.indices, return_inverse=True)
    vals = np.zeros(len(cols), dtype=np.float32)
    np.add.at(vals, inverse, (block.data * np.repeat(weights, counts)).astype(np.float32))
    ok = vals > 0
    if blocked.size:
        ok &= ~np.isin(cols, blocked)
    if allowed is not None:
        ok &= allowed[cols]
    c, v = cols[ok], vals[ok]
    # Re-rank the pruned sums' best by their exact scores.
    pool = c[_top(v, max(2 * n, n + 50), None)].astype(np.int64)
    score = _exact_scorer(transposed, hist, weights)
    exact = score(pool)
    order = np.argsort(-exact, kind="stable")[:n]
    return pool[order][exact[order] > 0], score


def _exact_scorer(
    transposed: sp.csr_matrix, hist: np.ndarray, weights: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """score(j) = sum over history items i of weight_i * S[i, j], read from column j of S."""

    def score(idx: np.ndarray) -> np.ndarray:
        out = np.zeros(len(idx), dtype=np.float32)
        inside = idx < transposed.shape[0]
        if not inside.any() or hist.size == 0:
            return out
        block = transposed[idx[inside]]
        pos = np.minimum(np.searchsorted(hist, block.indices), len(hist) - 1)
        hit = hist[pos] == block.indices
        contrib = np.where(hit, block.data * weights[pos], 0.0)
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        out[inside] = np.bincount(rows, weights=contrib, minlength=block.shape[0])
        return out

    return score


def _content_query(index: Any, recent: list[int]) -> np.ndarray | sp.csr_matrix | None:
    """The L2-normalised mean of the recent items' content vectors (newer items weigh more)."""
    total = index.matrix.shape[0]
    rows = [i for i in recent if i < total]
    if not rows:
        return None
    w = 1.0 / np.sqrt(np.arange(1, len(rows) + 1, dtype=np.float32))
    block = index.matrix[np.asarray(rows)]
    q = w @ block if isinstance(block, np.ndarray) else np.asarray(block.T @ w).ravel()
    norm = float(np.linalg.norm(q))
    if norm == 0.0:
        return None
    return np.asarray(q / norm, dtype=np.float32)


#: The content query keeps its heaviest terms only: rare (high-idf) words decide similarity,
#: and a category token shared by a twentieth of a million-item catalogue would cost more to
#: walk than it tells.
QUERY_TERMS = 32


def _inverted_scores(
    postings: sp.csr_matrix, scope: np.ndarray, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(items, cosine) for the scope items sharing a term with the query's heaviest terms."""
    terms = np.flatnonzero(query)
    if terms.size > QUERY_TERMS:
        terms = terms[np.argpartition(-query[terms], QUERY_TERMS - 1)[:QUERY_TERMS]]
    if terms.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    block = postings[terms]
    counts = np.diff(block.indptr)
    weights = block.data * np.repeat(query[terms], counts)
    # One C pass over the postings (bincount) beats sorting them (np.unique) by far.
    sums = np.bincount(block.indices, weights=weights, minlength=len(scope))
    local = np.flatnonzero(sums)
    return scope[local], sums[local].astype(np.float32)


def _dot(matrix: Any, rows: np.ndarray | None, query: np.ndarray) -> np.ndarray:
    m = matrix if rows is None else matrix[rows]
    return np.asarray(m @ query, dtype=np.float32).ravel()


# --------------------------------------------------------------------------- training
def catalog_rows(items: Sequence[str], catalog: dict[str, CatalogItem]) -> list[CatalogItem]:
    """Catalog rows in item-axis order; items without a row get an empty one."""
    return [catalog.get(i) or CatalogItem(i, None, [], {}, True, True) for i in items]


def published_seconds(items: Sequence[str], catalog: dict[str, CatalogItem]) -> np.ndarray:
    out = np.full(len(items), np.nan)
    for j, i in enumerate(items):
        row = catalog.get(i)
        if row is not None and row.published_at is not None:
            out[j] = row.published_at / 1000.0
    return out


def fit_components(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None = None,
    *,
    build_ann: bool = True,
    content_index: Any = None,
) -> TrainedPipeline:
    """Fit every retriever on ``data`` (no ranker): the serving pipeline, or the 'past' one."""
    catalog = catalog or {}
    items = data.items.to_list()
    models: dict[str, Recommender] = {}
    fitted: dict[tuple[str, str], Recommender] = {}
    for r in spec.retrievers:
        if r.model is None:
            continue
        key = (r.model, json.dumps(r.params, sort_keys=True, default=str))
        if key not in fitted:
            fitted[key] = create(r.model, **r.params).fit(data)
        models[r.name] = fitted[key]
    windows = sorted(
        {w for r in spec.retrievers if r.kind == "popular" for w in r.windows},
        key=window_seconds,
    )
    stats = ItemStats.build(data, windows, published_seconds(items, catalog))
    content = content_index
    if content is None and any(r.kind == "content" for r in spec.retrievers):
        from smartrec.pipeline.content import ContentIndex

        content = ContentIndex.fit(catalog_rows(items, catalog), spec.content)
    ann: dict[str, Any] = {}
    if build_ann:
        from smartrec.pipeline.ann import VectorIndex

        for r in spec.retrievers:
            if r.kind == "embedding" and data.n_items >= spec.ann.exact_below:
                factors = models[r.name].item_factors  # type: ignore[attr-defined]
                ann[r.name] = VectorIndex.build(np.asarray(factors, dtype=np.float32), spec.ann)
    return TrainedPipeline(spec, models, stats, data.n_items, content, ann)


def ranker_dataset(
    past_pipeline: TrainedPipeline,
    past: Interactions,
    later: Interactions,
    max_users: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(features, labels, group sizes, counts) for LambdaRank.

    Features come from ``past_pipeline`` and ``past`` only; ``later`` supplies nothing but the
    labels (the items each user touched afterwards that were new to them).
    """
    later_pos = later.binarized()
    fresh = sp.csr_matrix(later_pos - later_pos.multiply(past.seen))
    fresh.eliminate_zeros()
    has_past = np.diff(past.matrix.indptr) > 0
    users = np.flatnonzero((np.diff(fresh.indptr) > 0) & has_past)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    groups: list[int] = []
    kept_users: list[int] = []
    positives = 0
    for u in users.tolist():
        q = query_from_matrix(past, u)
        c = past_pipeline.retrieve(q)
        if len(c) == 0:
            continue
        x = past_pipeline.features(c, q)
        lo, hi = fresh.indptr[u], fresh.indptr[u + 1]
        y = np.isin(c.items, fresh.indices[lo:hi]).astype(np.int32)
        if y.sum() == 0:
            continue  # LambdaRank learns nothing from a list without a relevant item
        xs.append(x)
        ys.append(y)
        groups.append(len(c))
        kept_users.append(u)
        positives += int(y.sum())
    if not xs:
        width = len(past_pipeline.feature_names)
        return np.zeros((0, width)), np.zeros(0), np.zeros(0, dtype=np.int64), {"users": 0}
    counts: dict[str, Any] = {
        "users": len(groups),
        "rows": int(sum(groups)),
        "positives": positives,
        "user_list": kept_users,
    }
    return np.vstack(xs), np.concatenate(ys), np.asarray(groups), counts


def query_from_matrix(data: Interactions, u: int, exclude_seen: bool = True) -> UserQuery:
    """The query of a known user from an interaction matrix (offline evaluation, training)."""
    conf = data.matrix[u]
    lo, hi = data.seen.indptr[u], data.seen.indptr[u + 1]
    seen = data.seen.indices[lo:hi].astype(np.int64)
    recent = _recent_items(data, u)
    return UserQuery(
        conf=sp.csr_matrix(conf),
        user=u,
        recent=recent,
        exclude=seen if exclude_seen else np.zeros(0, dtype=np.int64),
    )


def _recent_items(data: Interactions, u: int) -> list[int]:
    cache = data.__dict__.setdefault("_recent_cache", {})
    if not cache:
        order = np.lexsort((-data.event_times, data.event_users))
        users = data.event_users[order]
        items = data.event_items[order]
        weights = data.event_weights[order]
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            pos = items[s:e][weights[s:e] > 0]
            cache[int(users[s])] = list(dict.fromkeys(pos.tolist()))
    recent: list[int] = cache.get(u, [])
    return recent


def train_ranker(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    params: dict[str, Any],
    seed: int = 0,
    objective: str = "lambdarank",
) -> Any:
    import lightgbm as lgb

    # One thread unless told otherwise: on a busy 2-core server LightGBM's thread pool is
    # slower than one thread at these sizes (measured 17 s against 0.13 s).
    options = {"n_jobs": 1, **params}
    if objective == "binary":
        model: Any = lgb.LGBMClassifier(random_state=seed, verbose=-1, **options)
        model.fit(x, y)
    else:
        model = lgb.LGBMRanker(objective=objective, random_state=seed, verbose=-1, **options)
        model.fit(x, y, group=groups)
    return model.booster_


def split_for_ranker(
    data: Interactions, fraction: float, how: str = "time", seed: int = 0
) -> np.ndarray:
    """Mask of the 'past' events: all but the newest ``fraction`` (or, for offline protocols
    whose test set is a random split, a random per-item share)."""
    if how == "time":
        from smartrec.evaluation.splits import temporal_holdout

        return temporal_holdout(data.event_times, fraction)
    from smartrec.evaluation.splits import stratified_split

    return stratified_split(
        data.event_users, data.event_items, ratio=1.0 - fraction, seed=seed, by="item"
    )


def fit_pipeline(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None = None,
    *,
    label_split: str = "time",
    seed: int = 0,
    max_ranker_users: int | None = 20_000,
    progress: Progress | None = None,
) -> TrainedPipeline:
    """Fit the retrievers on all of ``data`` and the ranker on its later window (see module)."""
    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    content = None
    if any(r.kind == "content" for r in spec.retrievers):
        from smartrec.pipeline.content import ContentIndex

        items = data.items.to_list()
        content = ContentIndex.fit(catalog_rows(items, catalog or {}), spec.content)
    info: dict[str, Any] = {"ranker": "fusion", "label_split": label_split}
    booster = None
    if spec.ranker.kind == "lightgbm":
        x, y, groups, counts, names = _ranker_rows(
            data, spec, catalog, content, label_split, seed, max_ranker_users, say
        )
        info.update({k: v for k, v in counts.items() if k != "fold_lists"})
        if counts["users"] < spec.ranker.min_users or counts.get("positives", 0) < min(
            spec.ranker.min_positives, spec.ranker.min_users
        ):
            info["fallback"] = (
                f"too little data for the learned ranker: {counts['users']} users with a "
                f"relevant candidate in the later window (needs {spec.ranker.min_users}); "
                "ranking by score fusion"
            )
            say(info["fallback"])
        else:
            say(
                f"ranker: {spec.ranker.objective} on {counts['rows']} rows, {counts['users']} lists"
            )
            booster = train_ranker(
                x, y, groups, spec.ranker.params, seed, objective=spec.ranker.objective
            )
            info["ranker"] = "lightgbm"
            info["objective"] = spec.ranker.objective
            importance = booster.feature_importance(importance_type="gain")
            order = np.argsort(-importance)[:8]
            info["top_features"] = {names[i]: round(float(importance[i]), 1) for i in order}
    say("fitting the retrievers on all events")
    pipeline = fit_components(data, spec, catalog, content_index=content)
    pipeline.ranker = booster
    info["seconds"] = round(time.perf_counter() - started, 2)
    pipeline.info = info
    return pipeline


def _ranker_rows(
    data: Interactions,
    spec: PipelineSpec,
    catalog: dict[str, CatalogItem] | None,
    content: Any,
    label_split: str,
    seed: int,
    max_users: int | None,
    say: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Training lists of every fold, stacked (one fold for a time split)."""
    folds = spec.ranker.folds if label_split != "time" else 1
    xs, ys, gs = [], [], []
    totals: dict[str, Any] = {"users": 0, "rows": 0, "positives": 0, "folds": folds}
    fold_lists: list[int] = []
    names: list[str] = []
    for fold in range(folds):
        past_mask = split_for_ranker(data, spec.ranker.label_fraction, label_split, seed + fold)
        past, later = data.subset_events(past_mask), data.subset_events(~past_mask)
        say(
            f"ranker fold {fold + 1}/{folds}: retrievers fitted on {int(past_mask.sum())} "
            f"earlier events, labels from the {int((~past_mask).sum())} later ones"
        )
        past_pipeline = fit_components(past, spec, catalog, build_ann=False, content_index=content)
        names = past_pipeline.feature_names
        x, y, groups, counts = ranker_dataset(past_pipeline, past, later, max_users, seed)
        xs.append(x)
        ys.append(y)
        gs.append(groups)
        fold_lists.append(len(groups))
        for key in ("users", "rows", "positives"):
            totals[key] += int(counts.get(key, 0))
    totals["fold_lists"] = fold_lists
    return np.vstack(xs), np.concatenate(ys), np.concatenate(gs), totals, names


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
