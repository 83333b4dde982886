"""What a registered model version holds: the chosen model, the popularity fallback, id maps.

A bundle is a plain directory (``bundle.json`` + ``ids.npz`` + one sub-directory per model,
each ``model.npz`` + ``model.json``) so that it can live in any artifact store and be read
without executing code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartrec.domain import IdMap
from smartrec.errors import ModelError
from smartrec.models import Recommender

if TYPE_CHECKING:  # loaded lazily: serving a single model never imports the pipeline
    from smartrec.pipeline.core import TrainedPipeline

BUNDLE_FORMAT = 1


@dataclass
class ModelBundle:
    model: Recommender
    popularity: Recommender
    items: IdMap
    users: IdMap
    meta: dict[str, Any] = field(default_factory=dict)
    #: The multi-stage pipeline (retrievers, ranker); None = serve ``model`` alone.
    pipeline: TrainedPipeline | None = None

    @property
    def algorithm(self) -> str:
        """What serves: "pipeline" when there is one (``model`` is then its primary model)."""
        return "pipeline" if self.pipeline is not None else self.model.name

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / "model")
        self.popularity.save(path / "popularity")
        np.savez_compressed(
            path / "ids.npz",
            items=np.asarray(self.items.to_list(), dtype=str),
            users=np.asarray(self.users.to_list(), dtype=str),
        )
        if self.pipeline is not None:
            self.pipeline.save(path / "pipeline")
        meta = {
            **self.meta,
            "format": BUNDLE_FORMAT,
            "algorithm": self.algorithm,
            "primary": self.model.name,
            "pipeline": self.pipeline is not None,
        }
        (path / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        path = Path(directory)
        try:
            meta = json.loads((path / "bundle.json").read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"{path} is not a smartrec model bundle (no bundle.json)") from exc
        if meta.get("format") != BUNDLE_FORMAT:
            raise ModelError(f"unsupported bundle format {meta.get('format')!r} in {path}")
        with np.load(path / "ids.npz", allow_pickle=False) as ids:
            items = IdMap(ids["items"].tolist())
            users = IdMap(ids["users"].tolist())
        model = Recommender.load(path / "model")
        popularity = Recommender.load(path / "popularity")
        if model.n_items != len(items) or popularity.n_items != len(items):
            raise ModelError(f"bundle {path}: model and id map disagree on the number of items")
        pipeline = None
        if (path / "pipeline").exists():
            from smartrec.pipeline.core import TrainedPipeline

            pipeline = TrainedPipeline.load(path / "pipeline")
            if pipeline.n_items != len(items):
                raise ModelError(f"bundle {path}: pipeline and id map disagree on items")
        return cls(
            model=model,
            popularity=popularity,
            items=items,
            users=users,
            meta=meta,
            pipeline=pipeline,
        )
