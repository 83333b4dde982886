"""The command line: `smartrec tune` tunes on stored events and the next training uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartrec.cli import app
from smartrec.datasets import generate


@pytest.fixture()
def home_with_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from fastapi.testclient import TestClient

    from smartrec.api.app import create_app
    from smartrec.config import Settings

    home = tmp_path / "home"
    monkeypatch.setenv("SMARTREC_HOME", str(home))
    monkeypatch.setenv("SMARTREC_MODELS", '{"ease": {"l2": 50.0}, "popularity": {}}')
    syn = generate(n_users=120, n_items=80, n_events=3000, n_categories=5, seed=2)
    events = syn.events()
    with TestClient(create_app(Settings(home=home, reload_interval_s=0))) as client:
        assert client.post("/v1/items", json={"items": syn.items()}).status_code == 200
        for start in range(0, len(events), 1000):
            batch = {"events": events[start : start + 1000]}
            assert client.post("/v1/events", json=batch).status_code == 202
    return home


def test_tune_command_logs_choices_the_next_training_uses(home_with_events: Path) -> None:
    result = CliRunner().invoke(app, ["tune", "--budget", "6"])
    assert result.exit_code == 0, result.output
    assert "ease" in result.output and "logged to MLflow" in result.output
    from smartrec.config import Settings
    from smartrec.runtime import Runtime
    from smartrec.training.tune import load_tuned_params

    runtime = Runtime.build(Settings(home=home_with_events))
    tuned = load_tuned_params(runtime.registry)
    assert "ease" in tuned and "pipeline" in tuned


def test_tune_command_caps_the_trials(home_with_events: Path) -> None:
    result = CliRunner().invoke(app, ["tune", "--budget", "120", "--trials", "2"])
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells
        for line in result.output.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│")])[0] in ("ease", "popularity")
    }
    assert set(rows) == {"ease", "popularity"}, result.output
    assert all(cells[3] in ("1", "2") for cells in rows.values()), result.output
    bad = CliRunner().invoke(app, ["tune", "--trials", "0"])
    assert bad.exit_code != 0


def test_evaluate_refuses_a_trial_cap_without_a_tuning_budget() -> None:
    for args in (
        ["--tune-trials", "5"],
        ["--tune-trials", "5", "--tune-budget", "60", "--algorithms", "ease"],
    ):
        result = CliRunner().invoke(app, ["evaluate", *args])
        assert result.exit_code == 2, result.output
        assert "--tune-trials" in result.output, result.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_option_prints_name_and_version(flag: str) -> None:
    from smartrec import __version__

    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0, result.output
    assert result.output == f"smartrec {__version__}\n"
    # The command stays.
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == __version__
