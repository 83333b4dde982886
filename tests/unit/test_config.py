from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from smartrec.config import Settings, load_settings


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'h' / 'smartrec.db'}"
    assert s.resolved_registry_url == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert s.resolved_artifacts_url == str(tmp_path / "h" / "artifacts")


def test_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "smartrec.toml"
    toml.write_text(
        'database_url = "postgresql://db/x"\nport = 9000\n'
        "[event_weights]\nview = 1.0\nrating = 1.0\nshare = 3.0\n"
    )
    monkeypatch.setenv("SMARTREC_PORT", "9100")  # environment beats the file
    s = load_settings(toml)
    assert s.database_url == "postgresql://db/x"
    assert s.port == 9100
    assert s.event_weights == {"view": 1.0, "rating": 1.0, "share": 3.0}
    monkeypatch.setenv("SMARTREC_CONFIG", str(toml))
    assert Settings().database_url == "postgresql://db/x"


def test_bad_settings_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="value_event_types"):
        Settings(event_weights={"view": 1.0}, value_event_types=["rating"])
    with pytest.raises(ValidationError):
        Settings(unknown_option=1)  # type: ignore[call-arg]
    monkeypatch.setenv("SMARTREC_CONFIG", "/nonexistent.toml")
    with pytest.raises(Exception, match="does not exist"):
        Settings()


def test_metric_and_half_life_from_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="unknown metric"):
        Settings(selection_metric="ndcg@20")
    monkeypatch.setenv("SMARTREC_POPULARITY_HALF_LIFE_DAYS", "none")
    assert Settings().popularity_half_life_days is None
    monkeypatch.setenv("SMARTREC_POPULARITY_HALF_LIFE_DAYS", "7")
    assert Settings().popularity_half_life_days == 7.0
