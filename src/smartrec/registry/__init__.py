"""Model registry on MLflow: versions, the ``champion`` / ``challenger`` aliases, artifacts."""

from smartrec.registry.bundle import ModelBundle
from smartrec.registry.mlflow_registry import ModelRegistry, VersionInfo

__all__ = ["ModelBundle", "ModelRegistry", "VersionInfo"]
