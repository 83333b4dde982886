"""MLflow-backed registry. ``mlflow`` is imported lazily: it is slow to import and heavy."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartrec.errors import ConfigError, ModelError, NotFound
from smartrec.registry.bundle import ModelBundle

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_PATH = "bundle"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "aliases": self.aliases,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "created_at": self.created_ms,
        }


class ModelRegistry:
    """Register bundles as versions of one MLflow registered model; move aliases."""

    def __init__(
        self,
        tracking_uri: str,
        artifacts_url: str | None,
        model_name: str = "smartrec",
        experiment: str = "smartrec",
        cache_dir: str | Path | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts_url = artifacts_url
        self.model_name = model_name
        self.experiment = experiment
        self.cache_dir = (
            Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "smartrec-models"
        )
        self._client_obj: MlflowClient | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- plumbing
    @property
    def client(self) -> MlflowClient:
        with self._lock:
            if self._client_obj is None:
                os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
                try:
                    from mlflow.tracking import MlflowClient
                except ModuleNotFoundError as exc:  # pragma: no cover - core dependency
                    raise ConfigError("mlflow is not installed") from exc
                if self.tracking_uri.startswith("sqlite:///"):
                    Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                        parents=True, exist_ok=True
                    )
                self._client_obj = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            return self._client_obj

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        location: str | None = None
        if self.artifacts_url is not None:
            location = self.artifacts_url.rstrip("/") + "/mlflow"
            if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", location):  # a plain local path
                Path(location).mkdir(parents=True, exist_ok=True)
                location = Path(location).resolve().as_uri()
        try:
            # No location: the tracking server's own artifact store (shared by every replica).
            return str(self.client.create_experiment(self.experiment, artifact_location=location))
        except Exception:
            # Another process created it between our look-up and create.
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.model_name, description="smartrec recommendation bundles"
                )
            except MlflowException:
                self.client.get_registered_model(self.model_name)

    # ----------------------------------------------------------------- writing
    def register(
        self,
        bundle: ModelBundle,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str] | None = None,
        extra_artifacts: dict[str, str] | None = None,
    ) -> VersionInfo:
        """Log a training run (params, metrics, the bundle) and make it a new model version."""
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        exp_id = self._experiment_id()
        run = client.create_run(
            exp_id, tags={"smartrec.algorithm": bundle.algorithm, **(tags or {})}
        )
        run_id = run.info.run_id
        try:
            import time

            ts = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(_metric_key(k), float(v), ts, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in (tags or {}).items()],
            )
            with tempfile.TemporaryDirectory() as tmp:
                bundle.save(Path(tmp) / BUNDLE_PATH)
                client.log_artifacts(run_id, str(Path(tmp) / BUNDLE_PATH), BUNDLE_PATH)
                for name, text in (extra_artifacts or {}).items():
                    (Path(tmp) / name).write_text(text)
                    client.log_artifact(run_id, str(Path(tmp) / name))
            client.set_terminated(run_id, "FINISHED")
        except Exception:
            client.set_terminated(run_id, "FAILED")
            raise
        self._ensure_registered_model()
        mv = client.create_model_version(
            self.model_name,
            source=f"{run.info.artifact_uri}/{BUNDLE_PATH}",
            run_id=run_id,
            tags={"algorithm": bundle.algorithm},
        )
        return self.get_version(str(mv.version))

    def set_alias(self, alias: str, version: str) -> None:
        self.get_version(version)  # 404 for an unknown version
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    # ----------------------------------------------------------------- reading
    def alias_version(self, alias: str = CHAMPION) -> str | None:
        """The version an alias points to, or None when it (or the model) does not exist.

        Any other failure (network, server error, a locked store) propagates: treating it as "no
        champion" would let a training job promote without comparing.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise
        return str(mv.version)

    def _aliases(self) -> dict[str, list[str]]:
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if _missing(exc):
                return {}
            raise
        out: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            out.setdefault(str(version), []).append(alias)
        return out

    def get_version(self, version: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            if _missing(exc):
                raise NotFound(f"model version {version!r} does not exist") from None
            raise
        return self._info(mv, self._aliases())

    def _info(self, mv: ModelVersion, aliases: dict[str, list[str]]) -> VersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        if mv.run_id:
            run = self.client.get_run(mv.run_id)
            metrics = {k.replace("_at_", "@"): v for k, v in run.data.metrics.items()}
            params = dict(run.data.params)
        return VersionInfo(
            version=str(mv.version),
            run_id=mv.run_id,
            aliases=sorted(aliases.get(str(mv.version), [])),
            metrics=metrics,
            params=params,
            tags=dict(mv.tags or {}),
            created_ms=mv.creation_timestamp,
        )

    def list_versions(self) -> list[VersionInfo]:
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client.search_model_versions(f"name='{self.model_name}'")
        except MlflowException as exc:
            if _missing(exc):
                return []
            raise
        aliases = self._aliases()
        infos = [self._info(mv, aliases) for mv in versions]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def load(self, version: str) -> ModelBundle:
        """Download (once, cached by version) and load a version's bundle."""
        info = self.get_version(version)
        if info.run_id is None:  # a version registered outside smartrec: no run, no bundle
            raise ModelError(f"model version {info.version} has no run to load a bundle from")
        target = self.cache_dir / _safe(self.model_name) / f"v{info.version}-{info.run_id}"
        if not (target / BUNDLE_PATH / "bundle.json").exists():
            # Download aside, then publish with one rename. Several processes may race here: a
            # published directory is never touched again, the loser just drops its copy.
            tmp = Path(tempfile.mkdtemp(dir=_mkdir(self.cache_dir)))
            try:
                self.client.download_artifacts(info.run_id, BUNDLE_PATH, str(tmp))
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    tmp.rename(target)
                except OSError:
                    if not (target / BUNDLE_PATH / "bundle.json").exists():
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        bundle = ModelBundle.load(target / BUNDLE_PATH)
        bundle.meta["version"] = info.version
        return bundle


def _missing(exc: Exception) -> bool:
    """MLflow's way of saying "no such model / version / alias"."""
    code = getattr(exc, "error_code", None)
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _metric_key(name: str) -> str:
    """MLflow metric names may not contain '@'."""
    return name.replace("@", "_at_")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
