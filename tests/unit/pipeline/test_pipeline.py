"""The multi-stage pipeline: each retriever, the ranker's training window, spec and persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from smartrec.datasets import generate
from smartrec.domain import CatalogItem, Interactions
from smartrec.errors import ValidationFailed
from smartrec.models import create
from smartrec.pipeline import core
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix, recommend_users
from smartrec.pipeline.spec import PipelineSpec, load_spec, parse_spec
from smartrec.training import pipeline_fit
from smartrec.training.pipeline_fit import fit_components, fit_pipeline, split_for_ranker
from smartrec.training.ranker import ranker_dataset

SMALL_MODELS = {
    "als": {"factors": 16, "iterations": 5, "regularization": 1.0},
    "ease": {"l2": 50.0},
}


@pytest.fixture(scope="module")
def world() -> tuple[Interactions, dict[str, CatalogItem], Any]:
    syn = generate(n_users=300, n_items=250, n_events=9000, n_categories=8, seed=3)
    data = syn.to_interactions()
    catalog = {
        r["item_id"]: CatalogItem(
            r["item_id"], r["title"], r["categories"], r["attributes"], True, False
        )
        for r in syn.items()
    }
    return data, catalog, syn


@pytest.fixture(scope="module")
def spec() -> PipelineSpec:
    spec = load_spec().with_models(SMALL_MODELS)
    params = {**spec.ranker.params, "n_estimators": 40}
    return spec.model_copy(update={"ranker": spec.ranker.model_copy(update={"params": params})})


@pytest.fixture(scope="module")
def fitted(world: Any, spec: PipelineSpec) -> TrainedPipeline:
    data, catalog, _ = world
    return fit_components(data, spec, catalog)


def itemknn_spec() -> PipelineSpec:
    """The default pipeline with item-kNN (k=30) as its neighbours retriever."""
    spec = load_spec().with_models(SMALL_MODELS)
    retrievers = [
        r.model_copy(update={"model": "itemknn", "params": {"k": 30}})
        if r.kind == "neighbours"
        else r
        for r in spec.retrievers
    ]
    return spec.model_copy(update={"retrievers": retrievers})


def heavy_user(data: Interactions) -> int:
    return int(np.argmax(np.diff(data.matrix.indptr)))


# --------------------------------------------------------------------------- spec
def test_default_spec_ships_with_the_package() -> None:
    spec = load_spec()
    kinds = {r.kind for r in spec.retrievers}
    assert kinds == {"embedding", "neighbours", "popular", "content"}
    assert spec.ranker.kind == "lightgbm"


def test_spec_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="needs a factor model"):
        parse_spec({"retrievers": [{"name": "e", "kind": "embedding", "model": "ease"}]})
    with pytest.raises(ValidationFailed, match="unique"):
        parse_spec(
            {"retrievers": [{"name": "p", "kind": "popular"}, {"name": "p", "kind": "popular"}]}
        )
    bad = tmp_path / "p.toml"
    bad.write_text("retrievers = [")
    with pytest.raises(ValidationFailed, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(ValidationFailed, match="promoted_filter"):
        parse_spec(
            {"retrievers": [{"name": "p", "kind": "popular"}], "rules": {"promoted_filter": "a >"}}
        )


def test_with_models_fills_params_the_spec_leaves_open() -> None:
    spec = load_spec().with_models({"als": {"factors": 8}, "ease": {"l2": 7.0}})
    assert spec.retriever("embedding").params == {"factors": 8}
    assert spec.retriever("neighbours").params == {"l2": 7.0}


# --------------------------------------------------------------------------- retrievers
def test_embedding_retriever_is_the_exact_factor_top_n(world: Any, fitted: TrainedPipeline) -> None:
    data, _, _ = world
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    r = fitted.spec.retriever("embedding")
    top, scorer = fitted.retriever(r.name).retrieve(q, q.exclude, None)
    model = fitted.models["embedding"]
    expected, _ = model.recommend(data.matrix[u], r.n, users=np.array([u]), exclude=data.seen[u])
    assert top.tolist() == expected[0][expected[0] >= 0].tolist()
    assert not set(top.tolist()) & set(q.exclude.tolist())
    scores = model.score(data.matrix[u], np.array([u]))[0]
    np.testing.assert_allclose(scorer(top), scores[top], rtol=1e-5)


def test_embedding_retriever_through_the_ann_index(world: Any, spec: PipelineSpec) -> None:
    data, catalog, _ = world
    ann_spec = spec.model_copy(update={"ann": spec.ann.model_copy(update={"exact_below": 10})})
    pipe = fit_components(data, ann_spec, catalog)
    assert "embedding" in pipe.ann
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    r = pipe.spec.retriever("embedding")
    top, _ = pipe.retriever(r.name).retrieve(q, q.exclude, None)
    exact, _ = pipe.models["embedding"].recommend(
        data.matrix[u], r.n, users=np.array([u]), exclude=data.seen[u]
    )
    overlap = len(set(top.tolist()) & set(exact[0].tolist())) / r.n
    assert overlap >= 0.9
    assert not set(top.tolist()) & set(q.exclude.tolist())


def test_neighbours_retriever_scores_recent_history(world: Any, fitted: TrainedPipeline) -> None:
    data, _, _ = world
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    r = fitted.spec.retriever("neighbours")
    top, _ = fitted.retriever(r.name).retrieve(q, q.exclude, None)
    recent = q.recent[: r.recent]
    row = sp.csr_matrix(data.matrix[u])
    keep = np.isin(row.indices, recent)
    row = sp.csr_matrix((row.data[keep], row.indices[keep], [0, keep.sum()]), shape=row.shape)
    expected, _ = fitted.models["neighbours"].recommend(row, r.n, exclude=data.seen[u])
    assert top.tolist()[:20] == expected[0][:20].tolist()


def test_popular_retriever_is_the_window_order(world: Any, fitted: TrainedPipeline) -> None:
    data, _, _ = world
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    r = fitted.spec.retriever("popular")
    top, _ = fitted.retriever(r.name).retrieve(q, q.exclude, None)
    counts = fitted.stats.window_counts[r.windows[0]]
    assert len(top) == r.n
    assert np.all(np.diff(counts[top]) <= 0)
    unseen_best = [i for i in np.argsort(-counts, kind="stable") if i not in set(q.exclude)]
    assert counts[top[0]] == counts[unseen_best[0]]
    # An allowed mask restricts it.
    allowed = np.zeros(data.n_items, dtype=bool)
    allowed[::3] = True
    top2, _ = fitted.retriever(r.name).retrieve(q, q.exclude, allowed)
    assert all(i % 3 == 0 for i in top2.tolist())


def test_content_retriever_reaches_items_without_events(world: Any, spec: PipelineSpec) -> None:
    data, catalog, syn = world
    # A catalogue item nobody touched, titled and categorised like the user's favourite item.
    u = heavy_user(data)
    fav = int(data.matrix[u].indices[np.argmax(data.matrix[u].data)])
    fav_row = catalog[str(syn.item_ids[fav])]
    cold = CatalogItem("cold-1", fav_row.title, fav_row.categories, {}, True, False)
    axis = [*data.items.to_list(), "cold-1"]
    from smartrec.domain import IdMap

    data2 = Interactions.from_events(
        data.users.ids[data.event_users],
        data.items.ids[data.event_items],
        data.event_weights,
        data.event_times,
        users=data.users,
        items=IdMap(axis),
    )
    pipe = fit_components(data2, spec, {**catalog, "cold-1": cold})
    q = query_from_matrix(data2, u)
    q.recent = [fav]
    top, scorer = pipe.retriever("content").retrieve(q, q.exclude, None)
    cold_idx = data2.items.get("cold-1")
    assert cold_idx in top.tolist()
    # Its scope is the cold items: nothing with many events.
    assert all(pipe.stats.counts[i] < core.COLD_EVENTS for i in top.tolist())
    assert scorer(np.array([cold_idx]))[0] > 0


def test_candidates_union_and_features(world: Any, fitted: TrainedPipeline) -> None:
    data, _, _ = world
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    c = fitted.retrieve(q)
    assert len(c) > 0 and len(np.unique(c.items)) == len(c.items)
    assert not set(c.items.tolist()) & set(q.exclude.tolist())
    x = fitted.features(c, q)
    assert x.shape == (len(c), len(fitted.feature_names))
    # Every candidate was found by at least one retriever.
    assert np.all(np.isfinite(c.ranks).any(axis=1))


# --------------------------------------------------------------------------- ranker
def _shuffle_items(later: Interactions, seed: int) -> Interactions:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, later.n_items, size=later.n_events)
    return Interactions.from_codes(
        later.users,
        later.items,
        later.event_users,
        items,
        later.event_weights,
        later.event_times,
    )


def _user_blocks(pipe: TrainedPipeline, past: Interactions, later: Interactions) -> dict[int, Any]:
    x, _, groups, counts = ranker_dataset(pipe, past, later)
    starts = np.r_[0, np.cumsum(groups)]
    return {u: x[starts[k] : starts[k + 1]] for k, u in enumerate(counts.get("user_list", []))}


def test_ranker_features_never_see_the_label_window(world: Any, spec: PipelineSpec) -> None:
    """Replacing what happened later must not move a single feature of the training rows."""
    data, catalog, _ = world
    mask = split_for_ranker(data, 0.2, "time")
    past, later = data.subset_events(mask), data.subset_events(~mask)
    assert past.event_times.max() <= later.event_times.min()
    pipe = fit_components(past, spec, catalog, build_ann=False)
    a = _user_blocks(pipe, past, later)
    b = _user_blocks(pipe, past, _shuffle_items(later, 1))
    common = set(a) & set(b)
    assert len(common) > 20
    for u in common:
        np.testing.assert_array_equal(a[u], b[u])
    # The check has teeth: a pipeline fitted on past AND later gives different features.
    leaky = fit_components(data, spec, catalog, build_ann=False)
    c = _user_blocks(leaky, past, later)
    assert set(a) & set(c)
    assert any(a[u].shape != c[u].shape or not np.array_equal(a[u], c[u]) for u in set(a) & set(c))


def test_fit_pipeline_fits_retrievers_on_the_past_only(
    world: Any, spec: PipelineSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, catalog, _ = world
    seen: list[Interactions] = []
    real = pipeline_fit.fit_components

    def spy(d: Interactions, *args: Any, **kwargs: Any) -> TrainedPipeline:
        seen.append(d)
        return real(d, *args, **kwargs)

    monkeypatch.setattr(pipeline_fit, "fit_components", spy)
    pipe = fit_pipeline(data, spec, catalog, label_split="time")
    past, final = seen
    cutoff = np.quantile(data.event_times, 0.8)
    assert past.n_events < data.n_events and final.n_events == data.n_events
    assert past.event_times.max() <= cutoff + 1e-6
    assert pipe.info["ranker"] == "lightgbm" and pipe.uses_ranker
    assert pipe.info["users"] >= spec.ranker.min_users


def test_ranker_falls_back_to_fusion_with_too_little_data(world: Any, spec: PipelineSpec) -> None:
    data, catalog, _ = world
    strict = spec.model_copy(
        update={"ranker": spec.ranker.model_copy(update={"min_users": 100_000})}
    )
    pipe = fit_pipeline(data, strict, catalog)
    assert not pipe.uses_ranker
    assert "too little data" in pipe.info["fallback"]
    assert pipe.info["ranker"] == "fusion"
    u = heavy_user(data)
    items, scores, _ = pipe.recommend(query_from_matrix(data, u), 10)
    assert len(items) == 10 and np.all(np.diff(scores) <= 0)


def test_pipeline_beats_popularity_offline(world: Any, spec: PipelineSpec) -> None:
    data, catalog, _ = world
    mask = split_for_ranker(data, 0.15, "time")
    train, test = data.subset_events(mask), data.subset_events(~mask)
    rel = sp.csr_matrix(test.binarized() - test.binarized().multiply(train.seen))
    rel.eliminate_zeros()
    users = np.flatnonzero((np.diff(rel.indptr) > 0) & (np.diff(train.matrix.indptr) > 0))
    from smartrec.domain.metrics import ranking_metrics

    pipe = fit_pipeline(train, spec, catalog)
    recs = recommend_users(pipe, train, users, 10)
    ours = ranking_metrics(recs, rel[users], 10, n_items=data.n_items)["ndcg@10"]
    pop = create("popularity").fit(train)
    base, _ = pop.recommend(train.matrix[users], 10, exclude=train.seen[users])
    theirs = ranking_metrics(base, rel[users], 10, n_items=data.n_items)["ndcg@10"]
    assert ours > theirs


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip(world: Any, spec: PipelineSpec, tmp_path: Path) -> None:
    data, catalog, _ = world
    pipe = fit_pipeline(data, spec, catalog)
    pipe.save(tmp_path / "p")
    assert not list((tmp_path / "p").rglob("*.pkl"))
    back = TrainedPipeline.load(tmp_path / "p")
    assert back.feature_names == pipe.feature_names
    assert back.uses_ranker == pipe.uses_ranker
    u = heavy_user(data)
    a = pipe.recommend(query_from_matrix(data, u), 10)
    b = back.recommend(query_from_matrix(data, u), 10)
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_offline_diversity_rule_spreads_categories(world: Any, fitted: TrainedPipeline) -> None:
    from smartrec.domain.metrics import category_vectors as cat_vectors
    from smartrec.domain.metrics import intra_list_diversity
    from smartrec.evaluation.pipeline_eval import pipeline_top_k, stratified_validation

    data, _, _ = world
    users = np.arange(0, data.n_users, 10)
    plain = pipeline_top_k(fitted, data, users, 10)
    varied = pipeline_top_k(fitted, data, users, 10, diversity=0.3)
    vectors = cat_vectors(data.item_categories)
    assert intra_list_diversity(varied, vectors) > intra_list_diversity(plain, vectors)
    val = stratified_validation(data)
    assert val.n_users > 0
    assert not (val.relevant.multiply(val.train.seen[val.users])).nnz  # nothing already seen


def test_tune_pipeline_never_loses_to_the_spec_it_was_given(world: Any, spec: PipelineSpec) -> None:
    from smartrec.pipeline.tuning import apply_pipeline_params
    from smartrec.training.pipeline_tune import tune_pipeline
    from smartrec.training.tune import temporal_validation

    data, catalog, _ = world
    result = tune_pipeline(
        data, spec, catalog, 12.0, lambda d: temporal_validation(d, 0.15), seed=0
    )
    assert result.n_trials >= 2
    assert result.value >= result.default_value
    assert result.seconds < 60
    tuned = apply_pipeline_params(spec, result.params)
    assert tuned.ranker.kind == result.params["kind"]
    assert {r.name: r.weight for r in tuned.retrievers} == result.params["weights"]


def test_tune_pipeline_with_a_trial_cap_chooses_the_same_twice(
    world: Any, spec: PipelineSpec
) -> None:
    from smartrec.training.pipeline_tune import tune_pipeline
    from smartrec.training.tune import temporal_validation

    data, catalog, _ = world
    runs = [
        tune_pipeline(
            data, spec, catalog, 120.0, lambda d: temporal_validation(d, 0.15), seed=3, trials=6
        )
        for _ in range(2)
    ]
    assert [r.n_trials for r in runs] == [6, 6]
    assert runs[0].params == runs[1].params
    assert [h["value"] for h in runs[0].history] == [h["value"] for h in runs[1].history]


def test_itemknn_neighbours_stay_sparse_and_agree_with_dense(world: Any) -> None:
    data, catalog, _ = world
    knn_spec = itemknn_spec()
    pipe = fit_components(data, knn_spec, catalog, build_ann=False)
    u = heavy_user(data)
    q = query_from_matrix(data, u)
    r = knn_spec.retriever("neighbours")
    top, scorer = pipe.retriever(r.name).retrieve(q, q.exclude, None)
    dense = pipe.models["neighbours"].score(data.matrix[u])[0]
    dense[q.exclude] = -np.inf
    expected = np.argsort(-dense, kind="stable")[: len(top)]
    np.testing.assert_allclose(np.sort(dense[top])[::-1], np.sort(dense[expected])[::-1])
    np.testing.assert_allclose(scorer(top), dense[top], rtol=1e-5)
    assert scorer(np.array([q.exclude[0]]))[0] >= 0


def test_prune_rows_keeps_each_rows_largest_entries() -> None:
    from smartrec.pipeline.core import prune_rows

    rng = np.random.default_rng(0)
    m = sp.random(50, 400, density=0.2, format="csr", random_state=1, dtype=np.float32)
    m.data = rng.random(m.nnz).astype(np.float32)
    pruned = prune_rows(m, 5)
    assert pruned.shape == m.shape
    for i in range(m.shape[0]):
        full = m.getrow(i)
        got = pruned.getrow(i)
        expected = np.sort(full.data)[::-1][:5]
        np.testing.assert_allclose(np.sort(got.data)[::-1], expected)
        assert set(got.indices) <= set(full.indices)
        for j, v in zip(got.indices, got.data, strict=True):
            assert full[0, j] == v
    assert prune_rows(m, 10_000) is not None and prune_rows(m, 10_000).nnz == m.nnz


def test_pruned_neighbours_score_candidates_exactly(world: Any) -> None:
    """With rows pruned hard, retrieval may find other items, but every score is exact."""
    from smartrec.pipeline.retrievers import neighbours as neighbours_module

    data, catalog, _ = world
    knn_spec = itemknn_spec()
    pipe = fit_components(data, knn_spec, catalog, build_ann=False)
    old = neighbours_module.PRUNED_ROW
    neighbours_module.PRUNED_ROW = 3
    try:
        u = heavy_user(data)
        q = query_from_matrix(data, u)
        top, scorer = pipe.retriever("neighbours").retrieve(q, q.exclude, None)
    finally:
        neighbours_module.PRUNED_ROW = old
    dense = pipe.models["neighbours"].score(data.matrix[u])[0]
    assert len(top) > 0 and not set(top.tolist()) & set(q.exclude.tolist())
    np.testing.assert_allclose(scorer(top), dense[top], rtol=1e-5)
    everything = np.arange(data.n_items)
    np.testing.assert_allclose(scorer(everything), dense, rtol=1e-4, atol=1e-6)
