"""The promotion decision (``smartrec.training.promotion``): pure functions, a fake registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from smartrec.training.promotion import PIPELINE, champion_on_split, should_promote


@dataclass
class _Info:
    params: dict[str, Any]


@dataclass
class _Bundle:
    meta: dict[str, Any]


@dataclass
class _Registry:
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None
    asked: list[str] = field(default_factory=list)

    def get_version(self, version: str) -> _Info:
        self.asked.append(version)
        if self.error is not None:
            raise self.error
        return _Info(self.params)

    def load(self, version: str) -> _Bundle:
        assert version in self.asked
        return _Bundle(self.meta)


class _Fits:
    def __init__(self, result: dict[str, float] | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, algorithm: str, params: dict[str, Any]) -> dict[str, float]:
        self.calls.append((algorithm, params))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def _rescore(
    registry: _Registry,
    fits: _Fits,
    scored: dict[str, tuple[dict[str, Any], dict[str, float]]] | None = None,
) -> tuple[dict[str, float] | None, list[str]]:
    notes: list[str] = []
    out = champion_on_split(registry, "7", notes, scored or {}, fits)  # type: ignore[arg-type]
    return out, notes


# --- should_promote -----------------------------------------------------------------------------


def test_no_champion_means_promote() -> None:
    assert should_promote({"ndcg": 0.0}, None, None, "ndcg") == (True, "")


def test_a_champion_that_could_not_be_compared_stays_and_says_how_to_switch() -> None:
    assert should_promote({"ndcg": 0.9}, None, "3", "ndcg") == (
        False,
        "champion 3 could not be compared on this validation split; it stays "
        "(POST /v1/models/{version}/promote to switch by hand)",
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "promoted"),
    [(0.31, 0.30, True), (0.30, 0.30, True), (0.29, 0.30, False), (-0.1, 0.0, False)],
)
def test_the_candidate_wins_when_at_least_as_good(
    ours: float, theirs: float, promoted: bool
) -> None:
    """A tie goes to the candidate (it saw newer data)."""
    decision, why = should_promote({"ndcg": ours}, {"ndcg": theirs}, "3", "ndcg")
    assert decision is promoted
    assert (why == "") is promoted


def test_the_reason_names_the_metric_both_scores_and_the_champion() -> None:
    _, why = should_promote({"recall": 0.12345, "ndcg": 0.9}, {"recall": 0.5}, "4", "recall")
    assert why == "recall 0.1235 is below champion 4's 0.5000 on the same split; the champion stays"


def test_a_missing_metric_counts_as_zero() -> None:
    assert should_promote({}, {"ndcg": 0.1}, "2", "ndcg")[0] is False
    assert should_promote({"ndcg": 0.0}, {}, "2", "ndcg") == (True, "")
    assert should_promote({"ndcg": -0.5}, {}, "2", "ndcg")[0] is False
    assert should_promote({}, {"ndcg": -0.5}, "2", "ndcg") == (True, "")


# --- champion_on_split --------------------------------------------------------------------------


def test_the_champion_is_refitted_with_its_bundled_params() -> None:
    registry = _Registry({"algorithm": "ease", "ease.l2": 9.0}, meta={"params": {"l2": 50.0}})
    fits = _Fits({"ndcg": 0.25})
    assert _rescore(registry, fits) == ({"ndcg": 0.25}, [])
    assert registry.asked == ["7"]
    assert fits.calls == [("ease", {"l2": 50.0})]


def test_without_bundled_params_the_logged_ones_are_used_without_their_prefix() -> None:
    registry = _Registry(
        {"algorithm": "ease", "ease.l2": 9.0, "ease.x": "y", "other.l2": 1, "algorithm2": 3},
        meta={"params": {}},
    )
    fits = _Fits({"ndcg": 0.2})
    _rescore(registry, fits)
    assert fits.calls == [("ease", {"l2": 9.0, "x": "y"})]
    registry = _Registry({"algorithm": "ease", "ease.l2": 4.0})  # no "params" in meta at all
    fits = _Fits({"ndcg": 0.2})
    _rescore(registry, fits)
    assert fits.calls == [("ease", {"l2": 4.0})]


def test_a_pipeline_champion_is_refitted_from_its_spec_only() -> None:
    spec = {"retrievers": [{"name": "popular"}]}
    registry = _Registry(
        {"algorithm": PIPELINE}, meta={"params": {"spec": spec, "primary": "ease"}}
    )
    fits = _Fits({"ndcg": 0.3})
    assert _rescore(registry, fits)[0] == {"ndcg": 0.3}
    assert fits.calls == [("pipeline", {"spec": spec})]


def test_a_configuration_scored_in_this_run_is_not_fitted_twice() -> None:
    registry = _Registry({"algorithm": "ease"}, meta={"params": {"l2": 50.0}})
    fits = _Fits({"ndcg": 0.9})
    scored = {"ease": ({"l2": 50.0}, {"ndcg": 0.4})}
    assert _rescore(registry, fits, scored) == ({"ndcg": 0.4}, [])
    assert fits.calls == []
    # Other parameters: fitted.
    other = {"ease": ({"l2": 10.0}, {"ndcg": 0.4})}
    assert _rescore(registry, fits, other) == ({"ndcg": 0.9}, [])
    assert fits.calls == [("ease", {"l2": 50.0})]


def test_a_version_without_an_algorithm_cannot_be_compared() -> None:
    fits = _Fits({"ndcg": 0.9})
    assert _rescore(_Registry({"ease.l2": 1.0}, meta={"params": {"l2": 1.0}}), fits) == (None, [])
    assert fits.calls == []


@pytest.mark.parametrize("where", ["registry", "fit"])
def test_a_failure_is_a_note_and_no_comparison(where: str) -> None:
    error = RuntimeError("boom")
    registry = _Registry({"algorithm": "ease"}, error=error if where == "registry" else None)
    fits = _Fits(error if where == "fit" else {"ndcg": 1.0})
    assert _rescore(registry, fits) == (
        None,
        ["champion 7 could not be re-scored: RuntimeError: boom"],
    )
