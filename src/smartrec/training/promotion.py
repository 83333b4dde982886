"""Whether a newly trained version replaces the champion: the decision, apart from training.

The champion's configuration is refitted on the run's own split (scoring the registered model
would let it see the validation window it was trained on); the candidate is promoted when it
is at least as good there, or when there is no champion at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smartrec.registry import ModelRegistry

#: The candidate name of the multi-stage pipeline among the single models.
PIPELINE = "pipeline"

#: (algorithm, params) -> the metrics of that configuration fitted and scored on the split.
FitAndScore = Callable[[str, dict[str, Any]], dict[str, float]]


def champion_on_split(
    registry: ModelRegistry,
    version: str,
    notes: list[str],
    scored: dict[str, tuple[dict[str, Any], dict[str, float]]],
    fit_and_score: FitAndScore,
) -> dict[str, float] | None:
    """The champion's configuration refitted and scored on this split; None (with a note when
    something failed) when it cannot be. A configuration already scored as a candidate of this
    run (``scored``: algorithm -> (params, metrics)) is not fitted twice."""
    try:
        info = registry.get_version(version)
        algorithm = info.params.get("algorithm")
        if algorithm is None:
            return None
        prefix = f"{algorithm}."
        bundle = registry.load(version)
        params = dict(bundle.meta.get("params", {}))
        if not params:
            params = {k[len(prefix) :]: v for k, v in info.params.items() if k.startswith(prefix)}
        if algorithm == PIPELINE:
            params = {"spec": params.get("spec")}
        same = scored.get(algorithm)
        if same is not None and same[0] == params:
            return same[1]
        return fit_and_score(algorithm, params)
    except Exception as exc:
        notes.append(f"champion {version} could not be re-scored: {type(exc).__name__}: {exc}")
        return None


def should_promote(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
    metric: str,
) -> tuple[bool, str]:
    """(promote?, why not). Promote when there is no champion, or the candidate is at least as
    good on the same split: on a tie the candidate wins because it saw newer data. With a
    champion that could not be compared, keep it: a person can promote by hand."""
    if champion_version is None:
        return True, ""
    if champion is None:
        return False, (
            f"champion {champion_version} could not be compared on this validation split; "
            f"it stays (POST /v1/models/{{version}}/promote to switch by hand)"
        )
    ours, theirs = candidate.get(metric, 0.0), champion.get(metric, 0.0)
    if ours >= theirs:
        return True, ""
    return False, (
        f"{metric} {ours:.4f} is below champion {champion_version}'s {theirs:.4f} on the "
        "same split; the champion stays"
    )
