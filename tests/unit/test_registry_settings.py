"""A tracking server's requests are bounded by smartrec's settings unless the user set MLflow's
own variables (MLflow's defaults would hold a replica's start for minutes while it is down)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smartrec.config import Settings
from smartrec.runtime import build_registry

VARS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)


def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's variables absent, and removed again after the test (set, then deleted: the
    monkeypatch undoes what the test sets)."""
    for name in VARS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_a_tracking_server_gets_short_timeouts_and_few_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset(monkeypatch)
    build_registry(Settings(home=tmp_path, registry_url="http://mlflow.internal:5000"))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR

    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 1  # a value MLflow can read


def test_the_users_own_mlflow_variables_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    build_registry(
        Settings(home=tmp_path, registry_url="https://mlflow.internal", registry_retries=5)
    )
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def test_an_embedded_registry_leaves_mlflow_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset(monkeypatch)
    build_registry(Settings(home=tmp_path))
    assert not any(name in os.environ for name in VARS)
