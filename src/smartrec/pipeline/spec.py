"""The pipeline description: retrievers, ranker and rules, each a pydantic config.

A pipeline is written in TOML (``default_pipeline.toml`` ships with the package) so that an
operator can change what is retrieved, how it is ranked and which rules apply without code.
``SMARTREC_PIPELINE_FILE`` (or ``pipeline_file`` in the config file) points at another one.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smartrec.errors import ValidationFailed
from smartrec.pipeline.ann import AnnConfig
from smartrec.pipeline.content import ContentConfig
from smartrec.pipeline.windows import window_seconds


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrieverConfig(_Config):
    """One source of candidates. ``kind`` names its class in the retriever registry
    (:mod:`smartrec.pipeline.retrievers`); ``model`` the algorithm for model-backed kinds;
    ``params`` the model's parameters, or the retriever's own for kinds without a model."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    kind: str
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    n: int = Field(default=100, ge=1, le=5000)
    #: Weight in score fusion (the ranker's fallback); tuned with the ranker.
    weight: float = Field(default=1.0, ge=0.0)
    #: neighbours / content: how many of the newest history items form the query (measured
    #: on ML-100K: EASE on the newest 50 items loses ~0.02 nDCG against the whole history).
    recent: int = Field(default=500, ge=1, le=500)
    #: popular: the windows counted (each gives a feature; the first ranks the retriever).
    windows: list[str] = Field(default_factory=lambda: ["7d", "30d"])
    #: content: "cold" scores only items with few events (cheap at any catalogue size; that is
    #: what content is for), "all" every item.
    scope: Literal["cold", "all"] = "cold"
    #: content, cold scope: at most this many cold items, the newest (by publication, else
    #: first event; undated ones count as oldest). Items added after training always count.
    scope_limit: int = Field(default=50_000, ge=1)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for w in value:
            window_seconds(w)
        return value

    @model_validator(mode="after")
    def _kind(self) -> RetrieverConfig:
        # Imported here: the retrievers import this module for their configs.
        from smartrec.pipeline.retrievers import retriever_class

        retriever_class(self.kind).check(self)
        return self


class RankerConfig(_Config):
    kind: Literal["lightgbm", "fusion"] = "lightgbm"
    #: Share of the newest training events whose items are the ranker's labels; retrievers
    #: are fitted on the older events only.
    label_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    #: Below this many users with a labelled candidate, the ranker falls back to fusion.
    min_users: int = Field(default=50, ge=1)
    min_positives: int = Field(default=200, ge=1)
    candidates: int = Field(default=300, ge=10, le=5000)
    #: Training lists are stacked from this many label splits (random splits only; a time
    #: split has one later window). More rows, less variance.
    folds: int = Field(default=1, ge=1, le=10)
    #: LightGBM ranking objective: lambdarank (LambdaMART), rank_xendcg, or binary.
    objective: Literal["lambdarank", "rank_xendcg", "binary"] = "lambdarank"
    params: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 300,
            "learning_rate": 0.02,
            "num_leaves": 15,
            "min_child_samples": 100,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
        }
    )


class RulesConfig(_Config):
    """Defaults of the business rules; several can be changed per request."""

    #: Items first published (or first seen) within this many days count as new.
    new_days: float = Field(default=30.0, gt=0)
    #: Score multiplier for new items (1 = no boost).
    boost_new: float = Field(default=1.0, ge=0.0)
    #: Items always boosted, and a filter expression selecting more (e.g. attributes.promoted
    #: == true); their score is multiplied by ``boost_promoted``.
    promoted: list[str] = Field(default_factory=list)
    promoted_filter: str | None = None
    boost_promoted: float = Field(default=1.0, ge=0.0)
    #: MMR trade-off: 1 = pure relevance (off), lower = more diverse.
    diversity: float = Field(default=1.0, ge=0.0, le=1.0)
    #: At most this many items of one category per page (None = no cap).
    max_per_category: int | None = Field(default=None, ge=1)
    #: Share of each page given to new items the user has not seen (0 = none).
    exploration: float = Field(default=0.0, ge=0.0, le=0.5)
    #: An item attribute that hides an item when true (besides available = false).
    hidden_attribute: str = "hidden"

    @field_validator("promoted_filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is not None:
            from smartrec.pipeline.filters import parse_filter

            try:
                parse_filter(value)
            except ValidationFailed as exc:
                raise ValueError(str(exc)) from None
        return value


class PipelineSpec(_Config):
    retrievers: list[RetrieverConfig]
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    ann: AnnConfig = Field(default_factory=AnnConfig)
    content: ContentConfig = Field(default_factory=ContentConfig)

    @model_validator(mode="after")
    def _unique(self) -> PipelineSpec:
        names = [r.name for r in self.retrievers]
        if not names:
            raise ValueError("a pipeline needs at least one retriever")
        if len(set(names)) != len(names):
            raise ValueError(f"retriever names must be unique: {names}")
        return self

    def retriever(self, name: str) -> RetrieverConfig:
        return next(r for r in self.retrievers if r.name == name)

    def with_models(self, models: dict[str, dict[str, Any]]) -> PipelineSpec:
        """The same spec with model parameters taken from ``models`` (tuned or configured)
        where the spec itself does not set them."""
        retrievers = [
            r.model_copy(update={"params": {**models.get(r.model or "", {}), **r.params}})
            for r in self.retrievers
        ]
        return self.model_copy(update={"retrievers": retrievers})


def parse_spec(data: dict[str, Any], source: str = "pipeline") -> PipelineSpec:
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationFailed(f"{source}: {errors}", field="pipeline") from None


def load_spec(path: str | Path | None = None) -> PipelineSpec:
    """The pipeline in ``path``, or the default one shipped with the package."""
    if path is None:
        text = resources.files("smartrec.pipeline").joinpath("default_pipeline.toml").read_text()
        source = "default_pipeline.toml"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValidationFailed(f"cannot read pipeline file {path}: {exc}") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed(f"{source} is not valid TOML: {exc}", field="pipeline") from None
    return parse_spec(data, source)
