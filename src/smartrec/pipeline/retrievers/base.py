"""The retriever protocol and the registry that finds a retriever class by its ``kind``.

A retriever is one source of candidates. The pipeline reads its ``[[retrievers]]`` blocks
from TOML, looks each ``kind`` up here and calls the class through :class:`Retriever` only:
adding a kind is one module that subclasses it and calls :func:`register`.

A retriever instance is a light view over the trained pipeline (:class:`PipelineParts`): the
fitted models, item statistics, content and ANN indices are the pipeline's (they are saved in
the bundle's historical layout), and a retriever's own fitted arrays live in
``parts.extras[name]`` (saved under ``retrievers/<name>/``).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from smartrec.domain import Interactions
from smartrec.models import Recommender
from smartrec.pipeline.kernels import Scorer
from smartrec.pipeline.query import UserQuery
from smartrec.pipeline.stats import ItemStats

if TYPE_CHECKING:  # the spec validates kinds through the registry: no import back
    from smartrec.pipeline.ann import VectorIndex
    from smartrec.pipeline.content import ContentIndex
    from smartrec.pipeline.spec import PipelineSpec, RetrieverConfig


class PipelineParts(Protocol):
    """What a retriever may read from the pipeline that holds it."""

    spec: PipelineSpec
    models: dict[str, Recommender]
    stats: ItemStats
    n_items: int
    content: ContentIndex | None  # the serving state extends and replaces it
    ann: dict[str, VectorIndex]  # retriever name -> its index
    extras: dict[str, Any]  # retriever name -> its own fitted state


class Retriever(ABC):
    """One source of candidates: fit, retrieve (top-n plus a scorer), explain, persist."""

    kind: ClassVar[str]
    #: Model algorithms this kind accepts (empty: it fits no model of the registry).
    model_names: ClassVar[tuple[str, ...]] = ()
    #: What the error message calls the model it needs.
    model_role: ClassVar[str] = "model"
    #: Whether the pipeline must build the content index for it.
    uses_content: ClassVar[bool] = False
    #: Whether its model gives the ``recent.sim`` feature (the first such retriever does).
    explains_history: ClassVar[bool] = False
    #: Whether it reaches items newer than the model (serving orders exploration by it).
    reaches_new_items: ClassVar[bool] = False

    def __init__(self, config: RetrieverConfig, parts: PipelineParts) -> None:
        self.config = config
        self.parts = parts

    @property
    def name(self) -> str:
        return self.config.name

    # ----------------------------------------------------------------- configuration
    @classmethod
    def check(cls, config: RetrieverConfig) -> None:
        """Raise ValueError when ``config`` does not suit this kind (called by the spec)."""
        if cls.model_names and config.model not in cls.model_names:
            allowed = ", ".join(cls.model_names)
            raise ValueError(
                f"retriever {config.name!r}: {cls.kind} needs a {cls.model_role} ({allowed})"
            )

    @classmethod
    def stat_windows(cls, config: RetrieverConfig) -> list[str]:
        """Windows whose per-item counts :class:`ItemStats` must hold for this retriever."""
        return []

    # ----------------------------------------------------------------- fitting
    def fit(self, data: Interactions, *, build_index: bool = True) -> None:
        """Fit what this retriever owns beyond the shared model (``parts.extras``, indices)."""
        return None

    # ----------------------------------------------------------------- live updates
    def live_lookback_s(self) -> float | None:
        """Seconds of events before the training's newest that :meth:`live_update` needs with
        the newer ones (None: this kind is not updated between trainings)."""
        return None

    def live_update(self, data: Interactions, after: float) -> bool:
        """Fold the events of ``data`` newer than ``after`` (epoch seconds: the training's
        newest) into what serving reads, on top of what training fitted; True when it changed.
        ``data`` is on the model's item axis and starts :meth:`live_lookback_s` before
        ``after``. Called from a background thread: replace state by one assignment."""
        return False

    # ----------------------------------------------------------------- serving
    @abstractmethod
    def retrieve(
        self, q: UserQuery, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, Scorer]:
        """(its top-n item indices, best first; a function scoring any candidate indices)."""

    def warm(self) -> None:
        """Build lazy serving structures now rather than on the first request."""
        return None

    def contributions(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        """How much each source item lifts each target (sources x targets), if it can say."""
        return None

    def sources(self, recent: list[int], page_items: np.ndarray) -> list[int | None]:
        """The recent history item that explains each page item best, for ``reason``."""
        return [None] * len(page_items)

    def reason(self, source: int | None, category: str | None) -> dict[str, Any] | None:
        """Why this retriever found an item, as the API's reason object.

        ``source`` comes from :meth:`sources`; a reason naming an item carries it as
        ``"item"`` (an index: the caller replaces it with the item's id and title).
        ``category`` is the request's category filter, if any. None: no reason to give.
        """
        return None

    # ----------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        """Write ``parts.extras[name]`` (npz + JSON) if this kind has any."""
        return None

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote into ``parts.extras[name]``."""
        return None


_REGISTRY: dict[str, type[Retriever]] = {}
_LOADED = False


def register(cls: type[Retriever]) -> type[Retriever]:
    """Class decorator: make ``cls`` the retriever of ``cls.kind``."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"retriever kind {cls.kind!r} is registered twice")
    _REGISTRY[cls.kind] = cls
    return cls


def _load_builtin() -> None:
    """Import every module of this package once: each registers its kind."""
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("smartrec.pipeline.retrievers")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def retriever_class(kind: str) -> type[Retriever]:
    _load_builtin()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown retriever kind {kind!r} (known: {', '.join(kinds())})") from None


def kinds() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)
