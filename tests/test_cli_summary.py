"""What `spx sweep launch` prints when a sweep ends: every end state, and hints that paste.

The summary is printed from the sweep's outcome; the HTML report it names is written by
`spx report`'s code and is left out here (it needs a stored sweep, see tests/e2e).
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from spx import cli
from spx.platform.settings import resolve


def _trial(number: int, status: str, loss: float | None = None):
    metrics = {} if loss is None else {"val/loss": loss}
    return SimpleNamespace(number=number, status=status, params={"s": number}, metrics=metrics)


def _printed(monkeypatch, settings, statuses: list[str]) -> str:
    trials = [_trial(i, s, 0.5 if s == "COMPLETED" else None) for i, s in enumerate(statuses)]
    result = SimpleNamespace(
        sweep=SimpleNamespace(name="six"),
        trials=trials,
        best=trials[0],
        objective="val/loss",
        failed=sum(s == "FAILED" for s in statuses),
    )
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buffer, width=300, soft_wrap=True))
    monkeypatch.setattr(cli, "_write_report", lambda name, settings: "report.html")
    cli._summary(result, settings)
    return buffer.getvalue()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPX_HOME", str(tmp_path))
    monkeypatch.delenv("SPX_STORE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_the_summary_counts_pruned_trials(home, monkeypatch):
    text = _printed(monkeypatch, resolve(), ["COMPLETED"] * 4 + ["PRUNED"] * 2)
    assert "six: 4 completed, 2 pruned, 0 failed of 6" in text


def test_a_stopped_sweep_counts_its_unfinished_trials(home, monkeypatch):
    text = _printed(monkeypatch, resolve(), ["COMPLETED", "FAILED", "LOST"])
    assert "six: 1 completed, 1 failed, 1 lost of 3" in text


def test_hints_on_the_default_store_have_no_flags(home, monkeypatch):
    text = _printed(monkeypatch, resolve(), ["COMPLETED"])
    assert "spx sweep show six\n" in text
    assert "spx ui   (serves" in text


def test_hints_carry_a_flagged_store_and_tracking_uri_masked(home, monkeypatch):
    store = "postgresql+psycopg://spx:hunter2@db.example:5432/spx"
    settings = resolve(store, f"sqlite:///{home / 'other.db'}")
    text = _printed(monkeypatch, settings, ["COMPLETED"])
    assert "hunter2" not in text
    assert "spx sweep show six --store 'postgresql+psycopg://spx:***@db.example:5432/spx'" in text
    assert f"spx ui --tracking-uri sqlite:///{home / 'other.db'}" in text


def test_hints_leave_out_a_store_the_environment_already_names(home, monkeypatch):
    monkeypatch.setenv("SPX_STORE_URL", f"sqlite:///{home / 'env.db'}")
    text = _printed(monkeypatch, resolve(), ["COMPLETED"])
    assert "spx sweep show six\n" in text
