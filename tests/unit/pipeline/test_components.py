"""Retrievers as components: found by kind, combined without knowing them, saved as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smartrec.datasets import generate
from smartrec.domain import Interactions
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix
from smartrec.pipeline.kernels import Scorer, array_scorer, gather_rows, top_n
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.retrievers import Retriever, kinds, register, retriever_class
from smartrec.pipeline.retrievers import base as registry
from smartrec.pipeline.spec import load_spec, parse_spec
from smartrec.training.pipeline_fit import fit_components


@pytest.fixture(scope="module")
def world() -> Interactions:
    syn = generate(n_users=150, n_items=120, n_events=4000, n_categories=5, seed=11)
    return syn.to_interactions()


def test_the_builtin_kinds_are_registered() -> None:
    assert {"embedding", "neighbours", "popular", "content", "covisit"} <= set(kinds())
    assert retriever_class("popular").kind == "popular"


def test_a_new_kind_needs_only_its_class(world: Interactions, monkeypatch: Any) -> None:
    """A kind defined here, outside the package, is found from the spec and served."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register
    class Newest(Retriever):
        kind = "newest_test"

        def retrieve(
            self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
        ) -> tuple[np.ndarray, Scorer]:
            order = np.arange(self.parts.n_items, dtype=np.float32)
            return top_n(order, self.config.n, blocked), array_scorer(order)

    spec = parse_spec(
        {
            "retrievers": [{"name": "newest", "kind": "newest_test", "n": 7}],
            "ranker": {"kind": "fusion"},
        }
    )
    pipe = fit_components(world, spec, None)
    assert isinstance(pipe.retrievers[0], Newest)
    q = query_from_matrix(world, 0)
    items, _, c = pipe.recommend(q, 5)
    allowed = np.setdiff1d(np.arange(world.n_items), q.exclude)
    assert items.tolist() == allowed[::-1][:5].tolist()
    assert c.names == ["newest"]


def test_gather_rows_matches_scipy() -> None:
    import scipy.sparse as sp

    m = sp.random(40, 30, density=0.2, format="csr", random_state=3, dtype=np.float32)
    rows = np.array([5, 0, 5, 39, 12])
    lengths, cols, vals = gather_rows(m, rows)
    sub = m[rows]
    assert lengths.tolist() == np.diff(sub.indptr).tolist()
    assert cols.tolist() == sub.indices.tolist()
    np.testing.assert_allclose(vals, sub.data)
    empty = gather_rows(m, np.zeros(0, dtype=np.int64))
    assert len(empty[1]) == 0


def test_default_pipeline_saves_in_the_historical_layout(
    world: Interactions, tmp_path: Path
) -> None:
    """Bundles saved before retrievers were components have exactly these files, and load."""
    spec = load_spec().with_models({"als": {"factors": 8, "iterations": 3}, "ease": {"l2": 50.0}})
    spec = spec.model_copy(update={"ranker": spec.ranker.model_copy(update={"kind": "fusion"})})
    pipe = fit_components(world, spec, None)
    pipe.save(tmp_path / "p")
    top = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert top == ["content", "models", "pipeline.json", "stats.npz"]
    assert sorted(p.name for p in (tmp_path / "p" / "models").iterdir()) == [
        "embedding",
        "neighbours",
    ]
    with np.load(tmp_path / "p" / "stats.npz", allow_pickle=False) as npz:
        assert {"counts", "first_seen", "published", "cat_indptr", "window_7d"} <= set(npz.files)
    loaded = TrainedPipeline.load(tmp_path / "p")
    q = query_from_matrix(world, 2)
    a, b = pipe.recommend(q, 10), loaded.recommend(q, 10)
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_replacing_the_spec_rebuilds_the_retrievers(world: Interactions) -> None:
    import dataclasses

    spec = parse_spec({"retrievers": [{"name": "p", "kind": "popular", "n": 5}]})
    pipe = fit_components(world, spec, None)
    first = pipe.retrievers
    assert pipe.retrievers is first  # cached
    other = spec.model_copy(update={"retrievers": [spec.retrievers[0].model_copy(update={"n": 3})]})
    swapped = dataclasses.replace(pipe, spec=other)
    assert swapped.retrievers[0].config.n == 3
    q = query_from_matrix(world, 1)
    assert len(swapped.retrieve(q)) == 3 and len(pipe.retrieve(q)) == 5


def test_each_kind_says_why_it_found_an_item(world: Interactions) -> None:
    """What serving shows as reasons comes from the retrievers, not from a switch on kind."""
    spec = load_spec().with_models({"als": {"factors": 8, "iterations": 3}, "ease": {"l2": 50.0}})
    extra = parse_spec({"retrievers": [{"name": "covisit", "kind": "covisit"}]}).retrievers
    spec = spec.model_copy(update={"retrievers": [*spec.retrievers, *extra]})
    pipe = fit_components(world, spec, None)
    by = {r.kind: r for r in pipe.retrievers}
    assert by["embedding"].reason(None, None) == {"kind": "personalized", "algorithm": "als"}
    assert by["popular"].reason(None, "drama") == {
        "kind": "popular_in",
        "window": "7d",
        "category": "drama",
    }
    assert by["neighbours"].reason(None, None) is None
    assert by["neighbours"].reason(4, None) == {"kind": "similar_to", "item": 4}
    assert by["covisit"].reason(4, None) == {"kind": "similar_to", "item": 4, "via": "covisit"}
    q = query_from_matrix(world, 7)
    page = pipe.recommend(q, 5)[0]
    sources = pipe.reason_sources(q.recent, page, ["neighbours", "covisit"])
    assert set(sources) == {"neighbours", "covisit"}
    # The neighbours source is the recent item that lifts the page item most.
    src = np.asarray(q.recent[:50])
    contrib = pipe.models["neighbours"].contributions(src, page)
    for k, s in enumerate(sources["neighbours"]):
        assert s is None or s == int(src[np.argmax(contrib[:, k])])
    assert any(s is not None for s in sources["neighbours"])
