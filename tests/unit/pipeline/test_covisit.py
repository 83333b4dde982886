"""The co-visitation retriever: sessions, time decay, retrieval, persistence, its TOML block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartrec.datasets import generate
from smartrec.domain import Interactions
from smartrec.errors import ValidationFailed
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix
from smartrec.pipeline.retrievers.covisit import CovisitParams, covisit_matrix
from smartrec.pipeline.spec import PipelineSpec, load_spec, parse_spec
from smartrec.training.pipeline_fit import fit_components

DAY = 86400.0
T0 = 1_700_000_000.0


def events(rows: list[tuple[str, str, float]]) -> Interactions:
    users, items, times = zip(*rows, strict=True)
    return Interactions.from_events(list(users), list(items), np.ones(len(rows)), list(times))


def covisit_spec(**params: float) -> PipelineSpec:
    block = {"name": "covisit", "kind": "covisit", "n": 10, "params": params}
    return parse_spec({"retrievers": [block], "ranker": {"kind": "fusion"}})


def weight(data: Interactions, m: object, a: str, b: str) -> float:
    i, j = data.items.get(a), data.items.get(b)
    return float(m[i, j])  # type: ignore[index]


def test_pairs_stay_within_a_session_and_decay_with_age() -> None:
    data = events(
        [
            ("u1", "a", T0),
            ("u1", "b", T0 + 60),  # same session as a
            ("u1", "c", T0 + 10 * DAY),  # a new session: never paired with a or b
            ("u2", "a", T0 + 20 * DAY),
            ("u2", "d", T0 + 20 * DAY + 60),  # one half-life before the reference
            ("u3", "e", T0 + 30 * DAY),  # the reference time: the newest event
        ]
    )
    m = covisit_matrix(data, CovisitParams(session_gap_hours=24, half_life_days=10))
    assert weight(data, m, "a", "b") > 0 and weight(data, m, "b", "a") == weight(data, m, "a", "b")
    assert weight(data, m, "a", "c") == 0 and weight(data, m, "b", "c") == 0
    # Ages at the reference (u3's event): a-d 10 days (one half-life), a-b 30 days (three).
    assert weight(data, m, "a", "d") == pytest.approx(0.5, rel=1e-3)
    assert weight(data, m, "a", "b") == pytest.approx(0.125, rel=1e-3)
    assert m.diagonal().sum() == 0


def test_each_item_keeps_its_strongest_neighbours() -> None:
    rows = [(f"u{k}", "hub", T0 + k) for k in range(30)]
    rows += [(f"u{k}", f"x{k % 6}", T0 + k + 1) for k in range(30)]
    data = events(rows)
    m = covisit_matrix(data, CovisitParams(neighbours=3))
    hub = data.items.get("hub")
    assert m[hub].nnz == 3
    assert np.diff(m.indptr).max() <= 3


@pytest.fixture(scope="module")
def world() -> Interactions:
    return generate(
        n_users=200, n_items=150, n_events=5000, n_categories=5, seed=7
    ).to_interactions()


def test_retrieval_uses_the_recent_items_and_respects_exclusions(world: Interactions) -> None:
    pipe = fit_components(world, covisit_spec(), None)
    r = pipe.retriever("covisit")
    matrix = pipe.extras["covisit"]
    u = int(np.argmax(np.diff(world.matrix.indptr)))
    q = query_from_matrix(world, u)
    top, scorer = r.retrieve(q, q.exclude, None)
    assert 0 < len(top) <= 10
    assert not set(top.tolist()) & set(q.exclude.tolist())
    # The scores are the recency-weighted sums over the recent items' rows, best first.
    recent = q.recent[: r.config.recent]
    w = 1.0 / np.sqrt(np.arange(1, len(recent) + 1))
    dense = np.asarray(w @ matrix[recent].toarray()).ravel()
    np.testing.assert_allclose(scorer(top), dense[top], rtol=1e-4)
    assert np.all(np.diff(scorer(top)) <= 1e-6)
    best = np.setdiff1d(np.flatnonzero(dense > 0), q.exclude)
    assert dense[top[0]] == pytest.approx(dense[best].max(), rel=1e-5)
    # Items past the model's axis cannot be scored; a filter is obeyed.
    assert np.isnan(scorer(np.array([world.n_items + 3]))[0])
    allowed = np.zeros(world.n_items, dtype=bool)
    allowed[top[1:]] = True
    filtered, _ = r.retrieve(q, q.exclude, allowed)
    assert set(filtered.tolist()) <= set(top[1:].tolist())
    # No history: nothing.
    q.recent = []
    assert len(r.retrieve(q, q.exclude, None)[0]) == 0


def test_saved_as_npz_and_json_and_loaded_back(world: Interactions, tmp_path: Path) -> None:
    pipe = fit_components(world, covisit_spec(half_life_days=5.0), None)
    pipe.save(tmp_path / "p")
    own = tmp_path / "p" / "retrievers" / "covisit"
    assert sorted(p.name for p in own.iterdir()) == ["covisit.json", "covisit.npz"]
    with np.load(own / "covisit.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"data", "indices", "indptr", "shape"}
    loaded = TrainedPipeline.load(tmp_path / "p")
    assert (loaded.extras["covisit"] != pipe.extras["covisit"]).nnz == 0
    q = query_from_matrix(world, 3)
    a, b = pipe.retrieve(q), loaded.retrieve(q)
    assert a.items.tolist() == b.items.tolist()
    np.testing.assert_allclose(a.scores, b.scores)


def test_in_the_pipeline_it_is_one_more_column_and_feature(world: Interactions) -> None:
    spec = load_spec().with_models({"als": {"factors": 8, "iterations": 3}, "ease": {"l2": 50.0}})
    extra = parse_spec({"retrievers": [{"name": "covisit", "kind": "covisit", "n": 20}]})
    spec = spec.model_copy(update={"retrievers": [*spec.retrievers, *extra.retrievers]})
    pipe = fit_components(world, spec, None)
    assert [r.kind for r in pipe.retrievers][-1] == "covisit"
    assert {"covisit.score", "covisit.z", "covisit.rank"} <= set(pipe.feature_names)
    q = query_from_matrix(world, 5)
    c = pipe.retrieve(q)
    x = pipe.features(c, q)
    assert x.shape == (len(c), len(pipe.feature_names)) and x.flags.c_contiguous
    assert np.isfinite(c.ranks[:, -1]).any()


def test_spec_checks_covisit_blocks() -> None:
    with pytest.raises(ValidationFailed, match="takes no model"):
        parse_spec({"retrievers": [{"name": "c", "kind": "covisit", "model": "ease"}]})
    with pytest.raises(ValidationFailed, match="half_life_days"):
        parse_spec(
            {"retrievers": [{"name": "c", "kind": "covisit", "params": {"half_life_days": 0}}]}
        )
    with pytest.raises(ValidationFailed, match="unknown retriever kind"):
        parse_spec({"retrievers": [{"name": "c", "kind": "nope"}]})


def test_the_shipped_toml_block_parses_once_uncommented() -> None:
    """The commented covisit block in default_pipeline.toml stays valid."""
    import tomllib
    from importlib import resources

    text = resources.files("smartrec.pipeline").joinpath("default_pipeline.toml").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "# [[retrievers]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    uncommented = "\n".join(lines[:start] + block + lines[start + len(block) :])
    spec = parse_spec(tomllib.loads(uncommented))
    covisit = spec.retriever("covisit")
    assert covisit.kind == "covisit" and covisit.params["half_life_days"] == 30
    assert [r.kind for r in load_spec().retrievers] == [
        "embedding",
        "neighbours",
        "popular",
        "content",
    ]
